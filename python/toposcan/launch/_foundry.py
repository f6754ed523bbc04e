"""llm-foundry (MosaicML Composer) training YAMLs: the MPT model block, batch settings, precision, FSDP.

OmegaConf interpolations are resolved for the fields that are read: ``${max_seq_len}``,
``${variables.max_seq_len}`` and ``${a.b.c}``, looked up from the top of the file and then under
``variables:``. An MCLI run file (the training config under ``parameters:``, the GPUs under ``compute:``)
is read too.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from ..errors import ParseError
from ._common import MAX_DEPTH, Result, choice, short, typed_bool, typed_int
from ._megatron import gpu_name

_INTERP = re.compile(r"\$\{([^{}]*)\}")
_MISSING = object()
#: Most interpolation lookups done for one file (guards against exponential ``${a}${a}`` chains).
_MAX_LOOKUPS = 10_000

#: MPTConfig defaults (llm-foundry ``llmfoundry/models/mpt/configuration_mpt.py``) that the brief asks to apply.
MPT_DEFAULT_EXPANSION_RATIO = 4
MPT_DEFAULT_VOCAB = 50368

_PRECISION = {"amp_bf16": "bf16", "amp_fp16": "fp16", "amp_fp8": "fp8", "fp32": "fp32"}
_SHARDING = {"FULL_SHARD": 3, "SHARD_GRAD_OP": 2, "NO_SHARD": 0, "HYBRID_SHARD": 3, "_HYBRID_SHARD_ZERO2": 2}
_NORMS = {
    "low_precision_layernorm": "layernorm", "layernorm": "layernorm", "triton_layernorm": "layernorm",
    "rmsnorm": "rmsnorm", "low_precision_rmsnorm": "rmsnorm", "triton_rmsnorm": "rmsnorm",
}
_USED_TOP = frozenset({
    "model", "max_seq_len", "variables", "global_train_batch_size", "device_train_microbatch_size", "precision",
    "fsdp_config", "parallelism_config", "tp_config",
})
_USED_MODEL = frozenset({
    "name", "d_model", "n_heads", "n_layers", "max_seq_len", "expansion_ratio", "vocab_size", "learned_pos_emb",
    "no_bias", "attn_config", "ffn_config", "norm_type", "tie_word_embeddings", "pretrained_model_name_or_path",
    "peft_config",
})
_USED_FSDP = frozenset({"sharding_strategy", "activation_checkpointing", "activation_cpu_offload", "cpu_offload"})


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping names the same key twice (YAML 1.2 forbids it; PyYAML keeps the last one silently)."""

    def __init__(self, key: Any, first: yaml.Mark, again: yaml.Mark) -> None:
        super().__init__(None, None, "duplicate key", again)
        self.key, self.first, self.again = key, first, again


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses duplicate keys in a mapping (merge keys ``<<`` are still allowed)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                try:
                    key = self.construct_object(key_node)
                    hash(key)
                except (yaml.YAMLError, TypeError, ValueError):
                    continue  # the base constructor reports what is wrong with this key
                if key in seen:
                    raise _DuplicateKey(key, seen[key], key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load`` with every failure turned into a one-line ParseError; a key given twice in one
    mapping is refused (PyYAML would keep the last value without a word, so an edit that adds a second
    ``global_train_batch_size:`` lower in the file silently wins).

    The pure-Python ``SafeLoader`` is used on purpose: libyaml's ``CSafeLoader`` recurses in C and crashes
    the interpreter (SIGSEGV) on deeply nested input such as 100000 ``[``, where the Python loader raises
    ``RecursionError``. Its speed (about 150 KB/s) is ample for launch configs of a few KB.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader, see above
    except _DuplicateKey as dup:
        raise ParseError(
            f"{what}: key `{short(dup.key)}` appears twice in one mapping (lines {dup.first.line + 1} "
            f"and {dup.again.line + 1})",
            code="duplicate_key",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = (exc.problem or exc.context or "malformed YAML").strip()
        raise ParseError(f"{what} is not valid YAML: {short(problem, 80)}{where}", code="bad_yaml") from None
    except yaml.YAMLError as exc:
        raise ParseError(f"{what} is not valid YAML: {short(str(exc).splitlines()[0] if str(exc) else 'error', 80)}", code="bad_yaml") from None
    except RecursionError:
        raise ParseError(f"{what}: YAML nested too deeply", code="too_deep") from None
    except (ValueError, TypeError, OverflowError, AttributeError) as exc:  # bad timestamps, odd tags
        raise ParseError(f"{what} is not valid YAML: {short(str(exc), 80)}", code="bad_yaml") from None


def root_of(doc: Any) -> tuple[dict, dict]:
    """The training config (``doc`` or its ``parameters:``) and an MCLI ``compute:`` block (may be empty)."""
    if not isinstance(doc, dict):
        return {}, {}
    params = doc.get("parameters")
    if isinstance(params, dict) and isinstance(params.get("model"), dict) and "model" not in doc:
        compute = doc.get("compute")
        return params, compute if isinstance(compute, dict) else {}
    return doc, {}


def looks_like_foundry(doc: Any) -> bool:
    root, _ = root_of(doc)
    model = root.get("model")
    if isinstance(model, dict) and ("d_model" in model or "n_layers" in model or model.get("name") in ("mpt_causal_lm", "hf_causal_lm")):
        return True
    return "n_layers" in root and "d_model" in root


class _Resolver:
    def __init__(self, root: dict) -> None:
        self.root = root
        variables = root.get("variables")
        self.variables = variables if isinstance(variables, dict) else {}
        self.lookups = 0

    def value(self, value: Any, field: str, depth: int = 0) -> Any:
        if not isinstance(value, str) or "${" not in value:
            return value
        if depth > MAX_DEPTH:
            raise ParseError(f"`{field}` is an interpolation that refers back to itself", code="interpolation_loop")
        whole = _INTERP.fullmatch(value.strip())
        if whole:
            return self.value(self._lookup(whole.group(1), field, value), field, depth + 1)

        def sub(match: re.Match) -> str:
            found = self.value(self._lookup(match.group(1), field, value), field, depth + 1)
            if isinstance(found, (dict, list)):
                raise ParseError(
                    f"`{field}` puts `{short(match.group(0))}`, {short(found)}, inside a string", code="invalid_value"
                )
            return "null" if found is None else str(found)

        out = _INTERP.sub(sub, value)
        if len(out) > 100_000:
            raise ParseError(f"`{field}` interpolates to more than 100000 characters", code="too_large")
        return out

    def _lookup(self, path: str, field: str, raw: str) -> Any:
        self.lookups += 1
        if self.lookups > _MAX_LOOKUPS:
            raise ParseError(f"more than {_MAX_LOOKUPS} interpolations to resolve", code="too_large")
        key = path.strip()
        if ":" in key:
            raise ParseError(
                f"`{field}` is `{short(raw)}`, a resolver toposcan does not evaluate; give the value literally",
                code="unknown_variable",
            )
        for base in (self.root, self.variables):
            found = _walk(base, key.lstrip("."))
            if found is not _MISSING:
                return found
        raise ParseError(f"`{field}` is `{short(raw)}`, which names no key in the file", code="unknown_variable")


def _walk(node: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _scalar(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return short(str(value), 40)


def _peft(peft: Any, spec: dict, res: Result, r: _Resolver) -> None:
    """``model.peft_config`` (Hugging Face PEFT's ``LoraConfig`` fields): ``peft_type`` LORA and its rank ``r``."""
    if not isinstance(peft, dict):
        raise ParseError(f"`model.peft_config` must be a mapping, got `{short(peft)}`", code="invalid_value")
    kind = r.value(peft.get("peft_type", "LORA"), "model.peft_config.peft_type")
    if not isinstance(kind, str) or kind.upper() != "LORA":
        raise ParseError(f"`model.peft_config.peft_type` must be `LORA`, got `{short(kind)}`", code="invalid_value")
    spec["task"] = "lora"
    if "r" in peft:
        spec["lora_rank"] = typed_int(r.value(peft["r"], "model.peft_config.r"), "model.peft_config.r")
    else:
        res.note("model.peft_config has no `r`: Hugging Face PEFT's default rank 8 assumed")
        spec["lora_rank"] = 8


def parse(text: str, filename: str | None) -> Result:
    what = f"`{filename}`" if filename else "the llm-foundry YAML"
    doc = load_yaml(text, what)
    if not isinstance(doc, dict):
        raise ParseError(f"{what} must be a YAML mapping at the top", code="invalid_value")
    root, compute = root_of(doc)
    res = Result(kind="foundry")
    spec = res.spec
    r = _Resolver(root)

    def get(section: Any, key: str, prefix: str) -> Any:
        if not isinstance(section, dict) or key not in section:
            return _MISSING
        return r.value(section[key], prefix + key)

    model = r.value(root.get("model"), "model")
    if model is None:
        model = {}
    if not isinstance(model, dict):
        raise ParseError(f"`model` must be a mapping, got `{short(model)}`", code="invalid_value")
    name = get(model, "name", "model.")
    is_mpt = name is _MISSING or name == "mpt_causal_lm"
    if name is not _MISSING and not is_mpt:
        source = get(model, "pretrained_model_name_or_path", "model.")
        res.note(
            f"model `{short(name)}`"
            + (f" loads `{short(source)}`: its shape is not in this file" if source is not _MISSING else "")
        )

    for key, spec_key in (("d_model", "hidden"), ("n_heads", "heads"), ("n_layers", "layers")):
        value = get(model, key, "model.")
        if value is not _MISSING:
            spec[spec_key] = typed_int(value, f"model.{key}")
    seq = get(model, "max_seq_len", "model.")
    seq_field = "model.max_seq_len"
    if seq is _MISSING:
        for base, label in ((root, "max_seq_len"), (r.variables, "variables.max_seq_len")):
            if "max_seq_len" in base:
                seq, seq_field = r.value(base["max_seq_len"], label), label
                res.note(f"seq_len from {label}")
                break
    if seq is not _MISSING:
        spec["seq_len"] = typed_int(seq, seq_field)

    attn = get(model, "attn_config", "model.")
    attn = attn if isinstance(attn, dict) else {}
    ffn = get(model, "ffn_config", "model.")
    ffn = ffn if isinstance(ffn, dict) else {}

    if is_mpt:
        _mpt_model(model, attn, ffn, spec, res, get)
    peft = get(model, "peft_config", "model.")
    if peft is not _MISSING and peft is not None:
        _peft(peft, spec, res, r)

    # batch
    gbs = get(root, "global_train_batch_size", "")
    if gbs is not _MISSING:
        spec["gbs"] = typed_int(gbs, "global_train_batch_size")
    mbs = get(root, "device_train_microbatch_size", "")
    if mbs is _MISSING:
        res.note("device_train_microbatch_size not stated: Composer uses the whole per-device batch")
    elif isinstance(mbs, str) and mbs == "auto":
        res.note('device_train_microbatch_size is "auto": Composer searches for the largest that fits')
    else:
        spec["mbs"] = typed_int(mbs, "device_train_microbatch_size")

    precision = get(root, "precision", "")
    if precision is _MISSING:
        res.note("precision not stated")
    else:
        spec["precision"] = choice(precision, "precision", _PRECISION)

    # parallelism
    parallelism = get(root, "parallelism_config", "")
    parallelism = parallelism if isinstance(parallelism, dict) else {}
    fsdp = get(root, "fsdp_config", "")
    fsdp_field = "fsdp_config"
    if fsdp is _MISSING and "fsdp" in parallelism:
        fsdp, fsdp_field = r.value(parallelism["fsdp"], "parallelism_config.fsdp"), "parallelism_config.fsdp"
    tp_config = get(root, "tp_config", "")
    if tp_config is _MISSING and "tp" in parallelism:
        tp_config = r.value(parallelism["tp"], "parallelism_config.tp")
    _parallel(fsdp, fsdp_field, tp_config, spec, res, r)

    if compute:
        _compute(compute, res, r)

    for key in root:
        if key not in _USED_TOP:
            res.ignored.append(f"{short(key)} {_scalar(root[key])}".rstrip())
    for key in model:
        if key not in _USED_MODEL:
            res.ignored.append(f"model.{short(key)} {_scalar(model[key])}".rstrip())
    if isinstance(fsdp, dict):
        for key in fsdp:
            if key not in _USED_FSDP:
                res.ignored.append(f"{fsdp_field}.{short(key)} {_scalar(fsdp[key])}".rstrip())
    return res


def _mpt_model(model: dict, attn: dict, ffn: dict, spec: dict, res: Result, get) -> None:
    defaults: list[str] = []
    ratio = get(model, "expansion_ratio", "model.")
    ffn_size = get(ffn, "ffn_hidden_size", "model.ffn_config.")
    if ffn_size is not _MISSING and ffn_size is not None:
        spec["ffn_hidden"] = typed_int(ffn_size, "model.ffn_config.ffn_hidden_size")
    elif "hidden" in spec:
        if ratio is _MISSING:
            ratio = MPT_DEFAULT_EXPANSION_RATIO
            defaults.append(f"expansion_ratio {ratio}")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1024:
            raise ParseError(f"`model.expansion_ratio` must be a positive number, got `{short(ratio)}`", code="invalid_value")
        product = spec["hidden"] * ratio
        if product != int(product):
            raise ParseError(
                f"`model.expansion_ratio` {ratio} x d_model {spec['hidden']} = {product} is not a whole number",
                code="invalid_value",
            )
        spec["ffn_hidden"] = int(product)
    vocab = get(model, "vocab_size", "model.")
    if vocab is _MISSING:
        spec["vocab"] = MPT_DEFAULT_VOCAB
        defaults.append(f"vocab_size {MPT_DEFAULT_VOCAB}")
    else:
        spec["vocab"] = typed_int(vocab, "model.vocab_size")

    ffn_type = get(ffn, "ffn_type", "model.ffn_config.")
    if ffn_type in (_MISSING, "mptmlp", "te_ln_mlp"):
        spec["activation"] = "gelu"
        if ffn_type is _MISSING:
            defaults.append("gelu MLP")
    elif ffn_type == "mptglu":
        spec["activation"] = "swiglu"
        res.note("ffn_type mptglu: a gated (three-matrix) MLP, costed as swiglu")
    elif ffn_type in ("mb_moe", "mb_dmoe"):
        spec["activation"] = "gelu"
        experts = get(ffn, "moe_num_experts", "model.ffn_config.")
        if experts is not _MISSING:
            spec["experts"] = typed_int(experts, "model.ffn_config.moe_num_experts")
        topk = get(ffn, "moe_top_k", "model.ffn_config.")
        if topk is not _MISSING:
            spec["topk"] = typed_int(topk, "model.ffn_config.moe_top_k")
    else:
        raise ParseError(
            f"`model.ffn_config.ffn_type` must be one of {{`mptmlp`, `mptglu`, `te_ln_mlp`, `mb_moe`, `mb_dmoe`}}, got `{short(ffn_type)}`",
            code="invalid_value",
        )

    learned = get(model, "learned_pos_emb", "model.")
    learned = True if learned is _MISSING else typed_bool(learned, "model.learned_pos_emb")
    alibi = get(attn, "alibi", "model.attn_config.")
    alibi = False if alibi is _MISSING else typed_bool(alibi, "model.attn_config.alibi")
    rope = get(attn, "rope", "model.attn_config.")
    rope = False if rope is _MISSING else typed_bool(rope, "model.attn_config.rope")
    if alibi:
        spec["position"] = "alibi"
    elif rope:
        spec["position"] = "rope"
    elif learned:
        spec["position"] = "learned"
        if "learned_pos_emb" not in model:
            defaults.append("learned position embedding")
    else:
        res.note("no position embedding (learned_pos_emb false, no alibi or rope)")

    no_bias = get(model, "no_bias", "model.")
    spec["bias"] = not (False if no_bias is _MISSING else typed_bool(no_bias, "model.no_bias"))
    norm = get(model, "norm_type", "model.")
    if norm is _MISSING:
        spec["norm"] = "layernorm"
        defaults.append("low_precision_layernorm")
    else:
        spec["norm"] = choice(norm, "model.norm_type", _NORMS)
    tied = get(model, "tie_word_embeddings", "model.")
    spec["tied_embeddings"] = True if tied is _MISSING else typed_bool(tied, "model.tie_word_embeddings")
    if tied is _MISSING:
        defaults.append("tied embeddings")

    kv = get(attn, "kv_n_heads", "model.attn_config.")
    attn_type = get(attn, "attn_type", "model.attn_config.")
    if attn_type == "multiquery_attention":
        spec["kv_heads"] = 1
    elif kv is not _MISSING and attn_type in (_MISSING, "grouped_query_attention"):
        spec["kv_heads"] = typed_int(kv, "model.attn_config.kv_n_heads")
        if attn_type is _MISSING:
            res.note("kv_n_heads read as grouped-query attention (attn_type not stated)")
    impl = get(attn, "attn_impl", "model.attn_config.")
    if impl is not _MISSING:
        res.note(f"attn_impl {short(impl)}" + (" (flash attention: no s^2 activation memory)" if impl in ("flash", "triton") else ""))
    if defaults:
        res.note("MPT defaults where the model block is silent: " + ", ".join(defaults))


def _parallel(fsdp: Any, fsdp_field: str, tp_config: Any, spec: dict, res: Result, r: _Resolver) -> None:
    if fsdp is _MISSING or fsdp is None:
        spec["zero_stage"] = 0
        spec["recompute"] = "none"
        res.note("no fsdp_config: plain data parallel (DDP), ZeRO stage 0, no activation checkpointing")
    elif not isinstance(fsdp, dict):
        raise ParseError(f"`{fsdp_field}` must be a mapping, got `{short(fsdp)}`", code="invalid_value")
    else:
        strategy = r.value(fsdp.get("sharding_strategy", _MISSING), f"{fsdp_field}.sharding_strategy")
        if strategy is _MISSING:
            spec["zero_stage"] = 3
            res.note("sharding_strategy not stated: FSDP's default FULL_SHARD (zero_stage 3)")
        else:
            spec["zero_stage"] = choice(strategy, f"{fsdp_field}.sharding_strategy", _SHARDING)
            if strategy in ("HYBRID_SHARD", "_HYBRID_SHARD_ZERO2"):
                res.note(f"{strategy}: sharded within a node, replicated across nodes")
        checkpoint = r.value(fsdp.get("activation_checkpointing", False), f"{fsdp_field}.activation_checkpointing")
        spec["recompute"] = "full" if typed_bool(checkpoint, f"{fsdp_field}.activation_checkpointing") else "none"
        for key in ("activation_cpu_offload", "cpu_offload"):
            if key in fsdp and typed_bool(r.value(fsdp[key], f"{fsdp_field}.{key}"), f"{fsdp_field}.{key}"):
                res.note(f"{fsdp_field}.{key} is on" + (" (activations to the host: not costed)"
                                                        if key == "activation_cpu_offload" else ""))
        if "cpu_offload" in fsdp:  # FSDP's CPUOffload: parameters, gradients and the step on the host
            on = typed_bool(r.value(fsdp["cpu_offload"], f"{fsdp_field}.cpu_offload"), f"{fsdp_field}.cpu_offload")
            spec["offload"] = "optimizer+params" if on else "none"
    degree = None
    if isinstance(tp_config, dict) and "tensor_parallel_degree" in tp_config:
        degree = r.value(tp_config["tensor_parallel_degree"], "tp_config.tensor_parallel_degree")
    spec["tp"] = 1 if degree is None else typed_int(degree, "tp_config.tensor_parallel_degree")
    spec["pp"] = 1
    res.note("llm-foundry has no pipeline parallelism: pp 1" + ("" if degree is not None else ", tp 1"))


def _compute(compute: dict, res: Result, r: _Resolver) -> None:
    gpus = compute.get("gpus")
    nodes = compute.get("nodes")
    label = compute.get("gpu_type")
    if isinstance(label, str):
        name = gpu_name(label)
        if name is not None:
            res.cluster["gpu"] = name
        else:
            res.note(f"compute.gpu_type `{short(label)}` is not a catalog GPU; pass --gpu")
    if nodes is not None:
        res.cluster["nodes"] = typed_int(nodes, "compute.nodes")
    if gpus is not None:
        total = typed_int(gpus, "compute.gpus")
        if "nodes" in res.cluster:
            if total % res.cluster["nodes"]:
                raise ParseError(
                    f"`compute.gpus` {total} is not a multiple of `compute.nodes` {res.cluster['nodes']}",
                    code="invalid_value",
                )
            res.cluster["gpus_per_node"] = total // res.cluster["nodes"]
        elif total <= 8:
            res.cluster["nodes"] = 1
            res.cluster["gpus_per_node"] = total
            res.note(f"compute.gpus {total} without compute.nodes: one node of {total} GPUs")
        else:
            res.note(f"compute.gpus {total} without compute.nodes: GPUs per node not stated")
