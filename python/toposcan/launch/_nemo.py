"""NeMo 2 and Megatron-Bridge recipe overrides: Hydra/OmegaConf ``key=value`` lines or arguments.

NeMo 2 recipes are overridden as ``recipe.trainer.strategy.tensor_model_parallel_size=8``,
``trainer.num_nodes=4``, ``data.global_batch_size=512`` or ``model.config.num_layers=32`` (``nemo llm pretrain
--factory llama3_8b ...``); Megatron-Bridge as ``model.tensor_model_parallel_size=8``,
``train.global_batch_size=512``, ``dataset.sequence_length=4096`` (its ``ConfigContainer`` groups: ``model``,
``train``, ``optimizer``, ``ddp``, ``dataset``, ``mixed_precision``, ...). Both end in Megatron-Core's
``TransformerConfig`` / ``ModelParallelConfig`` field names, so a key is matched by its last dotted part.

Overrides change a recipe; what they leave out is the recipe's own value, which toposcan cannot see. So no
Megatron default is filled in: the fields left out are named in a note, and the architecture comes from
``--model`` (or from the recipe name, where it names a catalog model).
"""

from __future__ import annotations

import re
import shlex

from ..errors import ParseError
from ._common import MAX_INT, Result, parse_int, short
from . import _megatron

_OVERRIDE = re.compile(r"(\+\+|\+|~)?([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)=(.*)", re.S)

#: Last key part -> spec key, for positive integers.
_INTS = {
    "tensor_model_parallel_size": "tp",
    "pipeline_model_parallel_size": "pp",
    "virtual_pipeline_model_parallel_size": "vpp",
    "context_parallel_size": "cp",
    "expert_model_parallel_size": "ep",
    "expert_tensor_parallel_size": "etp",
    "num_layers": "layers",
    "hidden_size": "hidden",
    "num_attention_heads": "heads",
    "num_query_groups": "kv_heads",
    "ffn_hidden_size": "ffn_hidden",
    "global_batch_size": "gbs",
    "micro_batch_size": "mbs",
    "num_moe_experts": "experts",
    "moe_router_topk": "topk",
    "seq_length": "seq_len",
    "sequence_length": "seq_len",
    "vocab_size": "vocab",
}
_CLUSTER = {"num_nodes": "nodes", "devices": "gpus_per_node"}
_BOOLS = {"sequence_parallel", "gated_linear_unit", "share_embeddings_and_output_weights", "add_bias_linear",
          "use_distributed_optimizer", "bf16", "fp16", "optimizer_cpu_offload"}
_STRINGS = {"recompute_granularity", "recompute_method", "recompute_num_layers", "normalization",
            "position_embedding_type", "fp8", "precision", "mixed_precision", "cp_comm_type", "fp8_recipe"}
KNOWN = frozenset(_INTS) | frozenset(_CLUSTER) | _BOOLS | _STRINGS | {"max_position_embeddings",
                                                                     "num_distributed_optimizer_instances"}

#: ``cp_comm_type`` -> cp_comm (as Megatron's ``--cp-comm-type``: a2a is Ulysses, the rest ring-like).
_CP_COMM = {"p2p": "ring", "allgather": "ring", "a2a+p2p": "ring", "a2a": "ulysses"}
#: ``fp8_recipe`` -> fp8_recipe (``tensorwise`` is current scaling; ``mxfp8`` is its own precision).
_FP8_RECIPE = {"delayed": "delayed", "tensorwise": "current", "blockwise": "blockwise", "mxfp8": "mxfp8"}
#: ``peft=`` values that are low-rank adapters (Megatron-Bridge / NeMo 2 ``LoRA``, ``DoRA``,
#: ``CanonicalLoRA``); ``none`` trains every weight.
_PEFT = {"lora": "lora", "dora": "lora", "canonical_lora": "lora", "none": None}

#: Layout fields a recipe sets itself when the overrides are silent (named in a note).
_LAYOUT = ("tp", "pp", "cp", "ep", "mbs", "gbs")

#: Recipe names (``--factory llama3_8b``, ``pretrain_llama3_8b.py``) of catalog models with the same
#: architecture: NeMo 2 ``nemo.collections.llm.recipes`` and Megatron-Bridge ``examples/recipes`` names.
RECIPE_MODELS = {
    "llama3_8b": "llama-3-8b", "llama31_8b": "llama-3-8b",
    "llama3_70b": "llama-3-70b", "llama31_70b": "llama-3-70b",
    "llama31_405b": "llama-3-405b",
    "llama2_7b": "llama-2-7b", "llama2_13b": "llama-2-13b", "llama2_70b": "llama-2-70b",
    "mixtral_8x7b": "mixtral-8x7b",
}

#: Low-precision GEMM formats, which a bf16/fp16 setting elsewhere (the master weights') does not undo.
_LOW = ("fp8", "mxfp8", "nvfp4")

_PRECISION = {
    "bf16-mixed": "bf16", "bf16": "bf16", "bf16-true": "bf16", "bf16_mixed": "bf16",
    "16-mixed": "fp16", "16": "fp16", "fp16": "fp16", "fp16-mixed": "fp16", "fp16_mixed": "fp16",
    "32": "fp32", "32-true": "fp32", "fp32": "fp32",
}


def split(token: str) -> tuple[str, str, str] | None:
    """(modifier, dotted key, value) of a Hydra override ``[+|++|~]a.b.c=value``; None for other tokens."""
    match = _OVERRIDE.fullmatch(token)
    if match is None:
        return None
    return match.group(1) or "", match.group(2), match.group(3)


def is_known(token: str) -> bool:
    """Whether ``token`` is an override of a field toposcan reads (a dotted key, by its last part)."""
    found = split(token)
    return found is not None and "." in found[1] and found[1].rsplit(".", 1)[1] in KNOWN


_KNOWN_RE = re.compile(r"\.(?:" + "|".join(sorted(KNOWN, key=len, reverse=True)) + r")=")


def looks_like_overrides(text: str) -> bool:
    """Whether ``text`` holds a recipe override of a field toposcan reads (``a.b.num_layers=32``)."""
    if _KNOWN_RE.search(text) is None:  # cheap test first: shell-splitting 1M characters takes a second
        return False
    tokens = tokens_of(text, strict=False)
    return tokens is not None and any(is_known(t) for t in tokens)


def tokens_of(text: str, *, strict: bool = True) -> list[str] | None:
    """The words of ``text`` split like a shell (comments and line continuations honoured)."""
    if not any(ch in text for ch in "'\"\\"):
        # no quoting: the same words as shlex gives (a `#` starts a comment to the end of its line),
        # found a hundred times faster, which matters for a file near the size limit
        return [w for line in text.split("\n") for w in re.split(r"[ \t\r]+", line.split("#", 1)[0]) if w]
    try:
        return shlex.split(text.replace("\\\n", " "), comments=True)
    except ValueError as exc:
        if not strict:
            return None
        raise ParseError(f"unbalanced quotes ({short(str(exc))})", code="unbalanced_quotes") from None


def _value(raw: str) -> str | None:
    """An override value without its quotes; None for ``null`` / ``None``."""
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return None if value.lower() in ("null", "none", "~") else value


def _bool(value: str, key: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ParseError(f"`{key}` must be `true` or `false`, got `{short(value)}`", code="invalid_value")


def recipe_model(tokens: list[str], script: str = "") -> str | None:
    """The catalog model a NeMo 2 ``--factory NAME`` / ``recipe=NAME`` or a recipe script name points to."""
    names = []
    for k, token in enumerate(tokens):
        if token in ("--factory", "-f", "--recipe") and k + 1 < len(tokens):
            names.append(tokens[k + 1])
        elif token.startswith(("--factory=", "--recipe=", "recipe=", "factory=")):
            names.append(token.split("=", 1)[1])
    if script:
        names.append(re.sub(r"^(?:pretrain|finetune)_|\.py$", "", script.rsplit("/", 1)[-1]))
    for name in names:
        key = name.strip().lower().rsplit(".", 1)[-1]
        if key in RECIPE_MODELS:
            return RECIPE_MODELS[key]
    return None


def read_overrides(tokens: list[str], res: Result, *, script: str = "") -> int:
    """Read the overrides in ``tokens`` into ``res``; returns how many were read. Other tokens go to ignored."""
    spec = res.spec
    seen: dict[str, str] = {}  # spec key -> the override that set it
    lengths: dict[bool, tuple[str, int]] = {}  # sequence length of the data (True) and of the model (False)
    cluster: dict[str, int] = {}
    read = 0
    prefixes: set[str] = set()
    previous = ""
    for token in tokens:
        found = split(token)
        after_flag, previous = previous in ("--factory", "-f", "--recipe"), token
        if found is not None and found[1] in ("peft", "mixed_precision") and found[0] != "~":
            if found[1] == "peft":
                _peft(found[2], res)
            elif _value(found[2]) is not None:  # Megatron-Bridge: a recipe name, e.g. bf16_with_mxfp8_mixed
                _string("mixed_precision", "mixed_precision", _value(found[2]), res)
            read += 1
            continue
        if found is None or "." not in found[1]:
            if not (after_flag or token.startswith(("--factory", "--recipe", "recipe=", "factory=", "-f"))):
                res.ignored.append(token)
            continue
        modifier, key, raw = found
        last = key.rsplit(".", 1)[1]
        if key.split(".", 1)[0] == "peft" and last in ("dim", "r") and modifier != "~":
            value = _value(raw)
            if value is not None:
                spec["lora_rank"] = parse_int(value, key, minimum=1, maximum=MAX_INT)
                read += 1
            continue
        if last not in KNOWN or modifier == "~":
            res.ignored.append(token)
            continue
        prefixes.add(key.split(".", 1)[0])
        read += 1
        value = _value(raw)
        if value is None:
            res.note(f"`{key}` is null: the recipe's value is dropped, toposcan's default applies")
            continue
        target = _INTS.get(last) or _CLUSTER.get(last)
        if target is not None:
            number = parse_int(value, key, minimum=1, maximum=MAX_INT)
            if last in _CLUSTER:
                cluster[target] = number
                continue
            if target == "seq_len":
                is_data = bool({"data", "dataset"} & set(key.split(".")))
                lengths[is_data] = (key, number)
                continue
            if target in spec and spec[target] != number:
                res.note(f"`{seen[target]}` {spec[target]} and `{key}` {number} differ; the last is used")
            spec[target] = number
            seen[target] = key
        elif last == "max_position_embeddings":
            res.max_position_embeddings = parse_int(value, key)
        elif last == "num_distributed_optimizer_instances":
            instances = parse_int(value, key, minimum=1, maximum=MAX_INT)
            if instances > 1:  # HSDP: shard within dp / N, N replicas (the shard size needs dp: topo check)
                spec["fsdp_replicas"] = instances
        elif last in _BOOLS:
            flag = _bool(value, key)
            if last == "sequence_parallel":
                spec["sequence_parallel"] = flag
            elif last == "gated_linear_unit":
                spec["activation"] = "swiglu" if flag else "gelu"
            elif last == "share_embeddings_and_output_weights":
                spec["tied_embeddings"] = flag
            elif last == "add_bias_linear":
                spec["bias"] = flag
            elif last == "use_distributed_optimizer":
                spec["zero_stage"] = 1 if flag else 0
            elif last == "optimizer_cpu_offload":
                if flag:
                    spec["offload"] = "optimizer"
            elif flag:  # bf16 / fp16
                if spec.get("precision") not in _LOW:
                    spec["precision"] = last
        else:
            _string(last, key, value, res)
    if lengths:
        # the data module's length is what is trained; the model's is the length it is built for
        key, spec["seq_len"] = lengths.get(True) or lengths[False]
        seen["seq_len"] = key
        if len(lengths) == 2 and lengths[True][1] != lengths[False][1]:
            res.note(f"`{lengths[True][0]}` {lengths[True][1]} and `{lengths[False][0]}` {lengths[False][1]} "
                     "differ; the data's is used")
    if "kv_heads" in spec and "heads" in spec and spec["kv_heads"] > spec["heads"]:
        raise ParseError(f"`{seen['kv_heads']}` {spec['kv_heads']} is more than the {spec['heads']} attention heads",
                         code="invalid_value")
    for key, value in cluster.items():
        res.cluster[key] = value
    model = recipe_model(tokens, script)
    if model is not None:
        res.model = model
        res.note(f"the recipe is {model}'s (give --model to use another)")
    if prefixes & {"recipe", "trainer", "data"}:
        res.framework = "nemo-2"
    elif prefixes & {"train", "dataset", "ddp", "mixed_precision", "optimizer"}:
        res.framework = "megatron-bridge"
    else:
        res.framework = "nemo-2"
    _settle_fp8_recipe(res)
    if "lora_rank" in spec and spec.get("task") != "lora":
        del spec["lora_rank"]
        res.note("peft.dim without peft=lora: the adapter rank is not used")
    if script.rsplit("/", 1)[-1].startswith("finetune") and "task" not in spec:
        res.note("a fine-tuning recipe whose PEFT setting is not in the overrides: give --task sft or --task lora")
    if spec.get("tp", 1) == 1 and spec.get("sequence_parallel"):
        spec["sequence_parallel"] = False
        res.note("sequence_parallel has no effect at tp 1")
    silent = [k for k in _LAYOUT if k not in spec]
    if silent:
        res.note("not in the overrides, so the recipe's own values apply (toposcan cannot see them; "
                 "its defaults are used): " + ", ".join(silent))
    return read


def _peft(raw: str, res: Result) -> None:
    """``peft=lora`` (or dora, canonical_lora): adapters on a frozen base; ``peft=none``: every weight."""
    value = _value(raw)
    lowered = (value or "none").lower()
    if lowered not in _PEFT:
        listed = ", ".join(f"`{k}`" for k in _PEFT)
        raise ParseError(f"`peft` must be one of {{{listed}}}, got `{short(value)}`", code="invalid_value")
    res.spec["task"] = _PEFT[lowered] or "sft"
    if lowered not in ("lora", "none"):
        res.note(f"peft={lowered}: costed as LoRA adapters")


def _settle_fp8_recipe(res: Result) -> None:
    """An ``fp8_recipe`` override counts only when fp8 is on (in any order of the overrides):
    ``mxfp8`` then makes the precision mxfp8."""
    spec = res.spec
    recipe = spec.pop("_fp8_recipe", None)
    if recipe is None:
        return
    if spec.get("precision") != "fp8":
        res.note(f"fp8_recipe {recipe} has no effect without fp8")
    elif recipe == "mxfp8":
        spec["precision"] = "mxfp8"
        spec.pop("fp8_recipe", None)
    else:
        spec["fp8_recipe"] = recipe


def _string(last: str, key: str, value: str, res: Result) -> None:
    spec = res.spec
    if last == "recompute_granularity":
        if value not in ("full", "selective"):
            raise ParseError(f"`{key}` must be one of {{`full`, `selective`, `null`}}, got `{short(value)}`",
                             code="invalid_value")
        spec["recompute"] = value
    elif last in ("recompute_method", "recompute_num_layers"):
        res.note(f"`{key}={short(value)}`: recompute is costed for every layer")
    elif last == "normalization":
        mapped = {"layernorm": "layernorm", "rmsnorm": "rmsnorm"}.get(value.lower())
        if mapped is None:
            raise ParseError(f"`{key}` must be one of {{`LayerNorm`, `RMSNorm`}}, got `{short(value)}`",
                             code="invalid_value")
        spec["norm"] = mapped
    elif last == "position_embedding_type":
        mapped = {"rope": "rope", "learned_absolute": "learned", "yarn": "rope", "mrope": "rope"}.get(value)
        if mapped is None:
            res.note(f"`{key}={short(value)}`: no position embedding is costed")
        else:
            spec["position"] = mapped
    elif last == "fp8":
        if value.lower() in ("hybrid", "e4m3", "true"):
            if spec.get("precision") not in _LOW:
                spec["precision"] = "fp8"
        elif value.lower() != "false":
            raise ParseError(f"`{key}` must be one of {{`hybrid`, `e4m3`, `null`}}, got `{short(value)}`",
                             code="invalid_value")
    elif last == "cp_comm_type":
        if value not in _CP_COMM:
            listed = ", ".join(f"`{k}`" for k in _CP_COMM)
            raise ParseError(f"`{key}` must be one of {{{listed}}}, got `{short(value)}`", code="invalid_value")
        spec["cp_comm"] = _CP_COMM[value]
    elif last == "fp8_recipe":
        if value not in _FP8_RECIPE:
            listed = ", ".join(f"`{k}`" for k in _FP8_RECIPE)
            raise ParseError(f"`{key}` must be one of {{{listed}}}, got `{short(value)}`", code="invalid_value")
        spec["_fp8_recipe"] = _FP8_RECIPE[value]  # settled once every override is read
    elif last in ("precision", "mixed_precision"):
        lowered = value.lower()
        if "mxfp8" in lowered:  # Megatron-Bridge recipe names: bf16_with_mxfp8_mixed, ...
            spec["precision"] = "mxfp8"
        elif "nvfp4" in lowered:
            spec["precision"] = "nvfp4"
        elif "fp8" in lowered:
            spec["precision"] = "fp8"
            for part, recipe in (("current_scaling", "current"), ("delayed_scaling", "delayed"),
                                 ("subchannel", "blockwise"), ("blockwise", "blockwise")):
                if part in lowered:
                    spec["_fp8_recipe"] = recipe
        elif lowered in _PRECISION:
            if spec.get("precision") not in _LOW:
                spec["precision"] = _PRECISION[lowered]
        else:
            listed = ", ".join(f"`{k}`" for k in _PRECISION)
            raise ParseError(f"`{key}` must be one of {{{listed}}} or an fp8 recipe, got `{short(value)}`",
                             code="invalid_value")


def parse_tokens(tokens: list[str], *, script: str = "", launcher: list[str] | None = None) -> Result:
    """Overrides given as an argument list (``topo check --args``), with an optional launcher in front."""
    res = Result(kind="nemo")
    stated = _megatron._launcher_cluster(launcher or [], res)
    if not read_overrides(tokens, res, script=script):
        raise ParseError("the overrides set nothing toposcan reads (e.g. `trainer.strategy.tensor_model_parallel_size`, "
                         "`model.num_layers`)", code="no_training_command")
    for key, value in stated.items():
        res.cluster.setdefault(key, value)
    return res


def parse_text(text: str) -> Result:
    """A file of overrides, one or more a line (``#`` comments and ``\\`` continuations allowed), or one
    command line that runs a recipe script with them."""
    tokens = tokens_of(text) or []
    k = _megatron._script_index(tokens)
    if k is not None:
        return parse_tokens(tokens[k + 1:], script=tokens[k], launcher=tokens[:k])
    return parse_tokens(tokens)


def from_shell(shell, batch: dict) -> Result | None:
    """The overrides on the command of a shell script that runs a recipe (the one with the most read
    overrides); None when no command has any."""
    best, best_count = None, 0
    for cmd in shell.commands:
        head = cmd.argv[0].rsplit("/", 1)[-1] if cmd.argv else ""
        if head in _megatron._NOT_LAUNCHERS or head == "eval":
            continue
        count = sum(1 for t in cmd.argv if is_known(t))
        if count and count >= best_count:
            best, best_count = cmd, count
    if best is None:
        return None
    argv = best.argv
    k = _megatron._script_index(argv)
    launcher, rest, script = (best.prefix + argv[:k], argv[k + 1:], argv[k]) if k is not None else (best.prefix, argv, "")
    res = parse_tokens(rest, script=script, launcher=launcher)
    res.note(f"recipe overrides on line {best.line}" + (f" of `{script.rsplit('/', 1)[-1]}`" if script else ""))
    for key in ("nodes", "gpus_per_node"):
        if key not in res.cluster and key in batch:
            res.cluster[key] = batch[key]
    label = batch.get("gpu_label") or batch.get("constraint")
    if label and _megatron.gpu_name(label):
        res.cluster["gpu"] = _megatron.gpu_name(label)
    return res
