"""Keyword validation: user values -> the plain dicts the Rust core reads.

Every check names the field, the value and what is allowed, in one line. Model fields come from
the catalog (``model="llama-2-7b"``) or are given directly (``layers=..., hidden=..., heads=...``);
given fields override the catalog's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from toposcan import catalog
from toposcan.errors import InputError
from toposcan.errors import show as _show  # noqa: F401 - the name callers use

#: Model used when none is given: BLOOM-176B, the model of seeds/001's 48-node A100 study.
DEFAULT_MODEL = "bloom-176b"
#: Profile used when none is given and the GPU has no ``default_for`` entry.
DEFAULT_PROFILE = "megatron-lm-a100"
#: Global batch when none is given (seeds/001's 2048 samples).
DEFAULT_GBS = 2048

MAX_INT = 2**31 - 1
RECOMPUTE = ("none", "selective", "full")
PRECISIONS = ("fp32", "fp16", "bf16", "fp8", "mxfp8", "nvfp4")
ACTIVATIONS = ("gelu", "swiglu")
MODEL_FIELDS = ("layers", "hidden", "heads", "kv_heads", "ffn_hidden", "activation", "vocab", "seq_len",
                "tied_embeddings", "experts", "topk", "position", "norm", "bias", "mtp_layers")
GIB = 1024**3


def positive_int(name: str, value: Any, *, minimum: int = 1, maximum: int = MAX_INT) -> int:
    """An integer in [minimum, maximum]; bools, NaN, fractions and strings that are not integers fail."""
    if isinstance(value, bool):
        raise InputError(f"`{name}` must be an integer, got {value}", code="invalid_value")
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            value = int(text) if re.fullmatch(r"[+-]?\d+", text) else _human(text, binary=True)
        except ValueError:
            raise InputError(f"`{name}` must be an integer (suffixes k, M, G allowed: 128k = 131072), "
                             f"got `{_show(value)}`", code="invalid_value") from None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise InputError(f"`{name}` must be an integer, got {value}", code="invalid_value")
        value = int(value)
    if not isinstance(value, int):
        raise InputError(f"`{name}` must be an integer, got {type(value).__name__}", code="invalid_value")
    if value < minimum:
        raise InputError(f"`{name}` must be at least {minimum}, got {_show(value)}", code="invalid_value")
    if value > maximum:
        raise InputError(f"`{name}` must be at most {maximum}, got {_show(value)}", code="invalid_value")
    return value


#: Size suffixes. Counts of tokens in a sequence, samples or units are binary as people write
#: them (a 128k context is 131072 tokens); budgets of tokens and parameters decimal (1T = 1e12).
_BINARY = {"k": 2**10, "m": 2**20, "g": 2**30}
_DECIMAL = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def _human(text: str, *, binary: bool) -> float:
    """``"128k"``, ``"1M"``, ``"2e12"``, ``"7B"`` as a number; ValueError when it is none."""
    t = text.strip().replace("_", "")
    table = _BINARY if binary else _DECIMAL
    if t and t[-1].lower() in table:
        return float(t[:-1]) * table[t[-1].lower()]
    return float(t)


def positive_float(name: str, value: Any, *, minimum: float = 0.0, maximum: float = math.inf,
                   inclusive_min: bool = False) -> float:
    """A finite number in range; strings may carry a decimal suffix (``1T``, ``7B``, ``2e12``)."""
    if isinstance(value, bool):
        raise InputError(f"`{name}` must be a number, got {value}", code="invalid_value")
    try:
        v = _human(value, binary=False) if isinstance(value, str) else float(value)
    except OverflowError:  # an int too large for a float
        v = math.inf
    except (TypeError, ValueError):
        raise InputError(f"`{name}` must be a number, got `{_show(value)}`", code="invalid_value") from None
    ok = math.isfinite(v) and (v >= minimum if inclusive_min else v > minimum) and v <= maximum
    if not ok:
        bound = f">= {minimum}" if inclusive_min else f"> {minimum}"
        hi = f" and <= {maximum}" if math.isfinite(maximum) else ""
        raise InputError(f"`{name}` must be a finite number {bound}{hi}, got {_show(value)}", code="invalid_value")
    return v


def choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"`{name}` must be one of {{{', '.join(allowed)}}}, got {_show(value, quote=True)}",
                         code="invalid_value")
    return value


def boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InputError(f"`{name}` must be true or false, got {_show(value, quote=True)}", code="invalid_value")


def int_list(name: str, value: Any, *, minimum: int = 1, maximum: int = MAX_INT, limit: int = 1 << 20) -> list[int]:
    """An int, an iterable of ints, a ``range``, or a string ``"a,b,c"`` / ``"start:stop[:step]"``
    (stop inclusive, as people write ranges on a command line)."""
    if isinstance(value, str):
        text = value.strip()
        if ":" in text:
            parts = text.split(":")
            if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
                raise InputError(f"`{name}` range must be start:stop or start:stop:step, got `{_show(value)}`",
                                 code="invalid_value")
            start = positive_int(name, parts[0], minimum=minimum, maximum=maximum)
            stop = positive_int(name, parts[1], minimum=minimum, maximum=maximum)
            step = positive_int(name, parts[2], maximum=maximum) if len(parts) == 3 else 1
            if stop < start:
                raise InputError(f"`{name}` range stop {stop} is below start {start}", code="invalid_value")
            if (stop - start) // step + 1 > limit:
                raise InputError(f"`{name}` range has more than {limit} values", code="invalid_value")
            return list(range(start, stop + 1, step))
        value = [p for p in re.split(r"[,\s]+", text) if p]
    if isinstance(value, range):
        if len(value) > limit:
            raise InputError(f"`{name}` range has more than {limit} values", code="invalid_value")
        value = list(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    try:
        if isinstance(value, (bytes, bytearray, dict)):  # iterable, but not a list of integers
            raise TypeError
        items = list(value)
    except TypeError:
        raise InputError(f"`{name}` must be an integer, a list of integers or a range, got {_show(value, quote=True)}",
                         code="invalid_value") from None
    if not items:
        raise InputError(f"`{name}` needs at least one value", code="invalid_value")
    if len(items) > limit:
        raise InputError(f"`{name}` has more than {limit} values", code="invalid_value")
    out = [positive_int(name, v, minimum=minimum, maximum=maximum) for v in items]
    return sorted(set(out))


def cluster_dict(gpu: str, nodes: Any, gpus_per_node: Any, intra_node_gbs: Any = None,
                 inter_node_gbs: Any = None, nvlink_domain: Any = None) -> dict[str, Any]:
    """The core's cluster dict: GPU rates in FLOP/s and B/s, memory in bytes. ``intra_node_gbs`` and
    ``inter_node_gbs`` (GB/s per GPU per direction) replace the catalog's usual node build where a
    cluster's links differ (e.g. seeds/001's Jean Zay nodes: four 100 Gb/s Omni-Path links for
    eight GPUs, 6.25 GB/s per GPU, against a DGX's 25)."""
    g = catalog.gpu_spec(gpu)
    nodes = positive_int("nodes", nodes, maximum=1 << 20)
    gpn = positive_int("gpus_per_node", gpus_per_node if gpus_per_node is not None else g["gpus_per_node"],
                       maximum=1024)
    peak = g["peak_tflops"]
    return {
        "peak_fp32": float(peak.get("fp32", 0.0)) * 1e12,
        "peak_tf32": float(peak.get("tf32", 0.0)) * 1e12,
        "peak_fp16": float(peak.get("fp16", 0.0)) * 1e12,
        "peak_bf16": float(peak.get("bf16", 0.0)) * 1e12,
        "peak_fp8": float(peak.get("fp8", 0.0)) * 1e12,
        "peak_mxfp8": float(peak.get("mxfp8", 0.0)) * 1e12,
        "peak_nvfp4": float(peak.get("nvfp4", 0.0)) * 1e12,
        "vector_fp32": float(peak.get("fp32", 0.0)) * 1e12,
        "memory_bytes": float(g["memory_gib"]) * GIB,
        "memory_bw": float(g["memory_bw_gbs"]) * 1e9,
        "elementwise_bw": float(g.get("elementwise_gbs", g["memory_bw_gbs"])) * 1e9,
        "sms": int(g["sms"]),
        "intra_node_bw": (float(g["intra_node_gbs"]) if intra_node_gbs is None
                          else positive_float("intra_node_gbs", intra_node_gbs, minimum=0.01, maximum=1e5)) * 1e9,
        "inter_node_bw": (float(g["inter_node_gbs"]) if inter_node_gbs is None
                          else positive_float("inter_node_gbs", inter_node_gbs, minimum=0.01, maximum=1e5)) * 1e9,
        "board_power_w": float(g["board_power_w"]),
        # GPUs on one NVLink fabric (NVL72: 72); collectives and tp within it run at intra_node_gbs.
        "nvlink_domain": (int(g.get("nvlink_domain", 0)) if nvlink_domain is None
                          else positive_int("nvlink_domain", nvlink_domain, maximum=1 << 16)),
        # CPU offload: the GPU's host link and its share of the host's DRAM bandwidth (0 = unknown).
        "host_link_bw": float(g.get("host_link_gbs", 0.0)) * 1e9,
        "host_memory_bw": float(g.get("host_memory_gbs", 0.0)) * 1e9,
        "nodes": nodes,
        "gpus_per_node": gpn,
    }


def model_dict(model: str | None, fields: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The core's model dict and a label for it. Fields given override the catalog entry (the default
    model's when no model is named and not all of layers, hidden and heads are given); a model
    given only by fields gets GPT-3-style defaults (GELU, ffn = 4 hidden, learned positions, tied
    embeddings, LayerNorm with biases, vocab 50257, seq 2048)."""
    given = {k: v for k, v in fields.items() if v is not None}
    if model is not None:
        base = dict(catalog.model_spec(model))
        label = model
        if catalog.is_model_file(model):  # hf:org/name, or the folder holding the config.json
            stem = model.rsplit("/", 1)[-1].removesuffix(".json")
            label = model[3:] if model.startswith("hf:") else (
                model.rsplit("/", 2)[-2] if stem == "config" and "/" in model else stem)
    elif all(k in given for k in ("layers", "hidden", "heads")):
        hidden = positive_int("hidden", given["hidden"], maximum=1 << 22)
        act = choice("activation", given.get("activation", "gelu"), ACTIVATIONS)
        base = {
            "layers": 0, "hidden": hidden, "heads": 0, "kv_heads": 0, "head_dim": 0,
            "ffn_hidden": 4 * hidden if act == "gelu" else 256 * math.ceil(8 * hidden / 3 / 256),
            "activation": act, "vocab": 50257, "seq_len": 2048, "tied_embeddings": True, "position": "learned",
            "position_rows": 0, "norm": "layernorm", "bias": True, "embedding_norm": False, "experts": 0, "topk": 0,
            "shared_experts": 0, "moe_ffn_hidden": 0, "dense_layers": 0, "attention": "mha", "q_lora_rank": 0,
            "kv_lora_rank": 0, "qk_rope_head_dim": 0, "qk_nope_head_dim": 0, "v_head_dim": 0,
        }
        label = "custom"
    else:  # the default model, with whatever fields were given overriding its own
        base = dict(catalog.model_spec(DEFAULT_MODEL))
        label = DEFAULT_MODEL
    m = dict(base)
    ints = {"layers": 1 << 20, "hidden": 1 << 22, "heads": 1 << 16, "kv_heads": 1 << 16, "ffn_hidden": 1 << 24,
            "vocab": 1 << 26, "seq_len": 1 << 26}
    for k, mx in ints.items():
        if k in given:
            m[k] = positive_int(k, given[k], maximum=mx)
    if "activation" in given:
        m["activation"] = choice("activation", given["activation"], ACTIVATIONS)
    if "position" in given:
        m["position"] = choice("position", given["position"], ("learned", "rope", "alibi"))
        if m["position"] != "learned":
            m["position_rows"] = 0
        elif not m["position_rows"]:
            m["position_rows"] = m["seq_len"]
    if "norm" in given:
        m["norm"] = choice("norm", given["norm"], ("layernorm", "rmsnorm"))
    if "bias" in given:
        m["bias"] = boolean("bias", given["bias"])
    if "tied_embeddings" in given:
        m["tied_embeddings"] = boolean("tied_embeddings", given["tied_embeddings"])
    if "experts" in given:
        m["experts"] = positive_int("experts", given["experts"], minimum=0, maximum=1 << 16)
        if m["experts"] and not m["moe_ffn_hidden"]:
            m["moe_ffn_hidden"] = m["ffn_hidden"]
    if "topk" in given:
        m["topk"] = positive_int("topk", given["topk"], minimum=0, maximum=1 << 16)
    if "mtp_layers" in given:  # DeepSeek-V3's multi-token-prediction modules, on or off
        m["mtp_layers"] = positive_int("mtp_layers", given["mtp_layers"], minimum=0, maximum=1 << 10)
    if "kv_heads" not in given and ("heads" in given or label == "custom"):
        # GQA ratio of the base kept when heads change; MHA stays MHA.
        ratio = base["heads"] // base["kv_heads"] if base.get("kv_heads") else 1
        m["kv_heads"] = m["heads"] // ratio if ratio and m["heads"] % ratio == 0 else m["heads"]
    if "ffn_hidden" not in given and "hidden" in given and label != "custom" and base["hidden"] \
            and m["hidden"] != base["hidden"]:
        # The base's FFN/hidden ratio, as the core's shape search keeps it (space.rs `shape`): exactly
        # 4x, else rounded half up to a multiple of 128.
        if base["ffn_hidden"] == 4 * base["hidden"]:
            m["ffn_hidden"] = 4 * m["hidden"]
        else:
            m["ffn_hidden"] = max(1, math.floor(base["ffn_hidden"] * m["hidden"] / base["hidden"] / 128 + 0.5)) * 128
    # The head dim follows hidden/heads where the base ties them (GPT, Llama) and stays the base's
    # where it does not (MLA, Qwen3): the rule of the core's shape search (space.rs `shape`).
    tied = label == "custom" or (base["attention"] != "mla" and base["head_dim"] * base["heads"] == base["hidden"])
    if tied and ("hidden" in given or "heads" in given or label == "custom"):
        m["head_dim"] = m["hidden"] // m["heads"] if m["hidden"] % m["heads"] == 0 else 0
    if m["position"] == "learned" and ("seq_len" in given or label == "custom"):
        # The learned table has one row per position (plus OPT's offset of 2), sized by the run's seq_len.
        offset = max(0, base["position_rows"] - base["seq_len"]) if label != "custom" else 0
        m["position_rows"] = m["seq_len"] + offset
    # hidden % heads as Megatron asserts; the head dim itself may differ from hidden/heads (Qwen3, GPT-OSS)
    if m["attention"] != "mla" and (not m["head_dim"] or m["hidden"] % m["heads"]):
        raise InputError(f"`hidden` {m['hidden']} must be a multiple of `heads` {m['heads']}",
                         code="hidden_not_divisible_by_heads",
                         hint=None if label == "custom" or ("hidden" in given and "heads" in given)
                         else f"`{label}` has hidden {base['hidden']} and {base['heads']} heads: give both to change them")
    if m["experts"] and not (1 <= m["topk"] <= m["experts"]):
        raise InputError(f"`topk` must be between 1 and `experts` ({m['experts']}), got {m['topk']}",
                         code="invalid_value")
    if m["kv_heads"] < 1 or m["heads"] % m["kv_heads"]:
        raise InputError(f"`kv_heads` must divide `heads` ({m['heads']}), got {m['kv_heads']}", code="invalid_value")
    core = {k: m[k] for k in (
        "layers", "hidden", "heads", "kv_heads", "head_dim", "ffn_hidden", "activation", "vocab", "seq_len",
        "tied_embeddings", "position", "position_rows", "norm", "bias", "embedding_norm", "experts", "topk",
        "shared_experts", "moe_ffn_hidden", "dense_layers", "attention", "q_lora_rank", "kv_lora_rank",
        "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")}
    # Architecture fields of models.toml newer than the keys above (issue 16); the core reads an
    # absent one as the plain transformer's value.
    core.update({k: m[k] for k in ("moe_layer_every", "mtp_layers", "qk_norm", "attention_sinks", "router_bias",
                                   "qkv_bias", "sandwich_norm", "sliding_window", "full_attention_every") if k in m})
    return core, label


def default_profile(gpu: str | None) -> str:
    """The profile used for ``gpu`` when none is named (``default_for`` in profiles.toml)."""
    for name in catalog.profile_names():
        if gpu in catalog.profile_spec(name).get("default_for", []):
            return name
    return DEFAULT_PROFILE


def profile_dict(name: str | None, gpu: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The core's profile dict and the catalog entry (for framework defaults)."""
    if name is None or (isinstance(name, str) and not name):
        name = default_profile(gpu)
    p = catalog.profile_spec(name)
    core: dict[str, Any] = {k: float(p[k]) for k in catalog.PROFILE_NUMBERS if k != "memory_overhead_gib"}
    core["memory_overhead_bytes"] = float(p["memory_overhead_gib"]) * GIB
    core.update({k: bool(p[k]) for k in catalog.PROFILE_FLAGS if k != "flash_attention"})  # a strategy field
    return core, p


def options_dict(headroom: Any, train_tokens: Any, allow_cross_node_tp: Any, rampup: Any) -> dict[str, Any]:
    return {
        "headroom": positive_float("headroom", headroom, minimum=0.0, maximum=0.9, inclusive_min=True),
        "train_tokens": positive_float("train_tokens", train_tokens, maximum=1e18),
        "allow_cross_node_tp": boolean("allow_cross_node_tp", allow_cross_node_tp),
        "rampup": boolean("rampup", rampup),
    }
