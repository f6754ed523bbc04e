"""torchtitan TOML job configs (``torchtitan/models/llama3/train_configs/llama3_8b.toml`` and the like).

Field names and defaults are those of torchtitan's ``torchtitan/config/job_config.py`` (``JobConfig``):
``[model]`` name / flavor / converters, ``[training]`` local_batch_size (8; ``batch_size`` in older
versions), global_batch_size (-1: local_batch_size x dp), seq_len (2048), mixed_precision_param
("bfloat16"), enable_cpu_offload; ``[parallelism]`` data_parallel_replicate_degree (1),
data_parallel_shard_degree (-1: the ranks left over), tensor_parallel_degree, pipeline_parallel_degree,
context_parallel_degree, expert_parallel_degree (1 each), pipeline_parallel_microbatch_size (1);
``[activation_checkpoint]`` mode ("selective"). A shard degree above 1 is FSDP (``fully_shard``: parameters,
gradients and optimizer states sharded, ZeRO stage 3). Float8 training is on when ``model.converters`` names
``float8`` (or an ``mx`` converter); a ``[float8]`` section alone only configures it (torchtitan's own
``llama3_70b.toml`` has one with the converter commented out).
"""

from __future__ import annotations

import tomllib
from typing import Any

from ..errors import ParseError
from ._common import MAX_INT, Result, short, typed_bool, typed_int

_SECTIONS = ("model", "training", "parallelism", "activation_checkpoint")

#: torchtitan flavors whose architecture is a catalog model's (torchtitan ``models/llama3/__init__.py``:
#: 8B dim 4096 / 32 layers / 32 heads / 8 kv heads; 70B 8192 / 80 / 64 / 8; 405B 16384 / 126 / 128 / 8;
#: the same shapes as Meta's Llama 3 configs that the catalog entries cite).
FLAVORS = {
    ("llama3", "8b"): "llama-3-8b",
    ("llama3", "70b"): "llama-3-70b",
    ("llama3", "405b"): "llama-3-405b",
    ("llama2", "7b"): "llama-2-7b",
    ("llama2", "13b"): "llama-2-13b",
    ("llama2", "70b"): "llama-2-70b",
}

_USED = {
    "model": {"name", "flavor", "converters"},
    "training": {"local_batch_size", "batch_size", "global_batch_size", "seq_len", "mixed_precision_param",
                 "enable_cpu_offload", "data_parallel_degree", "tensor_parallel_degree", "pipeline_parallel_degree"},
    "parallelism": {"data_parallel_replicate_degree", "data_parallel_shard_degree", "tensor_parallel_degree",
                    "pipeline_parallel_degree", "context_parallel_degree", "expert_parallel_degree",
                    "expert_tensor_parallel_degree", "pipeline_parallel_microbatch_size",
                    "pipeline_parallel_schedule", "pipeline_parallel_layers_per_stage"},
    "activation_checkpoint": {"mode", "selective_ac_option"},
}


#: ``parallelism.pipeline_parallel_schedule`` (torch.distributed.pipelining's schedule names) ->
#: schedule. The V-shaped ones (ZBVZeroBubble, DualPipeV) hold two stages per rank by construction,
#: which the core's zero-bubble and dualpipe schedules include: vpp stays 1 for them.
_SCHEDULES = {"1F1B": "1f1b", "GPipe": "1f1b", "Interleaved1F1B": "interleaved", "LoopedBFS": "interleaved",
              "InterleavedZeroBubble": "zero-bubble", "ZBVZeroBubble": "zero-bubble", "DualPipeV": "dualpipe"}


#: ``[float8] recipe_name`` (torchao's Float8LinearRecipeName) -> fp8_recipe.
_FLOAT8_RECIPES = {"tensorwise": "current", "rowwise": "current", "rowwise_with_gw_hp": "current"}


def load_toml(text: str, what: str) -> dict:
    """``tomllib.loads`` with every failure a one-line ParseError (duplicate keys are a TOML error)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParseError(f"{what} is not valid TOML: {short(str(exc), 100)}", code="bad_toml") from None
    except RecursionError:
        raise ParseError(f"{what}: TOML nested too deeply", code="too_deep") from None


def looks_like_torchtitan(doc: Any) -> bool:
    return isinstance(doc, dict) and any(isinstance(doc.get(s), dict)
                                         for s in ("parallelism", "training", "activation_checkpoint"))


def _table(doc: dict, name: str) -> dict:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ParseError(f"`[{name}]` must be a table, got `{short(value)}`", code="invalid_value")
    return value


def _degree(table: dict, section: str, key: str, default: int, *, leftover: bool = False) -> int:
    """A parallel degree: a positive integer, or -1 (``leftover``: the ranks left over) where allowed."""
    if key not in table:
        return default
    return _int_or_minus_one(table[key], f"{section}.{key}", leftover)


def _int_or_minus_one(raw: Any, name: str, minus_one: bool) -> int:
    value = typed_int(raw, name, minimum=-MAX_INT)
    if value >= 1 or (minus_one and value == -1):
        return value
    allowed = "-1 or a positive integer" if minus_one else "a positive integer"
    raise ParseError(f"`{name}` must be {allowed}, got `{value}`", code="invalid_value")


def parse(text: str, filename: str | None) -> Result:
    what = f"`{short(filename)}`" if filename else "the TOML config"
    doc = load_toml(text, what)
    res = Result(kind="torchtitan", framework="torchtitan")
    model, training, par, ac = (_table(doc, s) for s in _SECTIONS)
    for section, table in zip(_SECTIONS, (model, training, par, ac)):
        for key, value in table.items():
            if key not in _USED[section]:
                res.ignored.append(f"{section}.{key} = {short(value, 40)}")
    spec = res.spec
    defaults: list[str] = []

    # model: a catalog name where the flavor is one
    name, flavor = model.get("name", "llama3"), model.get("flavor")
    if "name" not in model:
        defaults.append("model llama3")
    if isinstance(name, str) and isinstance(flavor, str):
        catalog = FLAVORS.get((name.lower(), flavor.lower()))
        if catalog is not None:
            res.model = catalog
            res.note(f"model {name} {flavor} is the catalog's {catalog}")
        else:
            res.note(f"model {short(name)} flavor {short(flavor)} is not a catalog model; give --model")
    else:
        res.note("the file names no model flavor; give --model")

    # parallel layout ([parallelism]; older torchtitan kept the degrees under [training])
    src, section = (par, "parallelism") if par else (training, "training")
    replicate = _degree(src, section, "data_parallel_replicate_degree", 1)
    shard = _degree(src, section, "data_parallel_shard_degree", -1, leftover=True)
    if not par and "data_parallel_degree" in training:
        shard = _degree(training, "training", "data_parallel_degree", -1, leftover=True)
    for key, field in (("tp", "tensor_parallel_degree"), ("pp", "pipeline_parallel_degree"),
                       ("cp", "context_parallel_degree"), ("ep", "expert_parallel_degree")):
        spec[key] = _degree(src, section, field, 1)
        if field not in src:
            defaults.append(f"{key} 1")
    if shard > 0:
        spec["dp"] = replicate * shard
    else:
        res.note("data_parallel_shard_degree -1: FSDP over the ranks left after the other degrees"
                 + (f" (x {replicate} replicas)" if replicate > 1 else ""))
        if "data_parallel_shard_degree" not in src:
            defaults.append("data_parallel_shard_degree -1")
    if shard == 1:
        spec["zero_stage"] = 0
        res.note(f"data_parallel_shard_degree 1: DDP over {replicate} replicas (no sharding)")
    else:
        spec["zero_stage"] = 3
        if replicate > 1:  # HSDP: shard within groups of `shard`, replicate across `replicate` of them
            if shard > 0:
                spec["fsdp_shard"] = shard
            else:
                spec["fsdp_replicas"] = replicate  # the shard group is dp / replicate, once dp is known
            res.note(f"HSDP: sharded over {shard if shard > 0 else 'the leftover'} ranks, replicated {replicate} times")
    if "expert_tensor_parallel_degree" in src:
        spec["etp"] = _degree(src, section, "expert_tensor_parallel_degree", 1)
    spec["sequence_parallel"] = spec["tp"] > 1  # torchtitan's tensor-parallel plan shards norms over sequence

    # pipeline schedule (torchtitan's default 1F1B), only where there is a pipeline
    if spec["pp"] > 1 and "pipeline_parallel_schedule" in par:
        name = par["pipeline_parallel_schedule"]
        if not isinstance(name, str) or name not in _SCHEDULES:
            listed = ", ".join(f"`{k}`" for k in _SCHEDULES)
            raise ParseError(f"`parallelism.pipeline_parallel_schedule` must be one of {{{listed}}}, "
                             f"got `{short(name)}`", code="invalid_value")
        spec["schedule"] = _SCHEDULES[name]
        if name == "GPipe":
            res.note("GPipe is costed as 1F1B (the same bubble; GPipe holds every micro batch's activations)")
        if spec["schedule"] == "interleaved":
            # torchtitan's looped schedules run two stages per rank unless layers per stage say otherwise,
            # which needs the layer count (the model's, not in this file)
            spec["vpp"] = 2
            res.note(f"{name}: 2 stages per rank assumed"
                     + (" (vpp from pipeline_parallel_layers_per_stage needs the layer count)"
                        if "pipeline_parallel_layers_per_stage" in par else ""))

    # batch
    local_key = "local_batch_size" if "local_batch_size" in training or "batch_size" not in training else "batch_size"
    local = typed_int(training[local_key], f"training.{local_key}") if local_key in training else 8
    if local_key not in training:
        defaults.append("local_batch_size 8")
    if spec["pp"] > 1:
        spec["mbs"] = _degree(par, "parallelism", "pipeline_parallel_microbatch_size", 1)
        if local % spec["mbs"]:
            raise ParseError(f"training.{local_key} {local} is not a multiple of "
                             f"parallelism.pipeline_parallel_microbatch_size {spec['mbs']}", code="invalid_value")
    else:
        spec["mbs"] = local
    gbs = _int_or_minus_one(training["global_batch_size"], "training.global_batch_size", True) \
        if "global_batch_size" in training else -1
    if gbs > 0:
        spec["gbs"] = gbs
    elif "dp" in spec:
        spec["gbs"] = local * spec["dp"]
        res.note(f"gbs {spec['gbs']} = training.{local_key} {local} x dp {spec['dp']} (torchtitan's default)")
    elif spec["pp"] > 1:
        res.note(f"the global batch is training.{local_key} {local} x dp, and dp is not in the file")
    spec["seq_len"] = typed_int(training["seq_len"], "training.seq_len") if "seq_len" in training else 2048
    if "seq_len" not in training:
        defaults.append("seq_len 2048")

    # recompute
    mode = ac.get("mode", "selective")
    if "mode" not in ac:
        defaults.append("activation_checkpoint selective")
    if mode not in ("none", "selective", "full"):
        raise ParseError(f"`activation_checkpoint.mode` must be one of {{`none`, `selective`, `full`}}, "
                         f"got `{short(mode)}`", code="invalid_value")
    spec["recompute"] = mode
    if mode == "selective":
        option = ac.get("selective_ac_option", "2")
        if str(option) != "op":
            res.note(f"selective_ac_option {short(option)}: full recompute of every {short(option)}th layer, "
                     "costed as selective")

    # precision
    converters = model.get("converters", [])
    if isinstance(converters, str):
        converters = [c.strip() for c in converters.split(",") if c.strip()]
    if not isinstance(converters, list) or not all(isinstance(c, str) for c in converters):
        raise ParseError("`model.converters` must be a list of converter names", code="invalid_value")
    fp8 = [c for c in converters if "float8" in c or c == "mx" or c.endswith(".mx")]
    float8 = doc.get("float8")
    if isinstance(float8, dict) and "enable_float8_linear" in float8 and typed_bool(
            float8["enable_float8_linear"], "float8.enable_float8_linear"):
        fp8.append("float8.enable_float8_linear")
    if fp8:
        spec["precision"] = "fp8"
        res.note(f"fp8 from {fp8[0]}")
        if any(c == "mx" or c.endswith(".mx") for c in fp8):
            spec["precision"] = "mxfp8"
        else:
            # torchao float8 training scales each tensor (tensorwise) or row (rowwise) from the tensor
            # itself: current scaling both (rowwise costed as current, its finer grain not modelled).
            recipe = float8.get("recipe_name", "tensorwise") if isinstance(float8, dict) else "tensorwise"
            if recipe not in _FLOAT8_RECIPES:
                listed = ", ".join(f"`{k}`" for k in _FLOAT8_RECIPES)
                raise ParseError(f"`float8.recipe_name` must be one of {{{listed}}}, got `{short(recipe)}`",
                                 code="invalid_value")
            spec["fp8_recipe"] = _FLOAT8_RECIPES[recipe]
    else:
        param = training.get("mixed_precision_param", "bfloat16")
        if param not in ("bfloat16", "float32"):
            raise ParseError(f"`training.mixed_precision_param` must be one of {{`bfloat16`, `float32`}}, "
                             f"got `{short(param)}`", code="invalid_value")
        spec["precision"] = "bf16" if param == "bfloat16" else "fp32"
        if isinstance(float8, dict) or "quantize" in doc:
            res.note("a float8/quantize section is present but model.converters does not name float8: "
                     f"{spec['precision']}")
    if "enable_cpu_offload" in training and typed_bool(training["enable_cpu_offload"], "training.enable_cpu_offload"):
        spec["offload"] = "optimizer+params"  # FSDP2's CPUOffloadPolicy: parameters, gradients and the step
    if defaults:
        res.note("torchtitan defaults where the file is silent: " + ", ".join(defaults))
    return res
