"""Megatron-LM and Megatron-DeepSpeed launch scripts and argument lists.

A script is read by :mod:`._shell` (variables, arrays, ``bash -c``, here-documents); then the command line
that runs the training script (``pretrain_gpt.py`` and the like, under ``torchrun``,
``python -m torch.distributed.launch``, ``srun``, ``deepspeed`` or plain ``python``) is picked, and its
arguments are mapped to the keyword arguments of ``toposcan.evaluate``. Arguments that toposcan does not use
are listed in ``ignored``; defaults that Megatron applies when an argument is absent are listed in ``notes``.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass

from ..errors import ParseError
from . import _deepspeed
from ._common import MAX_INPUT_CHARS, Result, parse_int, short, unresolved_name
from ._shell import SHELLS, Shell

# --------------------------------------------------------------------------------------------- argument table

#: Value arguments that map one to one onto a positive-integer spec key.
_INT_ARGS = {
    "tensor-model-parallel-size": "tp",
    "pipeline-model-parallel-size": "pp",
    "virtual-pipeline-model-parallel-size": "vpp",
    "num-layers": "layers",
    "hidden-size": "hidden",
    "num-attention-heads": "heads",
    "ffn-hidden-size": "ffn_hidden",
    "seq-length": "seq_len",
    "encoder-seq-length": "seq_len",
    "micro-batch-size": "mbs",
    "batch-size": "mbs",
    "global-batch-size": "gbs",
    "context-parallel-size": "cp",
    "expert-model-parallel-size": "ep",
    "expert-tensor-parallel-size": "etp",
    "moe-router-topk": "topk",
    "topk": "topk",
}

#: Arguments read for something other than a direct spec key, with their number of values
#: (an int, or "+" for one or more).
_VALUE_ARGS: dict[str, int | str] = {
    "num-query-groups": 1,
    "num-layers-per-virtual-pipeline-stage": 1,
    "max-position-embeddings": 1,
    "vocab-size": 1,
    "padded-vocab-size": 1,
    "pad-vocab-size-to": 1,
    "make-vocab-size-divisible-by": 1,
    "rampup-batch-size": 3,
    "num-experts": "+",
    "zero-stage": 1,
    "recompute-granularity": 1,
    "recompute-method": 1,
    "recompute-num-layers": 1,
    "position-embedding-type": 1,
    "normalization": 1,
    "fp8-format": 1,
    "fp8-recipe": 1,
    "cp-comm-type": "+",
    "num-distributed-optimizer-instances": 1,
    "data-parallel-sharding-strategy": 1,
    "deepspeed-config": 1,
    "tokenizer-type": 1,
    "tokenizer-model": 1,
    "tokenizer-name-or-path": 1,
    "vocab-file": 1,
    "merge-file": 1,
    "decoder-first-pipeline-num-layers": 1,
    "decoder-last-pipeline-num-layers": 1,
    "num-layers-in-first-pipeline-stage": 1,
    "num-layers-in-last-pipeline-stage": 1,
}

_BOOL_ARGS = frozenset({
    "swiglu", "squared-relu", "fp16", "bf16", "fp8-hybrid", "fp8-e4m3", "checkpoint-activations",
    "recompute-activations", "sequence-parallel", "untie-embeddings-and-output-weights", "disable-bias-linear",
    "add-bias-linear", "use-rotary-position-embeddings", "no-position-embedding", "group-query-attention",
    "deepspeed", "deepspeed-activation-checkpointing", "use-distributed-optimizer", "optimizer-cpu-offload",
    "account-for-embedding-in-pipeline-split", "account-for-loss-in-pipeline-split",
    "use-torch-fsdp2", "use-megatron-fsdp", "use-custom-fsdp",
})

_KNOWN = frozenset(_INT_ARGS) | frozenset(_VALUE_ARGS) | _BOOL_ARGS
#: The argument names (without dashes) that :func:`read_args` reads, and the switches among them.
KNOWN, BOOL_ARGS = _KNOWN, _BOOL_ARGS

#: Arguments that say what the model or its parallel layout is; a command with none of them is not training.
_MODEL_ARGS = frozenset(_INT_ARGS) | {"num-experts", "num-query-groups", "rampup-batch-size"}

#: Vocabulary sizes of Megatron's named tokenizers, for the note written when ``--vocab-size`` is absent:
#: GPT-2 BPE 50257 (the ``vocab_size`` of the Hugging Face ``gpt2`` config), Llama 2 SentencePiece 32000
#: (Touvron et al. 2023, section 2.1: "32k tokens"), BERT base uncased WordPiece 30522 (``bert-base-uncased`` config).
_TOKENIZER_VOCAB = {
    "GPT2BPETokenizer": 50257,
    "Llama2Tokenizer": 32000,
    "BertWordPieceLowerCase": 30522,
}

#: Commands whose arguments are never a training run, even when they mention one.
_NOT_LAUNCHERS = frozenset({
    "echo", "printf", "cat", "tee", "logger", "sed", "grep", "awk", "cp", "mv", "ls", "mkdir", "rm",
    "touch", "cd", "export", "declare", "local", "read", "wait", "sleep", "set", "trap", "clear",
})

_GPU_NAMES = {
    "a100_80gb": "a100-80", "a100-80gb": "a100-80", "a100-80": "a100-80", "a100-sxm4-80gb": "a100-80",
    "a100_40gb": "a100-40", "a100-40gb": "a100-40", "a100-40": "a100-40", "a100-sxm4-40gb": "a100-40",
    "h100_80gb": "h100-80", "h100-80gb": "h100-80", "h100-80": "h100-80", "h100-sxm": "h100-80",
    "h100_sxm": "h100-80", "h100-sxm5-80gb": "h100-80", "h100-pcie": "h100-pcie", "h200": "h200",
    "h200_141gb": "h200", "b200": "b200", "v100-32gb": "v100-32", "v100_32gb": "v100-32", "v100-32": "v100-32",
    "mi300x": "mi300x", "mi250x": "mi250x",
}


#: ``--cp-comm-type`` -> cp_comm: all-gather and the hierarchical a2a+p2p are costed as the ring
#: (K/V exchanged among cp ranks); plain a2a is Ulysses (Megatron-Core ``TEDotProductAttention``).
_CP_COMM = {"p2p": "ring", "allgather": "ring", "a2a+p2p": "ring", "a2a": "ulysses"}
#: ``--fp8-recipe`` -> fp8_recipe (``tensorwise``: one scale per tensor from the tensor itself, i.e.
#: current scaling); ``mxfp8`` is its own precision.
_FP8_RECIPE = {"delayed": "delayed", "tensorwise": "current", "blockwise": "blockwise", "mxfp8": "mxfp8"}
#: Megatron-FSDP's ``--data-parallel-sharding-strategy`` -> ZeRO stage.
_SHARDING = {"no_shard": 0, "optim": 1, "optim_grads": 2, "optim_grads_params": 3}


def gpu_name(label: str) -> str | None:
    """The catalog name of a GPU label written in a launch file (``a100_80gb`` -> ``a100-80``), if unambiguous."""
    return _GPU_NAMES.get(label.strip().lower())


def _canon(flag: str) -> str:
    return flag.lstrip("-").replace("_", "-")


def _is_flag(token: str) -> bool:
    if token.startswith("--"):
        return len(token) > 2
    return token.startswith("-") and len(token) > 1 and not re.fullmatch(r"-[0-9.]+(?:[eE][-+]?[0-9]+)?", token)


# --------------------------------------------------------------------------------------------- argument lists


def _scan(tokens: list[str]) -> tuple[list[tuple[str, str, list[str]]], list[str]]:
    """Split an argument list into (flag as written, canonical name, values) entries and stray tokens."""
    entries: list[tuple[str, str, list[str]]] = []
    stray: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not _is_flag(token):
            stray.append(token)
            continue
        flag, eq, inline = token.partition("=")
        canon = _canon(flag)
        if eq:
            values = [inline]
        else:
            values = []
            arity = _VALUE_ARGS.get(canon, 1 if canon in _INT_ARGS else 0 if canon in _BOOL_ARGS else "*")
            while i < len(tokens) and not _is_flag(tokens[i]):
                if isinstance(arity, int) and len(values) >= arity:
                    break
                values.append(tokens[i])
                i += 1
        entries.append((flag, canon, values))
    return entries, stray


def _seen(tokens: list[str]) -> set[str]:
    """The canonical names of the ``--flags`` in ``tokens``."""
    return {_canon(t.partition("=")[0]) for t in tokens if t.startswith("--")}


def read_args(tokens: list[str], res: Result, *, ds_launcher: bool = False,
              files: dict[str, str] | None = None, base_dir: str | None = None, note_defaults: bool = True) -> None:
    """Map Megatron arguments onto ``res.spec``; unknown ones go to ``res.ignored``.

    ``note_defaults=False`` leaves out the note listing Megatron's defaults for absent arguments (for a
    printed argument block, where an absent switch is a value Megatron printed, not a default).
    """
    entries, stray = _scan(tokens)
    args: dict[str, tuple[str, list[str]]] = {}
    for flag, canon, values in entries:
        if canon in _KNOWN:
            if canon in args and args[canon][1] != values:
                res.note(f"`{flag}` is given twice; the last value ({' '.join(values) or 'on'}) counts")
            args[canon] = (flag, values)
        else:
            res.ignored.append(" ".join([flag, *values]))
    res.ignored.extend(stray)
    spec = res.spec
    defaults: list[str] = []

    def values_of(canon: str) -> list[str] | None:
        if canon not in args:
            return None
        flag, values = args[canon]
        arity = _VALUE_ARGS.get(canon, 1 if canon in _INT_ARGS else 0)
        if arity == 0:
            if values:
                raise ParseError(f"`{flag}` takes no value, got `{short(' '.join(values))}`", code="invalid_value")
            return []
        if not values:
            raise ParseError(f"`{flag}` has no value", code="missing_value")
        if isinstance(arity, int) and len(values) != arity:
            raise ParseError(
                f"`{flag}` takes {arity} values, got {len(values)} (`{short(' '.join(values))}`)",
                code="missing_value",
            )
        return values

    def one(canon: str) -> str | None:
        values = values_of(canon)
        return None if values is None else values[0]

    def integer(canon: str, minimum: int = 1, maximum: int | None = None) -> int | None:
        value = one(canon)
        if value is None:
            return None
        kwargs = {"minimum": minimum} if maximum is None else {"minimum": minimum, "maximum": maximum}
        return parse_int(value, args[canon][0], **kwargs)

    def flag(canon: str) -> bool:
        return values_of(canon) is not None

    for canon, key in _INT_ARGS.items():
        value = integer(canon)
        if value is not None:
            spec[key] = value
    if "encoder-seq-length" in args and "seq-length" in args:
        spec["seq_len"] = integer("seq-length")

    # parallel layout
    for key, name in (("tp", "tensor-model-parallel-size"), ("pp", "pipeline-model-parallel-size")):
        if key not in spec:
            spec[key] = 1
            defaults.append(f"{key} 1")
    per_stage = integer("num-layers-per-virtual-pipeline-stage")
    if per_stage is not None and "vpp" not in spec:
        layers, pp = spec.get("layers"), spec["pp"]
        if pp == 1:
            res.note("--num-layers-per-virtual-pipeline-stage has no effect with pp 1")
        elif layers is None:
            res.note("vpp not derived: --num-layers-per-virtual-pipeline-stage needs --num-layers")
        elif layers % pp or (layers // pp) % per_stage:
            res.note(
                f"vpp not derived: {layers} layers over pp {pp} is not a multiple of "
                f"--num-layers-per-virtual-pipeline-stage {per_stage}"
            )
        else:
            spec["vpp"] = layers // pp // per_stage
            res.note(f"vpp {spec['vpp']} from layers {layers} / pp {pp} / --num-layers-per-virtual-pipeline-stage {per_stage}")
    for canon in ("decoder-first-pipeline-num-layers", "decoder-last-pipeline-num-layers",
                  "num-layers-in-first-pipeline-stage", "num-layers-in-last-pipeline-stage"):
        if integer(canon) is not None:
            spec["uneven_stages"] = True
            res.note(f"uneven pipeline stages from --{canon}")
    for canon in ("account-for-embedding-in-pipeline-split", "account-for-loss-in-pipeline-split"):
        if flag(canon):
            spec["uneven_stages"] = True
            res.note(f"uneven pipeline stages from --{canon}")

    # attention
    groups = integer("num-query-groups")
    if groups is not None:
        if flag("group-query-attention"):
            spec["kv_heads"] = groups
        else:
            res.ignored.append(f"{args['num-query-groups'][0]} {groups}")
            res.note("--num-query-groups has no effect without --group-query-attention")

    # sequence length
    max_pos = integer("max-position-embeddings")
    res.max_position_embeddings = max_pos
    if "seq_len" not in spec and max_pos is not None:
        spec["seq_len"] = max_pos
        res.note(f"seq_len {max_pos} from --max-position-embeddings (no --seq-length)")
    elif max_pos is not None and spec["seq_len"] > max_pos:
        # Megatron's validate_args asserts max_position_embeddings >= seq_length (any position type)
        seq_flag = args["seq-length" if "seq-length" in args else "encoder-seq-length"][0]
        res.finding(
            "seq_len_exceeds_max_positions", "fail",
            f"{seq_flag} {spec['seq_len']} is above {args['max-position-embeddings'][0]} {max_pos}: "
            "Megatron's argument check stops the run (max_position_embeddings >= seq_length)",
            "raise --max-position-embeddings to at least the sequence length, or shorten --seq-length",
        )

    # model shape defaults and switches
    if flag("swiglu"):
        spec["activation"] = "swiglu"
    else:
        spec["activation"] = "gelu"
        if flag("squared-relu"):
            res.note("--squared-relu is costed as a two-matrix MLP, like gelu")
        else:
            defaults.append("activation gelu")
            res.defaulted.add("activation")
    position_type = one("position-embedding-type")
    if position_type is not None:
        mapping = {"learned_absolute": "learned", "absolute": "learned", "learned": "learned", "rope": "rope",
                   "rotary": "rope", "mrope": "rope", "alibi": "alibi", "none": None, "relative": None}
        if position_type not in mapping:
            listed = ", ".join(f"`{k}`" for k in mapping)
            raise ParseError(
                f"`{args['position-embedding-type'][0]}` must be one of {{{listed}}}, got `{short(position_type)}`",
                code="invalid_value",
            )
        if mapping[position_type] is not None:
            spec["position"] = mapping[position_type]
        else:
            res.note(f"--position-embedding-type {position_type}: no position embedding is costed")
    elif flag("use-rotary-position-embeddings"):
        spec["position"] = "rope"
    elif flag("no-position-embedding"):
        res.note("--no-position-embedding: no position embedding is costed")
    else:
        spec["position"] = "learned"
        defaults.append("position learned")
        res.defaulted.add("position")
    norm = one("normalization")
    if norm is not None:
        mapped = {"layernorm": "layernorm", "rmsnorm": "rmsnorm"}.get(norm.lower())
        if mapped is None:
            raise ParseError(
                f"`{args['normalization'][0]}` must be one of {{`LayerNorm`, `RMSNorm`}}, got `{short(norm)}`",
                code="invalid_value",
            )
        spec["norm"] = mapped
    else:
        spec["norm"] = "layernorm"
        defaults.append("norm layernorm")
        res.defaulted.add("norm")
    if flag("disable-bias-linear"):
        spec["bias"] = False
    else:
        spec["bias"] = True
        if not flag("add-bias-linear"):
            defaults.append("bias on")
            res.defaulted.add("bias")
    if flag("untie-embeddings-and-output-weights"):
        spec["tied_embeddings"] = False
    else:
        spec["tied_embeddings"] = True
        defaults.append("tied embeddings")
        res.defaulted.add("tied_embeddings")

    # vocabulary
    _vocab(spec, res, integer, one)

    # batch
    ramp = values_of("rampup-batch-size")
    if ramp is not None:
        flag_name = args["rampup-batch-size"][0]
        start = parse_int(ramp[0], f"{flag_name} (start)")
        increment = parse_int(ramp[1], f"{flag_name} (increment)")
        samples = parse_int(ramp[2], f"{flag_name} (samples)", minimum=0)
        spec["rampup"] = {"start": start, "increment": increment, "samples": samples}

    # mixture of experts
    experts_values = values_of("num-experts")
    if experts_values is not None:
        experts = [parse_int(v, args["num-experts"][0]) for v in experts_values]
        if len(set(experts)) > 1:
            res.note(f"--num-experts lists {len(experts)} values (per layer group); the largest, {max(experts)}, is used")
        spec["experts"] = max(experts)
        if spec["experts"] == 1:
            del spec["experts"]
            res.note("--num-experts 1: a dense model")

    # recompute
    granularity = one("recompute-granularity")
    if granularity is not None:
        if granularity not in ("full", "selective"):
            raise ParseError(
                f"`{args['recompute-granularity'][0]}` must be one of {{`full`, `selective`}}, got `{short(granularity)}`",
                code="invalid_value",
            )
        spec["recompute"] = granularity
        if flag("checkpoint-activations") and granularity != "full":
            res.note("--checkpoint-activations and --recompute-granularity both given; the latter is used")
    elif flag("checkpoint-activations"):
        spec["recompute"] = "full"
        res.note("recompute full from --checkpoint-activations")
    elif flag("recompute-activations"):
        spec["recompute"] = "selective"
        res.note("recompute selective from --recompute-activations")
    else:
        spec["recompute"] = "none"
        defaults.append("recompute none")
    method = one("recompute-method")
    if method is not None:
        layers = integer("recompute-num-layers")
        res.note(f"--recompute-method {method}" + (f" over {layers} layers" if layers is not None else ""))

    # sequence parallel
    if flag("sequence-parallel"):
        if spec["tp"] == 1:
            spec["sequence_parallel"] = False
            res.note("--sequence-parallel has no effect at tp 1 (Megatron turns it off)")
        else:
            spec["sequence_parallel"] = True
    else:
        spec["sequence_parallel"] = False
        defaults.append("no sequence parallel")

    # context parallelism's exchange (one type, or one per layer)
    cp_types = values_of("cp-comm-type")
    if cp_types is not None:
        kinds = {_CP_COMM.get(t) for t in cp_types}
        if None in kinds:
            bad = next(t for t in cp_types if t not in _CP_COMM)
            listed = ", ".join(f"`{k}`" for k in _CP_COMM)
            raise ParseError(f"`{args['cp-comm-type'][0]}` must be one of {{{listed}}}, got `{short(bad)}`",
                             code="invalid_value")
        spec["cp_comm"] = "ulysses" if kinds == {"ulysses"} else "ring"
        if len(kinds) > 1:
            res.note("--cp-comm-type differs by layer; costed as ring (p2p) throughout")

    # precision
    fp8 = one("fp8-format")
    recipe = one("fp8-recipe")
    if flag("fp16") and flag("bf16"):
        raise ParseError("`--fp16` and `--bf16` are both given; Megatron allows one of them", code="conflicting_options")
    if recipe is not None and recipe not in _FP8_RECIPE:
        listed = ", ".join(f"`{k}`" for k in _FP8_RECIPE)
        raise ParseError(f"`{args['fp8-recipe'][0]}` must be one of {{{listed}}}, got `{short(recipe)}`",
                         code="invalid_value")
    if fp8 is not None or flag("fp8-hybrid") or flag("fp8-e4m3"):
        spec["precision"] = "fp8"
        if recipe == "mxfp8":
            spec["precision"] = "mxfp8"
        elif recipe is not None:
            spec["fp8_recipe"] = _FP8_RECIPE[recipe]
        else:
            spec["fp8_recipe"] = "delayed"
            defaults.append("fp8 recipe delayed")
    elif recipe is not None and recipe != "delayed":  # a log prints Megatron's default, delayed, always
        res.note(f"--fp8-recipe {short(recipe)} has no effect without --fp8-format")
    elif flag("bf16"):
        spec["precision"] = "bf16"
    elif flag("fp16"):
        spec["precision"] = "fp16"

    # DeepSpeed integration and ZeRO
    ds_flag = flag("deepspeed") or ds_launcher or "deepspeed-config" in args or "zero-stage" in args
    zero_arg = integer("zero-stage", minimum=0, maximum=3)
    if zero_arg is not None:
        spec["zero_stage"] = zero_arg
    if flag("deepspeed-activation-checkpointing"):
        res.note("--deepspeed-activation-checkpointing: DeepSpeed's checkpointing runs the recompute")
    ds_path = one("deepspeed-config")
    if ds_path is not None:
        _merge_deepspeed(ds_path, res, files or {}, base_dir)
    res.framework = "megatron-deepspeed" if ds_flag else "megatron-lm"
    if ds_flag:
        spec["uneven_stages"] = True
        res.note("Megatron-DeepSpeed: pipeline stages may hold unequal numbers of layers")
    if flag("use-distributed-optimizer") and "zero_stage" not in spec:
        spec["zero_stage"] = 1
        res.note("zero_stage 1 from --use-distributed-optimizer (optimizer states sharded over dp)")
    if flag("use-torch-fsdp2"):
        spec["zero_stage"] = 3
        res.note("zero_stage 3 from --use-torch-fsdp2 (parameters, gradients and optimizer states sharded)")
    if flag("use-megatron-fsdp") or flag("use-custom-fsdp"):
        strategy = one("data-parallel-sharding-strategy")
        if strategy is None:
            spec["zero_stage"] = 3
            res.note("Megatron-FSDP without --data-parallel-sharding-strategy: checked as optim_grads_params (ZeRO-3)")
        elif strategy in _SHARDING:
            spec["zero_stage"] = _SHARDING[strategy]
            res.note(f"zero_stage {spec['zero_stage']} from Megatron-FSDP's --data-parallel-sharding-strategy {strategy}")
        else:
            listed = ", ".join(f"`{k}`" for k in _SHARDING)
            raise ParseError(f"`{args['data-parallel-sharding-strategy'][0]}` must be one of {{{listed}}}, "
                             f"got `{short(strategy)}`", code="invalid_value")
    instances = integer("num-distributed-optimizer-instances")
    if instances is not None and instances > 1:
        # Megatron shards the distributed optimizer within dp / N ranks and keeps N replicas (HSDP);
        # the shard size needs dp, which `topo check` knows once the cluster is.
        spec["fsdp_replicas"] = instances
    if flag("optimizer-cpu-offload"):
        spec["offload"] = "optimizer"
    if "zero_stage" not in spec:
        spec["zero_stage"] = 0
        defaults.append("zero_stage 0")
    if "precision" not in spec:
        spec["precision"] = "fp32"
        defaults.append("precision fp32")

    # MoE top-k default
    if spec.get("experts", 1) > 1 and "topk" not in spec:
        spec["topk"] = 1 if ds_flag else 2
        defaults.append(f"topk {spec['topk']}")
        res.defaulted.add("topk")

    if defaults and note_defaults:
        res.note("Megatron defaults where the arguments are silent: " + ", ".join(defaults))


def _vocab(spec: dict, res: Result, integer, one) -> None:
    padded = integer("pad-vocab-size-to")
    if padded is None:
        padded = integer("padded-vocab-size")
    if padded is not None:
        spec["vocab"] = padded
        return
    vocab = integer("vocab-size")
    divisor = integer("make-vocab-size-divisible-by") or 128
    multiple = divisor * spec.get("tp", 1)
    if vocab is not None:
        spec["vocab"] = -(-vocab // multiple) * multiple
        if spec["vocab"] != vocab:
            res.note(f"vocab {vocab} padded to {spec['vocab']} (a multiple of {divisor} x tp {spec.get('tp', 1)})")
        return
    tokenizer = one("tokenizer-type")
    source = one("tokenizer-model") or one("tokenizer-name-or-path") or one("vocab-file")
    if tokenizer is None and one("merge-file") is not None:
        tokenizer = "GPT2BPETokenizer"  # a vocab file plus a merge file is GPT-2's BPE
    if tokenizer is None and source is None:
        res.note("vocab not stated and no tokenizer given")
        return
    hint = "vocab not stated: tokenizer" + (f" `{short(tokenizer)}`" if tokenizer else "")
    hint += f" (`{short(source)}`)" if source else ""
    known = _TOKENIZER_VOCAB.get(tokenizer or "")
    if known is not None:
        padded_known = -(-known // multiple) * multiple
        hint += f" has {known} tokens, padded to {padded_known}"
    res.note(hint)


def _merge_deepspeed(path: str, res: Result, files: dict[str, str], base_dir: str | None) -> None:
    """Read the DeepSpeed config named by ``--deepspeed_config`` (written by the script, or on disk)."""
    text = None
    where = f"{path}: "
    norm = os.path.normpath(path) if path else path
    for name, body in files.items():
        if name == path or os.path.normpath(name) == norm:
            text = body
            res.note(f"DeepSpeed config `{short(path)}` read from the script's here-document")
            break
    if text is None:
        if unresolved_name(path) is not None:
            res.note(f"DeepSpeed config `{short(path)}` depends on a variable the file does not set; not read")
            return
        if base_dir is None:
            res.note(f"DeepSpeed config `{short(path)}` not read (no base directory given)")
            return
        full = os.path.join(base_dir, path)
        try:
            if not os.path.isfile(full):
                res.note(f"DeepSpeed config `{short(path)}` not found under `{short(base_dir)}`")
                return
            if os.path.getsize(full) > MAX_INPUT_CHARS:
                raise ParseError(f"DeepSpeed config `{short(path)}` is larger than {MAX_INPUT_CHARS} bytes", code="too_large")
            with open(full, encoding="utf-8") as handle:
                text = handle.read(MAX_INPUT_CHARS + 1)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ParseError(f"DeepSpeed config `{short(path)}` cannot be read: {short(str(exc))}", code="unreadable") from None
        res.note(f"DeepSpeed config `{short(path)}` read from disk")
    doc, _ = _deepspeed.load_json(text, f"DeepSpeed config `{short(path)}`")
    sub = Result(kind="deepspeed")
    _deepspeed.read_config(doc, sub, where=where)
    spec = res.spec
    for key, value in sub.spec.items():
        if key == "zero_stage":
            if "zero_stage" in spec and spec["zero_stage"] != value:
                res.note(f"--zero-stage {spec['zero_stage']} differs from the DeepSpeed config's stage {value}; the config's is used")
            spec["zero_stage"] = value
        elif key == "precision":
            if "precision" in spec and spec["precision"] != value:
                res.note(f"the DeepSpeed config says {value}, the arguments say {spec['precision']}; the arguments are used")
            elif "precision" not in spec:
                spec["precision"] = value
        elif key in ("mbs", "gbs", "dp"):
            if key in spec and spec[key] != value:
                res.note(f"{where}{key} {value} differs from the arguments' {spec[key]}; the arguments are used")
            elif key not in spec and key != "dp":
                spec[key] = value
            elif key == "dp":
                res.note(f"{where}implies dp {value}")
        elif key not in spec:
            spec[key] = value
    for note in sub.notes:
        if not note.startswith(f"{where}neither fp16"):
            res.note(note)
    res.ignored.extend(sub.ignored)


# --------------------------------------------------------------------------------------------- cluster


def _launcher_cluster(tokens: list[str], res: Result) -> dict:
    """Nodes and GPUs per node stated on the launcher part of the command line; other flags go to ignored."""
    out: dict = {}
    names = {
        "nproc-per-node": "gpus_per_node", "num-gpus": "gpus_per_node", "gpus-per-node": "gpus_per_node",
        "nnodes": "nodes", "num-nodes": "nodes", "nodes": "nodes", "N": "nodes",
    }
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("-") or token in ("-u", "-m") or token.startswith("-X") or token.startswith("-W"):
            continue
        flag, eq, inline = token.partition("=")
        canon = flag.lstrip("-").replace("_", "-") if flag.startswith("--") else flag.lstrip("-")
        if token.startswith("-N") and not token.startswith("--") and len(token) > 2:
            canon, inline, eq = "N", token[2:], "="
        values = [inline] if eq else []
        if not eq:
            while i < len(tokens) and not tokens[i].startswith("-"):
                if canon == "standalone" or tokens[i].endswith(".py"):
                    break
                values.append(tokens[i])
                i += 1
                break  # launcher options take one value
        if canon == "standalone":
            out.setdefault("nodes", 1)
            continue
        if canon in names and values:
            raw = values[0]
            key = names[canon]
            if key == "nodes" and re.fullmatch(r"[0-9]+:[0-9]+", raw):
                raw = raw.split(":")[1]
                res.note(f"elastic --nnodes {values[0]}: the maximum, {raw}, is used")
            if key == "gpus_per_node" and ":" in raw:
                raw = raw.rsplit(":", 1)[1]
            if re.fullmatch(r"[0-9]{1,6}", raw) and int(raw) > 0:
                out[key] = int(raw)
            else:
                res.note(f"launcher `{flag} {short(values[0])}` is not a number toposcan can use")
            continue
        if flag.startswith("--"):
            res.ignored.append(" ".join([flag, *values]))
    return out


def sbatch(text: str) -> dict:
    """Nodes, GPUs per node and a GPU label from ``#SBATCH`` lines."""
    out: dict = {}
    for match in re.finditer(r"^#SBATCH[ \t]+(.*)$", text, re.M):
        try:
            tokens = shlex.split(match.group(1), comments=True)
        except ValueError:
            continue
        i = 0
        while i < len(tokens):
            token = tokens[i]
            i += 1
            flag, eq, value = token.partition("=")
            if not eq:
                if flag.startswith("-N") and len(flag) > 2:
                    flag, value = "-N", flag[2:]
                elif i < len(tokens) and not tokens[i].startswith("-"):
                    value = tokens[i]
                    i += 1
            if flag in ("--nodes", "-N") and re.fullmatch(r"[0-9]{1,6}", value):
                out["nodes"] = int(value)
            elif flag in ("--gres",):
                for item in value.split(","):
                    parts = item.split(":")
                    if parts[0] == "gpu" and len(parts) >= 2 and re.fullmatch(r"[0-9]{1,4}", parts[-1]):
                        out["gpus_per_node"] = int(parts[-1])
                        if len(parts) == 3:
                            out["gpu_label"] = parts[1]
            elif flag in ("--gpus-per-node",):
                parts = value.split(":")
                if re.fullmatch(r"[0-9]{1,4}", parts[-1]):
                    out["gpus_per_node"] = int(parts[-1])
                    if len(parts) == 2:
                        out["gpu_label"] = parts[0]
            elif flag in ("--constraint", "-C") and value:
                out["constraint"] = value
    return out


# --------------------------------------------------------------------------------------------- scripts


def _script_index(argv: list[str]) -> int | None:
    for k, token in enumerate(argv):
        if token.endswith(".py") and (k == 0 or argv[k - 1] not in ("-c", "-m")):
            return k
    return None


@dataclass
class _Pick:
    launcher: list[str]
    args: list[str]
    line: int
    script: str
    candidates: int


def _pick_command(shell: Shell) -> _Pick | None:
    """The command line that runs training: the one with the most Megatron arguments (the last on a tie)."""
    from . import _nemo  # imported here: _nemo builds on this module

    best: _Pick | None = None
    best_score = -1
    candidates = 0
    for cmd in shell.commands:
        argv = cmd.argv
        head = argv[0].rsplit("/", 1)[-1]
        if head in _NOT_LAUNCHERS or head == "eval" or (head in SHELLS and "-c" in argv):
            continue
        k = _script_index(argv)
        if k is None:
            if not argv[0].startswith("--"):
                continue
            launcher, rest, script = [], argv, ""
        else:
            launcher, rest, script = argv[:k], argv[k + 1 :], argv[k].rsplit("/", 1)[-1]
        seen = _seen(rest)
        if not (seen & _MODEL_ARGS) and not script.startswith("pretrain"):
            continue
        if not (seen & _MODEL_ARGS) and any(_nemo.is_known(t) for t in rest):
            continue  # a NeMo / Megatron-Bridge recipe script (pretrain_llama3_8b.py) given overrides
        candidates += 1
        score = len(seen & _KNOWN)
        if score >= best_score:
            best_score = score
            best = _Pick(cmd.prefix + launcher, rest, cmd.line, script, 0)
    if best is not None:
        best.candidates = candidates
    return best


def _bare_lines(shell: Shell) -> _Pick | None:
    """A file of bare Megatron arguments spread over several lines (``--num-layers 32`` on one line,
    ``--hidden-size 4096 \\`` on the next, comments between): bash sees one command per line, but the
    lines are one argument list. Read so only when no line runs a script."""
    bare = [c for c in shell.commands if c.argv and c.argv[0].startswith("-") and not c.prefix]
    if len(bare) < 2 or any(_script_index(c.argv) is not None for c in shell.commands):
        return None
    tokens = [t for c in bare for t in c.argv]
    if not (_seen(tokens) & _MODEL_ARGS):
        return None
    return _Pick([], tokens, bare[0].line, "", 1)


def parse_script(text: str, filename: str | None, base_dir: str | None) -> Result:
    res = Result(kind="megatron")
    batch = sbatch(text)
    env: dict = {}
    if "nodes" in batch:
        env["SLURM_NNODES"] = env["SLURM_JOB_NUM_NODES"] = str(batch["nodes"])
    if "gpus_per_node" in batch:
        env["SLURM_GPUS_ON_NODE"] = env["SLURM_GPUS_PER_NODE"] = str(batch["gpus_per_node"])
    shell = Shell(env)
    shell.run_text(text)
    bare = _bare_lines(shell)
    picked = bare or _pick_command(shell)
    what = f"`{filename}`" if filename else "the script"
    if picked is None:
        from . import _nemo  # imported here: _nemo builds on this module

        found = _nemo.from_shell(shell, batch)
        if found is not None:
            return found
        raise ParseError(
            f"{what} has no training command: no line runs a Megatron script (e.g. `pretrain_gpt.py`) with "
            "model arguments such as `--num-layers`",
            code="no_training_command",
            hint="pass the arguments directly with `topo check --args \"...\"`",
        )
    launcher, rest, line, script = picked.launcher, picked.args, picked.line, picked.script
    if bare is not None:
        res.note(f"bare arguments on several lines from line {line} read as one argument list")
    elif picked.candidates > 1:
        res.note(f"{picked.candidates} training commands found; the one on line {line} is used")
    if script and not script.startswith("pretrain_gpt") and script.startswith("pretrain_"):
        res.note(f"`{script}` is not pretrain_gpt.py; the model is costed as a GPT decoder")
    if bare is None:
        res.note(f"training command on line {line}" + (f" runs `{script}`" if script else ""))
    ds_launcher = any(t.rsplit("/", 1)[-1] == "deepspeed" for t in launcher[:1])
    stated = _launcher_cluster(launcher, res)
    read_args(rest, res, ds_launcher=ds_launcher, files=shell.files, base_dir=base_dir)
    for note in shell.notes:
        res.note(note)
    if shell.sourced:
        res.note("not followed: `source " + " ".join(short(s, 40) for s in shell.sourced[:3]) + "`")
    _cluster(res, stated, shell.env, batch)
    return res


def _env_int(env: dict, names: tuple[str, ...]) -> tuple[str, int] | None:
    for name in names:
        value = env.get(name)
        if isinstance(value, str) and re.fullmatch(r"[0-9]{1,6}", value.strip()) and int(value) > 0:
            return name, int(value)
    return None


def _cluster(res: Result, launcher: dict, env: dict, batch: dict) -> None:
    cluster = res.cluster
    for key, env_names, sbatch_key in (
        ("nodes", ("NNODES", "NUM_NODES", "N_NODES"), "nodes"),
        ("gpus_per_node", ("GPUS_PER_NODE", "NPROC_PER_NODE", "NUM_GPUS_PER_NODE"), "gpus_per_node"),
    ):
        found = None
        if key in launcher:
            found = (launcher[key], "the launcher")
        else:
            from_env = _env_int(env, env_names)
            if from_env is not None:
                found = (from_env[1], from_env[0])
            elif sbatch_key in batch:
                found = (batch[sbatch_key], "#SBATCH")
        if found is not None:
            cluster[key] = found[0]
            if sbatch_key in batch and batch[sbatch_key] != found[0]:
                res.note(f"{key} {found[0]} from {found[1]} differs from #SBATCH's {batch[sbatch_key]}")
    label = batch.get("gpu_label") or batch.get("constraint")
    if label:
        name = gpu_name(label)
        if name is not None:
            cluster["gpu"] = name
        else:
            res.note(f"GPU `{short(label)}` from #SBATCH is not specific enough to pick a catalog GPU; pass --gpu")
    spec = res.spec
    if "nodes" in cluster and "gpus_per_node" in cluster and "dp" not in spec:
        world = cluster["nodes"] * cluster["gpus_per_node"]
        model_parallel = spec.get("tp", 1) * spec.get("pp", 1) * spec.get("cp", 1)
        if world % model_parallel == 0:
            spec["dp"] = world // model_parallel
            res.note(f"dp {spec['dp']} = {world} GPUs / (tp {spec.get('tp', 1)} x pp {spec.get('pp', 1)} x cp {spec.get('cp', 1)})")
        else:
            res.note(f"{world} GPUs is not a multiple of tp x pp x cp = {model_parallel}; dp not derived")
    if "dp" in spec and "gbs" not in spec and "mbs" in spec:
        spec["gbs"] = spec["mbs"] * spec["dp"]
        res.note(f"gbs {spec['gbs']} = mbs x dp (Megatron's default when --global-batch-size is absent)")


def parse_argv(tokens: list[str]) -> Result:
    """A plain argument list (``topo check --args``); a launcher and script in front of it are allowed."""
    res = Result(kind="megatron")
    k = _script_index(tokens)
    launcher, rest = (tokens[:k], tokens[k + 1 :]) if k is not None else ([], tokens)
    if not (_seen(rest) & _KNOWN):
        raise ParseError(
            "the arguments hold nothing toposcan reads (e.g. `--num-layers`, `--tensor-model-parallel-size`)",
            code="no_training_command",
        )
    ds_launcher = bool(launcher) and launcher[0].rsplit("/", 1)[-1] == "deepspeed"
    stated = _launcher_cluster(launcher, res)
    read_args(rest, res, ds_launcher=ds_launcher)
    _cluster(res, stated, {}, {})
    return res
