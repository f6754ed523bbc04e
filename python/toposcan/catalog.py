"""Catalogs: GPUs, models and efficiency profiles, read from the TOML files in ``data/``.

Each entry carries its ``source``. Lookups by name fail with a one-line error that lists what is
allowed.
"""

from __future__ import annotations

import functools
import math
import tomllib
from importlib import resources
from typing import Any

import polars as pl

from toposcan.errors import InputError
from toposcan.errors import show as _show


@functools.cache
def _load(name: str) -> dict[str, dict[str, Any]]:
    text = resources.files("toposcan").joinpath("data", name).read_text(encoding="utf-8")
    return tomllib.loads(text)


def _lookup(kind: str, file: str, name: str) -> dict[str, Any]:
    table = _load(file)
    if not isinstance(name, str) or name not in table:
        shown = _show(name) if isinstance(name, str) else _show(name, quote=True)
        allowed = ", ".join(sorted(table))
        raise InputError(f"unknown {kind} `{shown}`; one of: {allowed}", code=f"unknown_{kind}",
                         hint=f"`topo {kind}s` lists them with their sources")
    return table[name]


def gpu_spec(name: str) -> dict[str, Any]:
    """The catalog entry of a GPU (peak TFLOP/s per dtype, memory, bandwidths, power, source)."""
    return _lookup("gpu", "gpus.toml", name)


def model_spec(name: str) -> dict[str, Any]:
    """The catalog entry of a model (layers, hidden, heads, ..., source), or the same read from a
    Hugging Face ``config.json`` (a path ending in ``.json``, or ``hf:org/name``)."""
    if is_model_file(name):
        return model_file(name)[0]
    return _lookup("model", "models.toml", name)


def is_model_file(name: Any) -> bool:
    """Whether ``name`` names a config.json rather than a catalog model."""
    return isinstance(name, str) and (name.startswith("hf:") or name.endswith(".json"))


@functools.cache
def model_file(name: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A config.json read once: its catalog-shaped entry and the keys that were not understood."""
    from toposcan import hfconfig  # reads the file with the standard library only

    entry, ignored = hfconfig.load_model_file(name)
    return entry, tuple(ignored)


#: A profile's numeric constants and its true/false framework facts (profiles.toml, profile.rs).
PROFILE_NUMBERS = ("gemm_efficiency", "attention_efficiency", "memory_efficiency", "intra_link_efficiency",
                   "inter_link_efficiency", "layer_overhead_s", "dp_overlap", "fsdp_overlap", "step_overhead_s",
                   "memory_overhead_gib", "fragmentation", "grad_bytes", "grad_shard_bytes", "logit_bytes")
PROFILE_FLAGS = ("flash_attention", "p2p_scatter_gather", "zero1_allreduce", "transient_gradients", "fused_kernels")
#: Physical ranges of a profile's numbers (efficiencies are fractions; byte counts at least one byte
#: of a 16-bit type's half; overheads bounded by an hour): a calibrated file outside them is refused.
PROFILE_RANGES = {**{k: (1e-3, 1.0) for k in ("gemm_efficiency", "attention_efficiency", "memory_efficiency",
                                            "intra_link_efficiency", "inter_link_efficiency")},
                  "dp_overlap": (0.0, 1.0), "fsdp_overlap": (0.0, 1.0), "layer_overhead_s": (0.0, 3600.0),
                  "step_overhead_s": (0.0, 3600.0), "memory_overhead_gib": (0.0, 4096.0), "fragmentation": (0.0, 10.0),
                  "grad_bytes": (1.0, 8.0), "grad_shard_bytes": (0.0, 8.0), "logit_bytes": (1.0, 32.0)}

#: Whole-number settings of a profile: the framework pads the vocabulary to a multiple of
#: ``vocab_multiple * tp`` rows (Megatron-LM: 128; 1 keeps the model's own vocabulary).
PROFILE_INTS = {"vocab_multiple": (1, 1 << 16)}


def profile_spec(name: str) -> dict[str, Any]:
    """The constants of an efficiency profile: a name in ``data/profiles.toml``, or the path of a
    ``.toml`` file holding one profile table over a catalog ``base`` (as :func:`toposcan.calibrate`
    writes it)."""
    if isinstance(name, str) and name.endswith(".toml"):
        return _profile_file(name)
    return _lookup("profile", "profiles.toml", name)


def _profile_file(path: str) -> dict[str, Any]:
    shown = _show(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = tomllib.loads(f.read())
    except OSError as e:
        raise InputError(f"`profile`: cannot read `{shown}`: {e.strerror or e}", code="io_error") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"`profile`: `{shown}` is not valid TOML ({_show(str(e).splitlines()[0])})",
                         code="parse_error") from None
    tables = [(k, v) for k, v in doc.items() if isinstance(v, dict)]
    if len(tables) != 1:
        raise InputError(f"`profile`: `{shown}` must hold exactly one profile table, found {len(tables)}",
                         code="parse_error")
    _, entry = tables[0]
    base = entry.get("base")
    if not isinstance(base, str) or base.endswith(".toml"):
        raise InputError(f"`profile`: `{shown}` needs `base = \"<catalog profile>\"` (see `topo profiles`)",
                         code="parse_error")
    base_entry = _lookup("profile", "profiles.toml", base)
    unknown = [k for k in entry if k not in base_entry and k != "base"]
    if unknown:  # a misspelt constant would otherwise be ignored silently
        raise InputError(f"`profile`: `{shown}`: unknown key `{_show(unknown[0])}`; one of: {', '.join(sorted(base_entry))}",
                         code="parse_error")
    merged = {**base_entry, **entry}
    for key in PROFILE_NUMBERS:
        v = merged.get(key)
        lo, hi = PROFILE_RANGES.get(key, (0.0, math.inf))
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not lo <= v <= hi:
            raise InputError(f"`profile`: `{shown}`: `{key}` must be a number from {lo:g} to {hi:g}, "
                             f"got {_show(v, quote=True)}", code="parse_error")
    from toposcan.resolve import FRAMEWORKS  # resolve imports this module

    if merged.get("framework") not in FRAMEWORKS:
        raise InputError(f"`profile`: `{shown}`: `framework` must be one of {', '.join(FRAMEWORKS)}, "
                         f"got {_show(merged.get('framework'), quote=True)}", code="parse_error")
    for key, (lo, hi) in PROFILE_INTS.items():
        v = merged.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise InputError(f"`profile`: `{shown}`: `{key}` must be a whole number from {lo} to {hi}, "
                             f"got {_show(v, quote=True)}", code="parse_error")
    for key in PROFILE_FLAGS:
        if not isinstance(merged.get(key), bool):
            raise InputError(f"`profile`: `{shown}`: `{key}` must be true or false, got {_show(merged.get(key), quote=True)}",
                             code="parse_error")
    return merged


def gpu_names() -> list[str]:
    return sorted(_load("gpus.toml"))


def model_names() -> list[str]:
    return sorted(_load("models.toml"))


def profile_names() -> list[str]:
    return sorted(_load("profiles.toml"))


def gpus() -> pl.DataFrame:
    """Every GPU of the catalog, one row each, with its source.

    >>> df = gpus()
    >>> int(df.filter(pl.col("name") == "a100-80")["sms"][0])
    108
    """
    rows = []
    for name, g in _load("gpus.toml").items():
        peak = g["peak_tflops"]
        rows.append({
            "name": name,
            "full_name": g["name"],
            "memory_gib": float(g["memory_gib"]),
            "memory_bw_gbs": float(g["memory_bw_gbs"]),
            "elementwise_gbs": float(g.get("elementwise_gbs", g["memory_bw_gbs"])),
            "sms": int(g["sms"]),
            "fp32_tflops": float(peak.get("fp32", 0.0)),
            "tf32_tflops": float(peak.get("tf32", 0.0)),
            "fp16_tflops": float(peak.get("fp16", 0.0)),
            "bf16_tflops": float(peak.get("bf16", 0.0)),
            "fp8_tflops": float(peak.get("fp8", 0.0)),
            "mxfp8_tflops": float(peak.get("mxfp8", 0.0)),
            "nvfp4_tflops": float(peak.get("nvfp4", 0.0)),
            "intra_node_gbs": float(g["intra_node_gbs"]),
            "gpus_per_node": int(g["gpus_per_node"]),
            "nvlink_domain": int(g.get("nvlink_domain", g["gpus_per_node"])),
            "inter_node_gbs": float(g["inter_node_gbs"]),
            "host_link_gbs": float(g.get("host_link_gbs", 0.0)),
            "host_memory_gbs": float(g.get("host_memory_gbs", 0.0)),
            "board_power_w": float(g["board_power_w"]),
            "source": g["source"],
        })
    return pl.DataFrame(rows).sort("name")


def models() -> pl.DataFrame:
    """Every model of the catalog with its exact parameter count (computed by the core).

    >>> df = models()
    >>> int(df.filter(pl.col("name") == "bloom-176b")["params"][0])
    176247271424
    """
    from toposcan.api import evaluate  # the core computes params; one formula, one place

    rows = []
    for name, m in _load("models.toml").items():
        row = evaluate(model=name, gpu="a100-80", nodes=1, gpus_per_node=1, dp=1, tp=1, pp=1, mbs=1, gbs=1,
                       _frame=False)
        rows.append({
            "name": name,
            "params": int(row["params"]),
            "params_active": int(row["params_active"]),
            "layers": m["layers"],
            "hidden": m["hidden"],
            "heads": m["heads"],
            "kv_heads": m["kv_heads"],
            "ffn_hidden": m["ffn_hidden"],
            "activation": m["activation"],
            "vocab": m["vocab"],
            "seq_len": m["seq_len"],
            "tied_embeddings": m["tied_embeddings"],
            "position": m["position"],
            "experts": m["experts"],
            "topk": m["topk"],
            "shared_experts": m["shared_experts"],
            "attention": m["attention"],
            "sliding_window": m.get("sliding_window", 0),
            "mtp_layers": m.get("mtp_layers", 0),
            "params_published": m["params_published"],
            "source": m["source"],
        })
    return pl.DataFrame(rows).sort("name")


def profiles() -> pl.DataFrame:
    """Every efficiency profile with its constants and source."""
    rows = []
    for name, p in _load("profiles.toml").items():
        rows.append({"name": name, **{k: v for k, v in p.items() if not isinstance(v, list)},
                     "fitted_on": ",".join(p.get("fitted_on", []))})
    return pl.DataFrame(rows).sort("name")
