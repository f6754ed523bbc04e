"""DeepSpeed JSON configs (``ds_config.json``): ZeRO stage, batch settings, precision, offload.

DeepSpeed itself reads the file with ``hjson``, so ``//`` and ``#`` comments and trailing commas are
tolerated here too (with a note); duplicate keys are refused, as DeepSpeed refuses them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import ParseError
from ._common import Result, short, typed_bool, typed_int

#: Top-level keys that mark a JSON document as a DeepSpeed config.
DS_KEYS = frozenset({
    "zero_optimization",
    "train_batch_size",
    "train_micro_batch_size_per_gpu",
    "gradient_accumulation_steps",
    "zero_allow_untested_optimizer",
    "activation_checkpointing",
})

_USED_TOP = frozenset({
    "zero_optimization", "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
    "fp16", "bf16", "bfloat16", "activation_checkpointing",
})
_USED_ZERO = frozenset({"stage", "offload_optimizer", "offload_param", "cpu_offload", "cpu_offload_params",
                        "mics_shard_size"})


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _strip_hjson(text: str) -> str:
    """``text`` without ``//``, ``#`` and ``/* */`` comments outside strings, and without trailing commas."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i) or c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            out.append(c)
            i += 1
    return re.sub(r",(\s*[}\]])", r"\1", "".join(out))


def load_json(text: str, what: str) -> tuple[Any, bool]:
    """The JSON value of ``text`` and whether hjson leniency (comments, trailing commas) was needed."""
    for lenient in (False, True):
        source = _strip_hjson(text) if lenient else text
        try:
            return json.loads(source, object_pairs_hook=_no_duplicates), lenient
        except _Duplicate as dup:
            raise ParseError(f"{what}: key `{short(dup.key)}` appears twice in one object", code="bad_json") from None
        except RecursionError:
            raise ParseError(f"{what}: JSON nested too deeply", code="too_deep") from None
        except json.JSONDecodeError as exc:
            if lenient:
                raise ParseError(
                    f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                    code="bad_json",
                ) from None
        except ValueError as exc:  # e.g. an integer literal with too many digits
            raise ParseError(f"{what} is not valid JSON: {short(str(exc))}", code="bad_json") from None
    raise AssertionError("unreachable")


def looks_like_deepspeed(doc: Any) -> bool:
    return isinstance(doc, dict) and any(key in doc for key in DS_KEYS)


def _auto(value: Any) -> bool:
    return isinstance(value, str) and value == "auto"


def _auto_enabled(section: Any) -> bool:
    return isinstance(section, dict) and _auto(section.get("enabled"))


def _batch(doc: dict, key: str, res: Result, where: str) -> int | None:
    if key not in doc:
        return None
    value = doc[key]
    if _auto(value):
        res.note(f'{where}{key} is "auto" (filled in by the HF Trainer/Accelerate at launch)')
        return None
    return typed_int(value, where + key)


def _enabled(section: Any, name: str, res: Result, where: str) -> bool | None:
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ParseError(f"`{where}{name}` must be an object, got `{short(section)}`", code="invalid_value")
    value = section.get("enabled", False)
    if _auto(value):
        res.note(f'{where}{name}.enabled is "auto" (set by the HF Trainer/Accelerate from its own flags)')
        return None
    return typed_bool(value, f"{where}{name}.enabled")


def _offload(section: Any, key: str, where: str) -> bool | None:
    if section is None:
        return None
    if isinstance(section, bool):
        return section
    if not isinstance(section, dict):
        raise ParseError(f"`{where}zero_optimization.{key}` must be an object, got `{short(section)}`", code="invalid_value")
    device = section.get("device", "none")
    if device in (None, "none"):
        return False
    if device in ("cpu", "nvme"):
        return True
    raise ParseError(
        f"`{where}zero_optimization.{key}.device` must be one of {{`none`, `cpu`, `nvme`}}, got `{short(device)}`",
        code="invalid_value",
    )


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return ""
    return short(str(value), 40)


def read_config(doc: Any, res: Result, *, where: str = "") -> dict:
    """Fill ``res`` from a parsed DeepSpeed config; ``where`` prefixes field names (e.g. ``ds_config.json: ``).

    Returns the DeepSpeed-only facts (``gas``) that a caller may want for cross-checks.
    """
    if not isinstance(doc, dict):
        raise ParseError(f"{where or 'the DeepSpeed config'} must be a JSON object at the top", code="invalid_value")
    spec = res.spec
    facts: dict = {}

    zero = doc.get("zero_optimization")
    if zero is None:
        spec["zero_stage"] = 0
        res.note(f"{where}no zero_optimization section: ZeRO is off (stage 0)")
    elif isinstance(zero, bool):
        spec["zero_stage"] = 1 if zero else 0
        res.note(f"{where}zero_optimization is the legacy boolean form: stage {spec['zero_stage']}")
    elif isinstance(zero, dict):
        stage = zero.get("stage", 0)
        spec["zero_stage"] = typed_int(stage, f"{where}zero_optimization.stage", minimum=0, maximum=3)
        offloads = [
            _offload(zero.get("offload_optimizer"), "offload_optimizer", where),
            _offload(zero.get("offload_param"), "offload_param", where),
            _offload(zero.get("cpu_offload"), "cpu_offload", where),
            _offload(zero.get("cpu_offload_params"), "cpu_offload_params", where),
        ]
        stated = [o for o in offloads if o is not None]
        if stated:
            # ZeRO-Offload moves the optimizer (fp32 states and step) to the host; ZeRO-Infinity's
            # offload_param the 16-bit weights too (``cpu_offload_params`` is its legacy name).
            spec["offload"] = ("optimizer+params" if offloads[1] or offloads[3] else "optimizer" if any(stated)
                               else "none")
        if stated and any(stated):
            devices = []
            for key in ("offload_optimizer", "offload_param"):
                section = zero.get(key)
                if isinstance(section, dict) and section.get("device") in ("cpu", "nvme"):
                    devices.append(f"{key} to {section['device']}")
            for key in ("cpu_offload", "cpu_offload_params"):
                if zero.get(key) is True:
                    devices.append(f"{key}")
            res.note(f"{where}ZeRO offload: " + ", ".join(devices))
        mics = zero.get("mics_shard_size")
        if mics is not None:
            size = typed_int(mics, f"{where}zero_optimization.mics_shard_size", minimum=-1)
            if size > 0:  # MiCS: shard within groups of this many ranks, replicate across them
                spec["fsdp_shard"] = size
                res.note(f"{where}MiCS: states sharded within groups of {size} ranks (fsdp_shard {size})")
        for key in zero:
            if key not in _USED_ZERO:
                res.ignored.append(f"{where}zero_optimization.{key} {_scalar(zero[key])}".rstrip())
    else:
        raise ParseError(
            f"`{where}zero_optimization` must be an object, got `{short(zero)}`", code="invalid_value"
        )

    mbs = _batch(doc, "train_micro_batch_size_per_gpu", res, where)
    gas = _batch(doc, "gradient_accumulation_steps", res, where)
    tbs = _batch(doc, "train_batch_size", res, where)
    if mbs is not None:
        spec["mbs"] = mbs
    if tbs is not None:
        spec["gbs"] = tbs
    if gas is not None:
        facts["gas"] = gas
        res.note(f"{where}gradient_accumulation_steps {gas}")
    if tbs is not None and mbs is not None and gas is not None:
        if tbs % (mbs * gas) != 0:
            raise ParseError(
                f"{where}train_batch_size {tbs} is not micro batch {mbs} x gradient_accumulation_steps {gas} x "
                "a whole number of GPUs",
                code="batch_mismatch",
                hint="DeepSpeed requires train_batch_size = train_micro_batch_size_per_gpu x "
                "gradient_accumulation_steps x data-parallel size",
            )
        spec["dp"] = tbs // (mbs * gas)
        res.note(
            f"{where}dp {spec['dp']} inferred as train_batch_size / "
            f"(train_micro_batch_size_per_gpu x gradient_accumulation_steps)"
        )
    elif tbs is not None and mbs is not None:
        if tbs % mbs != 0:
            raise ParseError(
                f"{where}train_batch_size {tbs} is not a multiple of train_micro_batch_size_per_gpu {mbs}",
                code="batch_mismatch",
            )
        res.note(f"{where}dp x gradient_accumulation_steps = {tbs // mbs} (train_batch_size / micro batch)")
    elif tbs is not None and gas is None:
        res.note(f"{where}only train_batch_size given: DeepSpeed derives the micro batch from the GPU count")

    bf16_key = "bf16" if "bf16" in doc else "bfloat16"
    auto = _auto_enabled(doc.get("fp16")) or _auto_enabled(doc.get(bf16_key))
    fp16 = _enabled(doc.get("fp16"), "fp16", res, where)
    bf16 = _enabled(doc.get(bf16_key), bf16_key, res, where)
    if fp16 and bf16:
        raise ParseError(
            f"{where}fp16.enabled and {bf16_key}.enabled are both true; DeepSpeed allows one of them",
            code="conflicting_options",
        )
    if fp16:
        spec["precision"] = "fp16"
    elif bf16:
        spec["precision"] = "bf16"
    elif not auto:
        spec["precision"] = "fp32"
        res.note(f"{where}neither fp16 nor bf16 is enabled: fp32 training")

    ac = doc.get("activation_checkpointing")
    if isinstance(ac, dict):
        on = [k for k in ("partition_activations", "cpu_checkpointing", "contiguous_memory_optimization") if ac.get(k) is True]
        res.note(
            f"{where}activation_checkpointing section: "
            + (", ".join(on) if on else "no option enabled")
            + " (applies only when the model code checkpoints activations)"
        )

    for key in doc:
        if key not in _USED_TOP:
            text = _scalar(doc[key])
            res.ignored.append(f"{where}{key} {text}".rstrip())
    return facts


def parse(text: str, filename: str | None) -> Result:
    what = f"`{filename}`" if filename else "the DeepSpeed config"
    doc, lenient = load_json(text, what)
    res = Result(kind="deepspeed")
    if lenient:
        res.note("the file has comments or trailing commas (DeepSpeed reads configs with hjson, which accepts them)")
    if not isinstance(doc, dict):
        raise ParseError(f"{what} must be a JSON object at the top, got a {type(doc).__name__}", code="invalid_value")
    read_config(doc, res)
    return res
