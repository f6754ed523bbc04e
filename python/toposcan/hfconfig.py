"""A Hugging Face ``config.json`` read into a models.toml entry.

``load_model_file(path)`` reads a local ``config.json`` with the standard library and returns
``(entry, ignored)``: ``entry`` has every key of a ``data/models.toml`` table (so the model resolution
can use it where it would use a catalog entry), ``ignored`` the config's keys that were not understood
(neither used nor known to leave a training estimate unchanged), for the caller to name.
``load_model_file("hf:org/name")`` fetches the same file with ``huggingface_hub`` where installed.

Families read: Llama (``llama``, ``mistral``, ``llama4``/``llama4_text``), Qwen2/2.5 (``qwen2``), Qwen3
(``qwen3``, ``qwen3_moe``), Mixtral (``mixtral``), DeepSeek-V2/V3 and Kimi-K2 (``deepseek_v2``,
``deepseek_v3``, ``kimi_k2``), GPT-OSS (``gpt_oss``) and Gemma (``gemma``, ``gemma2``, ``gemma3``,
``gemma3_text``). Every one of them has a gated MLP (SiLU or tanh-GELU gate: three matrices), stored
as ``activation = "swiglu"``. ``seq_len`` is the pretraining length where the config records it
(``rope_scaling.original_max_position_embeddings``, GPT-OSS's ``initial_context_length``), else
``max_position_embeddings``; give ``seq_len`` to train at another length.
"""

from __future__ import annotations

import json
from typing import Any

from toposcan.errors import InputError, ParseError

#: Keys of a models.toml entry, with the plain decoder's values (RoPE, RMSNorm, no biases, dense).
_BASE: dict[str, Any] = {
    "layers": 0, "hidden": 0, "heads": 0, "kv_heads": 0, "head_dim": 0, "ffn_hidden": 0, "activation": "swiglu",
    "vocab": 0, "seq_len": 0, "tied_embeddings": False, "position": "rope", "position_rows": 0, "norm": "rmsnorm",
    "bias": False, "embedding_norm": False, "experts": 0, "topk": 0, "shared_experts": 0, "moe_ffn_hidden": 0,
    "dense_layers": 0, "attention": "mha", "q_lora_rank": 0, "kv_lora_rank": 0, "qk_rope_head_dim": 0,
    "qk_nope_head_dim": 0, "v_head_dim": 0, "moe_layer_every": 0, "mtp_layers": 0, "qk_norm": False,
    "attention_sinks": False, "router_bias": False, "qkv_bias": False, "sandwich_norm": False, "sliding_window": 0,
    "full_attention_every": 0, "params_published": 0, "source": "",
}

#: Config keys that do not change a training estimate: numerics, token ids, initialisation,
#: inference settings, routing details that move no weights, metadata.
_NO_EFFECT = frozenset({
    "architectures", "model_type", "torch_dtype", "dtype", "transformers_version", "_name_or_path", "auto_map",
    "bos_token_id", "eos_token_id", "pad_token_id", "initializer_range", "use_cache", "rms_norm_eps",
    "layer_norm_eps", "rope_theta", "rope_local_base_freq", "attention_dropout", "hidden_dropout",
    "output_router_logits", "router_aux_loss_coef", "router_jitter_noise", "aux_loss_alpha", "seq_aux",
    "norm_topk_prob", "routed_scaling_factor", "scoring_func", "n_group", "topk_group", "ep_size",
    "pretraining_tp", "tokenizer_class", "query_pre_attn_scalar", "attn_logit_softcapping",
    "final_logit_softcapping", "cache_implementation", "swiglu_limit", "quantization_config", "use_mrope",
    "max_window_layers", "attn_temperature_tuning", "attn_scale", "floor_scale", "for_llm_compressor",
    "no_rope_layers", "nope_layer_interval", "use_qk_norm", "router_dtype", "bos_token", "eos_token",
    "hidden_act", "hidden_activation", "max_position_embeddings", "rope_scaling", "tie_word_embeddings",
    "num_experts_per_tok", "experts_per_token", "head_dim", "vocab_size", "hidden_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "intermediate_size", "image_token_index", "boi_token_index",
    "eoi_token_index", "mm_tokens_per_image", "initializer_factor", "output_attentions",
    "output_hidden_states", "return_dict", "sliding_window", "layer_types",
})

#: Activations of the gated MLPs these families use.
_GATED = ("silu", "swish", "gelu_pytorch_tanh", "gelu", "gelu_new")

_FAMILIES = ("llama", "mistral", "llama4", "llama4_text", "qwen2", "qwen3", "qwen3_moe", "mixtral", "deepseek_v2",
             "deepseek_v3", "kimi_k2", "gpt_oss", "gemma", "gemma2", "gemma3", "gemma3_text")
#: Multimodal wrappers whose language model sits under ``text_config``.
_WRAPPERS = {"llama4": "llama4_text", "gemma3": "gemma3_text"}


class _Config:
    """The config's keys, read with checks; records which were used."""

    def __init__(self, cfg: dict[str, Any], where: str) -> None:
        self.cfg, self.where, self.used = cfg, where, set()

    def has(self, key: str) -> bool:
        return self.cfg.get(key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        v = self.cfg.get(key)
        return default if v is None else v

    def int(self, key: str, default: int | None = None, *, minimum: int = 1) -> int:
        v = self.get(key, default)
        if v is None:
            raise ParseError(f"{self.where}: `{key}` is required for model_type `{self.cfg.get('model_type')}`",
                             code="parse_error")
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ParseError(f"{self.where}: `{key}` must be an integer >= {minimum}, got {v!r}", code="parse_error")
        return v

    def bool(self, key: str, default: bool) -> bool:
        v = self.get(key, default)
        if not isinstance(v, bool):
            raise ParseError(f"{self.where}: `{key}` must be true or false, got {v!r}", code="parse_error")
        return v

    def ignored(self, prefix: str = "") -> list[str]:
        return [prefix + k for k in self.cfg if k not in self.used and k not in _NO_EFFECT]


def load_model_file(path: str) -> tuple[dict[str, Any], list[str]]:
    """A Hugging Face ``config.json`` (a local path, or ``hf:org/name``) as a models.toml entry.

    Returns ``(entry, ignored)``: the entry carries every models.toml key (``params_published`` 0,
    ``source`` naming the file), ``ignored`` the config keys that were not understood, sorted
    (nested ones as ``text_config.key``). Unknown model types and shapes the catalog cannot express
    raise :class:`~toposcan.errors.ParseError` naming the key; an unreadable file raises
    :class:`~toposcan.errors.InputError`.
    """
    if not isinstance(path, str) or not path:
        raise InputError(f"`model` must be a catalog name or a config.json path, got {path!r}", code="invalid_value")
    where = path
    if path.startswith("hf:"):
        path = _download(path[3:])
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except OSError as e:
        raise InputError(f"`model`: cannot read `{where}`: {e.strerror or e}", code="io_error") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ParseError(f"`model`: `{where}` is not valid JSON ({str(e).splitlines()[0]})", code="parse_error") from None
    if not isinstance(cfg, dict):
        raise ParseError(f"`model`: `{where}` must hold a JSON object (a Hugging Face config.json)", code="parse_error")
    return from_config(cfg, where)


def _download(repo: str) -> str:
    """Path of ``config.json`` of the Hub repository ``repo`` (``org/name``), fetched or cached."""
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise InputError(f"`model`: `hf:{repo}` must name a repository as hf:org/name", code="invalid_value")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise InputError(f"`model` `hf:{repo}` needs the huggingface_hub package (pip install huggingface_hub); "
                         "or download its config.json and give the file's path", code="missing_dependency") from None
    try:
        return str(hf_hub_download(repo_id=repo, filename="config.json"))
    except Exception as e:  # noqa: BLE001 - network, authentication and missing-repository errors alike
        raise InputError(f"`model`: cannot fetch config.json of `{repo}` from the Hugging Face Hub: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", code="io_error") from None


def from_config(cfg: dict[str, Any], where: str = "config.json") -> tuple[dict[str, Any], list[str]]:
    """:func:`load_model_file` for an already parsed config dict."""
    mt = cfg.get("model_type")
    ignored: list[str] = []
    if mt in _WRAPPERS and isinstance(cfg.get("text_config"), dict):
        # A multimodal checkpoint: the language model is the text config; the rest is not counted.
        ignored = [k for k in cfg if k not in ("text_config", "model_type", "architectures") and k not in _NO_EFFECT]
        inner = dict(cfg["text_config"])
        inner.setdefault("model_type", _WRAPPERS[mt])
        entry, inner_ignored = from_config(inner, f"{where} text_config")
        return entry, sorted(ignored + ["text_config." + k for k in inner_ignored])
    if mt not in _FAMILIES:
        raise ParseError(f"`model`: {where}: model_type `{mt}` is not read; one of: {', '.join(_FAMILIES)}",
                         code="unsupported_model_type")
    c = _Config(cfg, where)
    c.used.add("model_type")
    e = dict(_BASE)
    e["layers"] = c.int("num_hidden_layers")
    e["hidden"] = c.int("hidden_size")
    e["heads"] = c.int("num_attention_heads")
    e["kv_heads"] = c.int("num_key_value_heads", e["heads"])
    e["head_dim"] = c.int("head_dim", e["hidden"] // e["heads"])
    e["ffn_hidden"] = c.int("intermediate_size")
    e["vocab"] = c.int("vocab_size")
    gemma = mt.startswith("gemma")
    e["tied_embeddings"] = c.bool("tie_word_embeddings", gemma)
    act = c.get("hidden_activation") if gemma and c.has("hidden_activation") else c.get("hidden_act", "silu")
    c.used.add("hidden_act")
    if act not in _GATED:
        raise ParseError(f"`model`: {where}: hidden_act `{act}` is not read; one of: {', '.join(_GATED)}",
                         code="parse_error")
    e["seq_len"] = _seq_len(c)
    _biases(c, e, mt)
    if mt in ("qwen3", "qwen3_moe", "gemma3_text"):
        e["qk_norm"] = True
    if mt in ("gemma2", "gemma3_text"):
        e["sandwich_norm"] = True
    _windows(c, e, mt)
    if mt in ("mixtral", "qwen3_moe", "gpt_oss", "llama4_text"):
        _moe(c, e, mt)
    elif mt in ("deepseek_v2", "deepseek_v3", "kimi_k2"):
        _deepseek(c, e)
    arch = ",".join(cfg.get("architectures") or []) or mt
    e["source"] = f"Hugging Face config.json `{where}` ({arch}, model_type {mt})"
    return e, sorted(ignored + c.ignored())


def _seq_len(c: _Config) -> int:
    rs = c.get("rope_scaling")
    if c.has("initial_context_length"):  # GPT-OSS: the length before YaRN
        return c.int("initial_context_length")
    if isinstance(rs, dict) and isinstance(rs.get("original_max_position_embeddings"), int):
        return rs["original_max_position_embeddings"]
    return c.int("max_position_embeddings", 4096)


def _biases(c: _Config, e: dict[str, Any], mt: str) -> None:
    if mt == "qwen2":  # Qwen2/2.5: q, k, v biases, none on o or the MLP
        e["qkv_bias"] = True
        return
    attn = c.bool("attention_bias", mt == "gpt_oss")
    mlp = c.bool("mlp_bias", mt == "gpt_oss")  # GPT-OSS experts carry biases
    if attn and mlp:
        e["bias"] = True
    elif attn:
        # Biases on q, k, v and o but not the MLP: the o bias (hidden per layer) is not counted.
        e["qkv_bias"] = True
        c.used.discard("attention_bias")
    elif mlp:
        c.used.discard("mlp_bias")


def _windows(c: _Config, e: dict[str, Any], mt: str) -> None:
    """Sliding-window attention: which layers see a window of how many keys."""
    window = c.get("sliding_window")
    if mt in ("qwen2", "qwen3", "qwen3_moe"):
        if c.get("use_sliding_window", False):
            c.used.discard("use_sliding_window")  # windows on layers past max_window_layers: not modelled
        return
    if not window:
        return
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ParseError(f"`model`: {c.where}: `sliding_window` must be a positive integer, got {window!r}",
                         code="parse_error")
    types = c.get("layer_types")
    if isinstance(types, list) and types:
        every = _full_every(types, c.where)
        if every is None:  # no windowed layer
            return
    elif mt == "gemma2":
        every = 2  # layers 0, 2, ... windowed
    elif mt == "gemma3_text":
        every = c.int("sliding_window_pattern", 6)
    elif mt == "gpt_oss":
        every = 2
    else:  # Mistral, Mixtral: every layer windowed
        every = 0
    e["sliding_window"] = window
    e["full_attention_every"] = every


def _full_every(types: list[Any], where: str) -> int | None:
    """``full_attention_every`` for a ``layer_types`` list: 0 if every layer is windowed, None if none is."""
    full = [t == "full_attention" for t in types]
    if not any(t == "sliding_attention" for t in types):
        return None
    if not any(full):
        return 0
    k = full.index(True) + 1
    if all(f == ((i + 1) % k == 0) for i, f in enumerate(full)):
        return k
    raise ParseError(f"`model`: {where}: `layer_types` does not repeat one full-attention layer every n layers "
                     f"(the pattern toposcan expresses)", code="parse_error")


def _moe(c: _Config, e: dict[str, Any], mt: str) -> None:
    experts = c.int("num_experts" if mt == "qwen3_moe" else "num_local_experts")
    topk_key = "experts_per_token" if mt == "gpt_oss" and not c.has("num_experts_per_tok") else "num_experts_per_tok"
    e["experts"], e["topk"] = experts, c.int(topk_key)
    if mt == "qwen3_moe":
        e["moe_ffn_hidden"] = c.int("moe_intermediate_size")
        e["moe_layer_every"] = _every(c.int("decoder_sparse_step", 1))
        dense = c.get("mlp_only_layers", [])
        if dense != list(range(len(dense))):
            raise ParseError(f"`model`: {c.where}: `mlp_only_layers` {dense} is not a run of leading layers "
                             f"(what dense_layers expresses)", code="parse_error")
        e["dense_layers"] = len(dense)
    elif mt == "llama4_text":
        # Routed and shared experts are intermediate_size wide; the dense layers intermediate_size_mlp.
        e["moe_ffn_hidden"] = e["ffn_hidden"]
        e["ffn_hidden"] = c.int("intermediate_size_mlp", e["ffn_hidden"])
        e["shared_experts"] = 1
        k = c.int("interleave_moe_layer_step", 1)
        e["moe_layer_every"] = _every(k)
        listed = c.get("moe_layers")
        if listed is not None and listed != [i for i in range(e["layers"]) if (i + 1) % k == 0]:
            raise ParseError(f"`model`: {c.where}: `moe_layers` is not every {k}-th layer "
                             f"(interleave_moe_layer_step)", code="parse_error")
    else:  # Mixtral, GPT-OSS: every layer MoE, each expert intermediate_size wide
        e["moe_ffn_hidden"] = e["ffn_hidden"]
    if mt == "gpt_oss":
        e["router_bias"] = True
        e["attention_sinks"] = True


def _every(k: int) -> int:
    """models.toml's ``moe_layer_every``: 0 for every layer (as the catalog writes it), else k."""
    return 0 if k == 1 else k


def _deepseek(c: _Config, e: dict[str, Any]) -> None:
    e["attention"] = "mla"
    e["q_lora_rank"] = c.int("q_lora_rank", 0, minimum=0)
    e["kv_lora_rank"] = c.int("kv_lora_rank")
    e["qk_rope_head_dim"] = c.int("qk_rope_head_dim")
    e["qk_nope_head_dim"] = c.int("qk_nope_head_dim")
    e["v_head_dim"] = c.int("v_head_dim")
    e["head_dim"] = e["v_head_dim"]
    if c.has("n_routed_experts"):
        e["experts"] = c.int("n_routed_experts")
        e["topk"] = c.int("num_experts_per_tok")
        e["shared_experts"] = c.int("n_shared_experts", 0, minimum=0)
        e["moe_ffn_hidden"] = c.int("moe_intermediate_size")
        e["dense_layers"] = c.int("first_k_dense_replace", 0, minimum=0)
        if c.int("moe_layer_freq", 1) != 1:
            raise ParseError(f"`model`: {c.where}: `moe_layer_freq` other than 1 is not read", code="parse_error")
        e["router_bias"] = c.get("topk_method") == "noaux_tc"  # the e_score_correction_bias
    e["mtp_layers"] = c.int("num_nextn_predict_layers", 0, minimum=0)

