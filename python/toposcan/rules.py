"""Names of the hard rules (why a candidate is out) and soft warnings (what slows it down)."""

from __future__ import annotations

from toposcan import _core

#: Codes of the hard rules, as counted in ``stats["pruned"]``.
REJECTS: tuple[str, ...] = tuple(_core.reject_codes())

#: Warning bit -> code, for the ``warnings`` column.
WARNINGS: dict[int, str] = dict(_core.warning_codes())

#: One line per warning: what it means and what to change.
WARNING_HELP: dict[str, str] = {
    "fused_softmax_unavailable": "Megatron's fused softmax needs (heads/tp)*mbs % 4 == 0 and 16 < seq <= 16384; "
    "change heads, tp or mbs",
    "head_dim_misaligned": "head_dim is not a multiple of 8 (16 bytes): attention GEMMs cannot use tensor cores; "
    "pick heads so that hidden/heads % 8 == 0",
    "tile_quantization": "hidden/tp or ffn/tp is not a multiple of 128: GEMM tiles waste their remainder; "
    "pick hidden as a multiple of 128*tp",
    "wave_quantization": "the layer GEMMs lose more than 5% to a partial last wave on this GPU's SMs "
    "(seeds/001: hidden % (SMs*tp) == 0 avoids it)",
    "uneven_stages": "layers % pp != 0: the largest stage sets the pace; pick pp dividing layers",
    "rampup_incompatible": "batch ramp-up in steps of 32 needs dp % 4 == 0 and gbs % 32 == 0 (seeds/001)",
}


def explain_warnings(bits: int) -> list[str]:
    """Codes of the warnings set in a ``warnings`` value.

    >>> explain_warnings(3)
    ['fused_softmax_unavailable', 'head_dim_misaligned']
    """
    return [code for bit, code in sorted(WARNINGS.items()) if bits & bit]
