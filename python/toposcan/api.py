"""The Python API: :func:`evaluate` one configuration, :func:`enumerate` a space.

Both call the same Rust scoring code. Keyword names are the same here and (as ``--kebab-case``)
on the ``topo`` command line.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import polars as pl

from toposcan import _core, resolve, spec, uncertainty
from toposcan.errors import InputError
from toposcan.rules import WARNINGS
from toposcan.frame import to_frame

Recompute = Literal["none", "selective", "full"]
Precision = Literal["fp32", "fp16", "bf16", "fp8", "mxfp8", "nvfp4"]
Task = Literal["pretrain", "sft", "lora"]
Offload = Literal["none", "optimizer", "optimizer+params"]
Schedule = Literal["1f1b", "interleaved", "zero-bubble", "dualpipe"]
CpComm = Literal["ring", "ulysses"]
Fp8Recipe = Literal["delayed", "current", "blockwise"]
IntOrList = int | Sequence[int] | range | str


def _core_call(fn: Callable[..., Any], *args: Any, _field: str | None = None, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except _core.CoreError as e:
        code, field, message = e.args if len(e.args) == 3 else ("invalid_value", "", str(e))
        field = _field if _field and field == "objective" else field
        if field and f"`{field}`" not in message:  # name the keyword, not only the value
            message = f"`{field}`: {message}"
        raise InputError(message, code=code) from None


def _resolve(model: str | None, gpu: Any, nodes: Any, gpus_per_node: Any, profile: str | None,
             framework: str | None, precision: Any, fields: dict[str, Any],
             links: tuple[Any, ...] = (None, None)) -> resolve.Resolved:
    prec = precision if isinstance(precision, str) else None
    return resolve.resolve(model, gpu=gpu, nodes=nodes, gpus_per_node=gpus_per_node, links=links, profile=profile,
                           framework=framework, precision=prec, fields=fields)


#: The largest space enumerate walks (10^11 candidates: minutes at the core's 50-180 M/s).
MAX_CANDIDATES = 10**11

#: The `above_kernel_ceiling` warning bit (rules.WARNINGS), cleared on rows with no rate.
_CEILING_BIT = next(bit for bit, code in WARNINGS.items() if code == "above_kernel_ceiling")

#: Columns that time a step; null on a row that breaks a hard rule.
_RATE_COLUMNS = ("step_time_s", "bubble_fraction", "tflops_per_gpu", "mfu", "hfu", "tokens_per_s_per_gpu",
                 "energy_j_per_token", "gpu_hours", "train_days", "compute_s", "recompute_s", "tp_comm_s", "ep_comm_s", "pp_comm_s",
                 "fsdp_comm_s", "dp_comm_s", "dp_comm_exposed_s", "optimizer_s", "overhead_s", "bubble_s")


def _label(df: pl.DataFrame, r: resolve.Resolved) -> pl.DataFrame:
    """Name the model, GPU, framework and profile on every row, and give each step time and peak
    memory its 80% interval (``*_lo``/``*_hi``, from the validation residuals of the framework on
    this GPU family: :mod:`toposcan.uncertainty`)."""
    df = df.with_columns(pl.lit(r.label).alias("model"), pl.lit(r.gpu).alias("gpu"),
                         pl.lit(r.framework).alias("framework"), pl.lit(r.profile_name).alias("profile"))
    return uncertainty.add_intervals(df, r.framework, r.gpu)


def evaluate(
    model: str | None = None,
    *,
    gpu: str = "a100-80",
    nodes: int = 1,
    gpus_per_node: int | None = None,
    intra_node_gbs: float | None = None,
    inter_node_gbs: float | None = None,
    nvlink_domain: int | None = None,
    layers: int | None = None,
    hidden: int | None = None,
    heads: int | None = None,
    kv_heads: int | None = None,
    ffn_hidden: int | None = None,
    activation: str | None = None,
    vocab: int | None = None,
    seq_len: int | None = None,
    tied_embeddings: bool | None = None,
    experts: int | None = None,
    topk: int | None = None,
    position: str | None = None,
    norm: str | None = None,
    bias: bool | None = None,
    mtp_layers: int | None = None,
    dp: int | None = None,
    tp: int | None = None,
    pp: int | None = None,
    vpp: int | None = None,
    cp: int | None = None,
    ep: int | None = None,
    mbs: int | None = None,
    gbs: int | None = None,
    zero_stage: int | None = None,
    recompute: Recompute | None = None,
    sequence_parallel: bool | None = None,
    precision: Precision | None = None,
    flash_attention: bool | None = None,
    uneven_stages: bool | None = None,
    task: Task | None = None,
    lora_rank: int | None = None,
    offload: Offload | None = None,
    fsdp_shard: int | None = None,
    etp: int | None = None,
    schedule: Schedule | None = None,
    cp_comm: CpComm | None = None,
    fp8_recipe: Fp8Recipe | None = None,
    profile: str | None = None,
    framework: str | None = None,
    headroom: float = 0.0,
    train_tokens: float = 1e12,
    allow_cross_node_tp: bool = False,
    rampup: bool = False,
    stages: bool = False,
    _frame: bool = True,
) -> Any:
    """Score one configuration.

    Returns a one-row ``polars.DataFrame`` with every column of :func:`enumerate` plus
    ``feasible``, ``reject`` (the code of the first broken rule, or null) and ``reject_message``.
    With ``stages=True`` returns ``(row, per_stage)``, where ``per_stage`` has one row per pipeline
    stage and the memory parts in GiB.

    Fields left out take :data:`toposcan.resolve.DEFAULTS` (the same in every command): tp, pp, vpp,
    cp, ep and mbs 1, gbs 2048 (seeds/001), ZeRO-1, selective recompute, bf16; ``dp`` is
    GPUs / (tp * pp * cp), sequence parallelism on when tp > 1, flash attention the framework's.
    ``framework`` (one of :data:`toposcan.resolve.FRAMEWORKS`) picks its profile for the GPU;
    ``profile`` names one directly. The row names both, and ``defaulted`` lists what was filled in.

    The training mode (issue 16): ``task`` ``"pretrain"`` (default), ``"sft"`` or ``"lora"`` (with
    ``lora_rank``, default 16; given with another task it is an error); ``offload`` ``"none"``,
    ``"optimizer"`` (ZeRO-Offload, Megatron-Core's CPU optimizer) or ``"optimizer+params"``
    (ZeRO-Infinity, FSDP CPU offload); ``fsdp_shard`` N shards ZeRO within groups of N data-parallel
    ranks and replicates across dp / N (HSDP; 0, the default, shards over all of dp; N must divide
    dp); ``etp`` the expert tensor-parallel size (Megatron-Core's MoE parallel folding; 0 = tp);
    ``schedule`` ``"1f1b"``, ``"interleaved"`` (needs vpp >= 2), ``"zero-bubble"`` or ``"dualpipe"``
    (vpp 1; default: what vpp implies); ``cp_comm`` ``"ring"`` (p2p, default) or ``"ulysses"``
    (all-to-all; ``"p2p"``, ``"a2a"`` accepted); ``fp8_recipe`` ``"delayed"`` (default), ``"current"``
    (``"tensorwise"``) or ``"blockwise"``, only with ``precision="fp8"``.

    >>> row = evaluate("bloom-176b", gpu="a100-80", nodes=48, tp=4, pp=12, mbs=2, gbs=2048)
    >>> bool(row["feasible"][0]), int(row["dp"][0])
    (True, 8)
    """
    fields = dict(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, ffn_hidden=ffn_hidden,
                  activation=activation, vocab=vocab, seq_len=seq_len, tied_embeddings=tied_embeddings,
                  experts=experts, topk=topk, position=position, norm=norm, bias=bias, mtp_layers=mtp_layers)
    r = _resolve(model, gpu, nodes, gpus_per_node, profile, framework, precision, fields,
                 (intra_node_gbs, inter_node_gbs, nvlink_domain))
    strat = resolve.strategy(r, dict(dp=dp, tp=tp, pp=pp, vpp=vpp, cp=cp, ep=ep, mbs=mbs, gbs=gbs,
                                     zero_stage=zero_stage, recompute=recompute,
                                     sequence_parallel=sequence_parallel, precision=precision,
                                     flash_attention=flash_attention, uneven_stages=uneven_stages,
                                     task=task, lora_rank=lora_rank, offload=offload, fsdp_shard=fsdp_shard,
                                     etp=etp, schedule=schedule, cp_comm=cp_comm, fp8_recipe=fp8_recipe))
    opts = spec.options_dict(headroom, train_tokens, allow_cross_node_tp, rampup)
    cols, labels, reject, message, per_stage = _core_call(_core.evaluate, r.model, r.cluster, strat, r.profile, opts)
    if reject is not None and reject != "oom":
        # A broken rule leaves no step to time (e.g. no micro batch per replica): rates are null,
        # not a number that reads like a prediction (MFU 1441%). Memory stays: it is still informative.
        for col in _RATE_COLUMNS:
            if col in cols:
                cols[col] = cols[col].astype(float) * float("nan")
        cols["warnings"] = cols["warnings"] & ~_CEILING_BIT  # no rate, nothing above the ceiling
    if not _frame:
        return {k: v[0] for k, v in cols.items()}
    row = _label(to_frame(cols, labels), r).fill_nan(None).with_columns(
        pl.lit(", ".join(r.defaulted), dtype=pl.String).alias("defaulted"),
        pl.lit(reject is None).alias("feasible"),
        pl.lit(reject, dtype=pl.String).alias("reject"),
        pl.lit(message, dtype=pl.String).alias("reject_message"),
    )
    if not stages:
        return row
    gib = float(1024**3)
    st = pl.DataFrame(per_stage).with_columns(
        [(pl.col(c) / gib).alias(f"{c}_gb") for c in
         ("weights", "gradients", "optimizer", "activations", "logits", "buffers", "overhead", "total")]
    ).select(["stage", "layers", "weights_gb", "gradients_gb", "optimizer_gb", "activations_gb", "logits_gb",
              "buffers_gb", "overhead_gb", "total_gb"])
    return row, st


def _column(name: str, value: Any) -> str:
    """A column name of the result frame (`_core.column_info`), checked before the run."""
    columns = [c for c, _, _ in _core.column_info()]
    if not isinstance(value, str):
        raise InputError(f"`{name}` must be a column name, got {spec._show(value, quote=True)}", code="invalid_value")
    if value not in columns:
        raise InputError(f"`{name}`: `{spec._show(value)}` is not a column; one of: {', '.join(columns)}",
                         code="invalid_value")
    return value


def _divisors(n: int) -> list[int]:
    """Divisors of ``n`` in increasing order, in O(sqrt n) (a million-GPU cluster is instant)."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return small + [n // d for d in reversed(small) if d * d != n]


class _Bar:
    """A one-line progress bar on stderr: percent, candidates/s, time left."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.shown = False

    def __call__(self, visited: int, total: int) -> bool:
        el = time.perf_counter() - self.t0
        if el < 0.5:
            return True
        rate = visited / el if el > 0 else 0.0
        left = (total - visited) / rate if rate > 0 else math.inf
        frac = visited / total if total else 1.0
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r[{bar:<30}] {frac:6.1%}  {rate / 1e6:7.1f} M cand/s  {left:6.1f} s left")
        sys.stderr.flush()
        self.shown = True
        return True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def enumerate(
    model: str | None = None,
    *,
    gpu: str = "a100-80",
    nodes: int = 1,
    gpus_per_node: int | None = None,
    intra_node_gbs: float | None = None,
    inter_node_gbs: float | None = None,
    nvlink_domain: int | None = None,
    layers: IntOrList | None = None,
    hidden: IntOrList | None = None,
    heads: IntOrList | None = None,
    kv_heads: int | None = None,
    ffn_hidden: int | None = None,
    activation: str | None = None,
    vocab: int | None = None,
    seq_len: int | None = None,
    tied_embeddings: bool | None = None,
    experts: int | None = None,
    topk: int | None = None,
    position: str | None = None,
    norm: str | None = None,
    bias: bool | None = None,
    mtp_layers: int | None = None,
    params: float | None = None,
    tolerance: float | str = 0.05,
    tp: IntOrList | None = None,
    pp: IntOrList | None = None,
    vpp: IntOrList | None = None,
    cp: IntOrList | None = None,
    ep: IntOrList | None = None,
    mbs: IntOrList = (1, 2, 4, 8),
    gbs: IntOrList | None = None,
    zero_stage: IntOrList = (0, 1, 2, 3),
    recompute: Recompute | Sequence[Recompute] = ("none", "selective", "full"),
    sequence_parallel: bool | Sequence[bool] | None = None,
    precision: Precision = "bf16",
    flash_attention: bool | None = None,
    uneven_stages: bool = True,
    task: Task | None = None,
    lora_rank: int | None = None,
    offload: Offload | None = None,
    fsdp_shard: int | None = None,
    etp: int | None = None,
    schedule: Schedule | None = None,
    cp_comm: CpComm | None = None,
    fp8_recipe: Fp8Recipe | None = None,
    profile: str | None = None,
    framework: str | None = None,
    headroom: float = 0.0,
    train_tokens: float = 1e12,
    allow_cross_node_tp: bool = False,
    rampup: bool = False,
    top: int | None = None,
    objective: str | None = None,
    descending: bool | None = None,
    pareto: tuple[str, str] | None = None,
    cap: int = 1_000_000,
    include_infeasible: bool = False,
    progress: bool | Callable[[int, int], bool | None] = False,
    with_stats: bool = False,
) -> Any:
    """Enumerate every candidate of a space, score it and reduce the result.

    The space is the Cartesian product of the value lists: model shape (``hidden``, ``layers``,
    ``heads``: an int, a list, a ``range`` or a string ``"12288:16384:128"``; with ``params`` and
    ``tolerance`` only shapes within the budget stay) and strategy (``tp`` defaults to the powers
    of two up to a node, ``pp`` to every divisor of the GPU count that leaves one layer per stage,
    ``mbs``, ``gbs``, ``zero_stage``, ``recompute``, ``sequence_parallel``, ``vpp``, ``cp``, ``ep``).
    ``ep`` defaults to the powers of two dividing the expert count for an MoE model (else 1), ``cp``
    to 1, 2, 4 and 8 for sequences of 16384 tokens or more (else 1); ``vpp`` to 1, 2 and 4 where the
    profile's framework interleaves pipeline stages (Megatron-LM), else 1 (Megatron-DeepSpeed,
    llm-foundry, PyTorch).
    ``dp`` follows from the GPU count.

    The training-mode keywords (``task``, ``lora_rank``, ``offload``, ``fsdp_shard``, ``etp``,
    ``schedule``, ``cp_comm``, ``fp8_recipe``: see :func:`evaluate`) are held fixed, not searched.
    A ``schedule`` sets the interleaving searched: ``"interleaved"`` the ``vpp`` values above 1
    (default 2 and 4), the others vpp 1; without one each row's schedule is what its vpp implies.
    Rows whose dp an ``fsdp_shard`` does not divide are pruned.

    Returns the feasible rows sorted by ``objective`` (default: fastest step first, or most tokens/s
    per GPU when several global batches are searched; ``stats["objective"]`` says which): all of them up to
    ``cap``, the ``top`` best, or the Pareto front of two columns (``pareto=("step_time_s",
    "mem_gb")``). With ``with_stats=True`` returns ``(frame, stats)``; stats has ``candidates`` (the
    whole product), ``scored`` (reached the full cost model), ``pruned`` (count per rule),
    ``seconds``, and ``partial`` (stopped early, e.g. by Ctrl-C or a callback returning False).

    >>> df = enumerate("llama-2-7b", gpu="h100-80", nodes=1, gbs=64, top=3)
    >>> df.height, bool((df["step_time_s"].diff().drop_nulls() >= 0).all())
    (3, True)
    """
    fields = dict(kv_heads=kv_heads, ffn_hidden=ffn_hidden, activation=activation, vocab=vocab, seq_len=seq_len,
                  tied_embeddings=tied_embeddings, experts=experts, topk=topk, position=position, norm=norm, bias=bias,
                  mtp_layers=mtp_layers)
    scalar_shape = {k: v for k, v in (("layers", layers), ("hidden", hidden), ("heads", heads))
                    if v is not None and isinstance(v, int) and not isinstance(v, bool)}
    if model is None and all(v is not None for v in (layers, hidden, heads)):
        # A shape without a model is the same custom GPT-style model evaluate scores, not BLOOM with
        # new dimensions: the first value of each list builds it, the search varies it.
        scalar_shape = {k: spec.int_list(k, v)[0] for k, v in (("layers", layers), ("hidden", hidden), ("heads", heads))}
    res = _resolve(model, gpu, nodes, gpus_per_node, profile, framework, precision, {**fields, **scalar_shape},
                   (intra_node_gbs, inter_node_gbs, nvlink_domain))
    model_d, cluster_d, prof_d, prof_entry = res.model, res.cluster, res.profile, res.profile_entry
    gpus = res.gpus
    gpn = cluster_d["gpus_per_node"]
    search = params is not None
    # With a parameter budget and no explicit shape, search around the base model: hidden from half
    # to 1.5x in steps of 128, layers from half to 1.5x, heads as below.
    base_h, base_l = model_d["hidden"], model_d["layers"]
    hidden_l = (spec.int_list("hidden", hidden, maximum=1 << 22) if hidden is not None
                else list(range(max(128, base_h // 2 // 128 * 128), base_h * 3 // 2 + 1, 128)) if search
                else [base_h])
    layers_l = (spec.int_list("layers", layers, maximum=1 << 20) if layers is not None
                else list(range(max(1, base_l // 2), base_l * 3 // 2 + 1)) if search else [base_l])
    # Default head counts: those giving a head dimension of 64-256 at the base hidden size, the range of
    # published LLMs (GPT-3, BLOOM, Llama: 128; Falcon: 64; Gemma: 256) and of FlashAttention's kernels.
    common_heads = {h for h in (32, 48, 64, 80, 96, 112, 128, 160, 192, 256) if 64 <= base_h / h <= 256}
    heads_l = (spec.int_list("heads", heads, maximum=1 << 16) if heads is not None
               else sorted(common_heads | {model_d["heads"]}) if search else [model_d["heads"]])
    params_range = None
    if params is not None:
        budget = spec.positive_float("params", params, maximum=1e16)
        tol = tolerance
        if isinstance(tol, str):
            t = tol.strip()
            if t.endswith("%"):
                tol = spec.positive_float("tolerance", t[:-1], minimum=0.0, inclusive_min=True) / 100
            else:
                tol = t
        tol = spec.positive_float("tolerance", tol, minimum=0.0, maximum=1.0, inclusive_min=True)
        params_range = (budget * (1 - tol), budget * (1 + tol))
    max_tp = gpus if spec.boolean("allow_cross_node_tp", allow_cross_node_tp) else min(gpn, gpus)
    tp_l = spec.int_list("tp", tp, maximum=1 << 12) if tp is not None else [t for t in (1, 2, 4, 8, 16, 32, 64)
                                                                                 if t <= max_tp]
    max_layers = max(layers_l)
    pp_l = (spec.int_list("pp", pp, maximum=1 << 16) if pp is not None
            else [p for p in _divisors(gpus) if p <= max_layers] or [1])
    # Expert parallelism where the model has experts, context parallelism where sequences are long.
    experts = model_d["experts"]
    ep_l = (spec.int_list("ep", ep, maximum=1 << 16) if ep is not None
            else [e for e in (1, 2, 4, 8, 16, 32, 64) if experts and experts % e == 0 and e <= gpus] or [1])
    cp_l = (spec.int_list("cp", cp, maximum=1 << 12) if cp is not None
            else [c for c in (1, 2, 4, 8) if c <= gpus] if model_d["seq_len"] >= 16384 else [1])
    if isinstance(recompute, str):
        recompute = [recompute]
    elif not isinstance(recompute, (list, tuple, set, frozenset)):
        raise InputError("`recompute` must be one of {none, selective, full} or a list of them, "
                         f"got {spec._show(recompute, quote=True)}", code="invalid_value")
    rec_l = [spec.choice("recompute", r, spec.RECOMPUTE) for r in recompute]
    if sequence_parallel is None:
        sp_l = [False, True] if max(tp_l) > 1 else [False]
    elif not isinstance(sequence_parallel, (list, tuple, set, frozenset)):
        sp_l = [spec.boolean("sequence_parallel", sequence_parallel)]
    else:
        sp_l = sorted({spec.boolean("sequence_parallel", v) for v in sequence_parallel})
    flash = prof_entry["flash_attention"] if flash_attention is None else spec.boolean("flash_attention",
                                                                                        flash_attention)
    prec = spec.choice("precision", precision, spec.PRECISIONS)
    vpp_l = resolve.vpp_for_schedule(schedule, spec.int_list("vpp", vpp, maximum=1 << 10) if vpp is not None else None,
                                     resolve.default_vpp(prof_entry))
    knobs = resolve.mode(dict(task=task, lora_rank=lora_rank, offload=offload, fsdp_shard=fsdp_shard, etp=etp,
                              schedule=schedule, cp_comm=cp_comm, fp8_recipe=fp8_recipe),
                         precision=prec, vpp=vpp_l, space=True)
    space = {
        "hidden": hidden_l, "layers": layers_l, "heads": heads_l, "params_range": params_range,
        "tp": tp_l, "cp": cp_l, "ep": ep_l,
        "mbs": spec.int_list("mbs", mbs, maximum=1 << 20), "sequence_parallel": sp_l, "recompute": rec_l,
        "pp": pp_l, "vpp": vpp_l,
        "gbs": spec.int_list("gbs", gbs if gbs is not None else spec.DEFAULT_GBS),
        "zero_stage": spec.int_list("zero_stage", zero_stage, minimum=0, maximum=3),
        "precision": prec, "flash_attention": flash,
        "uneven_stages": spec.boolean("uneven_stages", uneven_stages),
        **knobs,
        **resolve.framework_settings(prof_entry),
        "keep_infeasible": spec.boolean("include_infeasible", include_infeasible),
    }
    size = math.prod(len(space[k]) for k in ("hidden", "layers", "heads", "tp", "cp", "ep", "mbs", "sequence_parallel",
                                               "recompute", "pp", "vpp", "gbs", "zero_stage"))
    if size > MAX_CANDIDATES:  # about half an hour at the core's rate: ask for a smaller space
        raise InputError(f"the space has {size:.3g} candidates, more than {MAX_CANDIDATES:.0e}; narrow `hidden`, "
                         "`layers` or `heads` (a step, or a parameter budget with --params)", code="space_too_large")
    opts = spec.options_dict(headroom, train_tokens, allow_cross_node_tp, rampup)
    desc = None if descending is None else spec.boolean("descending", descending)
    if objective is None:
        # Fastest step first, unless steps differ in tokens (several global batches): then the
        # most tokens per second per GPU, since a smaller batch always has a shorter step.
        objective = "step_time_s" if len(space["gbs"]) == 1 else "tokens_per_s_per_gpu"
    if pareto is not None:
        if not isinstance(pareto, (list, tuple)) or len(pareto) != 2:
            raise InputError(f"`pareto` must be two column names, got {spec._show(pareto, quote=True)}",
                             code="invalid_value")
        reducer = {"kind": "pareto", "a": _column("pareto", pareto[0]), "b": _column("pareto", pareto[1]),
                   "descending": None}
    elif top is not None:
        reducer = {"kind": "top", "k": spec.positive_int("top", top, maximum=10_000_000),
                   "objective": _column("objective", objective), "descending": desc}
    else:
        reducer = {"kind": "all", "cap": spec.positive_int("cap", cap, maximum=100_000_000),
                   "objective": _column("objective", objective), "descending": desc}
    bar: _Bar | None = None
    cb: Callable[[int, int], bool] | None = None
    if progress is True:
        bar = _Bar()
        cb = bar
    elif callable(progress):
        user = progress

        def cb(visited: int, total: int) -> bool:
            return user(visited, total) is not False
    elif progress is not None and progress is not False:
        raise InputError(f"`progress` must be true, false or a callable, got {spec._show(progress, quote=True)}",
                         code="invalid_value")
    try:
        cols, labels, stats = _core_call(_core.enumerate, space, model_d, cluster_d, prof_d, opts, reducer, cb,
                                         _field="pareto" if pareto is not None else None)
    finally:
        if bar is not None:
            bar.close()
    df = _label(to_frame(cols, labels), res)
    stats = dict(stats)
    stats["model"] = res.label
    stats["profile"] = res.profile_name
    stats["framework"] = res.framework
    stats["objective"] = reducer.get("objective") or f"pareto {reducer['a']}, {reducer['b']}"
    stats["resolved"] = res
    if stats.get("interrupted"):
        sys.stderr.write("interrupted: returning the candidates scored so far (partial)\n")
    return (df, stats) if with_stats else df


__all__ = ["enumerate", "evaluate"]
