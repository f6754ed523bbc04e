"""`topo`: the command line (typer). Data goes to stdout, everything else to stderr.

Errors print as ``error: <one line>`` and, after a blank line, ``hint: ...``. Exit codes: 0 an
answer, 1 an answer that fails (no feasible row, an infeasible configuration, a failed check), 2 bad
input, a usage error or an internal one, 130 interrupted. Never a traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, Optional

import typer
from typer.exceptions import TyperException

import toposcan
from toposcan import catalog, render, spec
from toposcan.errors import InputError, ToposcanError

app = typer.Typer(
    name="topo",
    help="Enumerate and score LLM-training configurations before launch.\n\n"
    "Examples:\n\n"
    "  topo enumerate --nodes 48 --gpu a100-80\n\n"
    "  topo enumerate --nodes 48 --gpu a100-80 --params 176e9 --tolerance 3% --hidden 12288:16384:128 --layers 60:100\n\n"
    "  topo evaluate --model bloom-176b --nodes 48 --tp 4 --pp 12 --mbs 2\n\n"
    "  topo check launch.sh --nodes 48 --gpu a100-80 || exit 1\n\n"
    "  topo calibrate my_runs.csv -o mine.toml && topo enumerate --nodes 8 --gpu h100-80 --profile mine.toml",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"topo {toposcan.__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """toposcan's command line."""


Opt = typer.Option
ModelOpt = Annotated[Optional[str], Opt("--model", "-m", help="Catalog model (`topo models`); default bloom-176b.")]
GpuOpt = Annotated[str, Opt("--gpu", "-g", help="Catalog GPU (`topo gpus`).")]
NodesOpt = Annotated[str, Opt("--nodes", "-n", help="Nodes in the cluster.")]
GpnOpt = Annotated[Optional[str], Opt("--gpus-per-node", help="GPUs per node (default: the GPU's usual node).")]
IntraOpt = Annotated[Optional[str], Opt("--intra-node-gbs", help="Intra-node link GB/s per GPU per direction (default: the GPU's usual node).")]
InterOpt = Annotated[Optional[str], Opt("--inter-node-gbs", help="Network GB/s per GPU per direction (default: the GPU's usual node, e.g. 25 for DGX A100).")]
StrOpt = Optional[str]
DomainOpt = Annotated[Optional[str], Opt("--nvlink-domain", help="GPUs on one NVLink fabric (default: the GPU's; 72 for GB200/GB300 NVL72).")]
FrameworkOpt = Annotated[Optional[str], Opt("--framework", help="Training stack: megatron-core, megatron-lm, "
                         "megatron-deepspeed, deepspeed, torchtitan, llm-foundry or pytorch (default: the GPU's profile's).")]
#: The training-mode flags (issue 16), the same on enumerate, evaluate and check (where they
#: override what the launch file says). Values are checked by toposcan.resolve (exit 2, one line).
TaskOpt = Annotated[StrOpt, Opt("--task", help="pretrain, sft or lora (default pretrain).")]
LoraRankOpt = Annotated[StrOpt, Opt("--lora-rank", help="LoRA adapter rank, with --task lora (default 16).")]
OffloadOpt = Annotated[StrOpt, Opt("--offload", help="none, optimizer (ZeRO-Offload, Megatron CPU optimizer) or optimizer+params (default none).")]
FsdpShardOpt = Annotated[StrOpt, Opt("--fsdp-shard", help="HSDP: shard ZeRO within groups of N data-parallel ranks, replicate across dp/N (default 0: all of dp).")]
EtpOpt = Annotated[StrOpt, Opt("--etp", help="Expert tensor-parallel size (MoE parallel folding; default 0: the same as tp).")]
ScheduleOpt = Annotated[StrOpt, Opt("--schedule", help="Pipeline schedule: 1f1b, interleaved (vpp >= 2), zero-bubble or dualpipe (default: what vpp implies).")]
CpCommOpt = Annotated[StrOpt, Opt("--cp-comm", help="Context-parallel exchange: ring (p2p) or ulysses (a2a) (default ring).")]
Fp8RecipeOpt = Annotated[StrOpt, Opt("--fp8-recipe", help="FP8 scaling with --precision fp8: delayed, current (tensorwise) or blockwise (default delayed).")]


def _knobs(**kw: Any) -> dict[str, Any]:
    """The training-mode flags given (None: not given, the default applies)."""
    return {k: v for k, v in kw.items() if v is not None}


def _stderr(msg: str) -> None:
    sys.stderr.write(msg + "\n")


PlotOpt = Annotated[Optional[str], typer.Option("--plot", help="Draw a chart to FILE (.html, .png or .svg; needs `pip install 'toposcan[plot]'`).")]
UsdOpt = Annotated[Optional[str], typer.Option("--gpu-hour-usd", help="Price of one GPU-hour in USD for cost_usd and usd_per_m_tokens (default: data/prices.toml).")]


def _require_plot(path: str | None) -> None:
    """Before a long run: the plot extra is installed and FILE has a known extension (exit 2 if not)."""
    if path:
        from toposcan import plot

        try:
            plot.require(path)
        except InputError as e:
            sys.stderr.write(f"error: {e.message}\n")
            raise typer.Exit(2) from None


def _model_fields(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


def _header(resolved: Any, stats: dict[str, Any] | None = None, *, kind: str, network: Any = None) -> None:
    """The run's header on stderr: what was resolved and defaulted (and the enumeration's statistics)."""
    _stderr(resolved.describe(kind, network_given=network is not None))
    if stats:
        pruned = ", ".join(f"{k} {v}" for k, v in sorted(stats["pruned"].items(), key=lambda kv: -kv[1]))
        _stderr(f"{stats['candidates']:,} candidates, {stats['scored']:,} scored, pruned: {pruned or 'none'}; "
                f"{stats['seconds']:.3f} s; ranked by {stats['objective']}"
                + ("; PARTIAL (stopped early)" if stats.get("partial") else ""))


@app.command("enumerate")
def enumerate_cmd(
    nodes: NodesOpt = "1",
    gpu: GpuOpt = "a100-80",
    gpus_per_node: GpnOpt = None,
    intra_node_gbs: IntraOpt = None,
    inter_node_gbs: InterOpt = None,
    nvlink_domain: DomainOpt = None,
    model: ModelOpt = None,
    layers: Annotated[StrOpt, Opt(help="Layers: N, a list `a,b` or a range `a:b[:step]`.")] = None,
    hidden: Annotated[StrOpt, Opt(help="Hidden size: N, a list or a range `12288:16384:128`.")] = None,
    heads: Annotated[StrOpt, Opt(help="Attention heads: N or a list `16,32,64`.")] = None,
    kv_heads: Annotated[StrOpt, Opt(help="Key/value heads (GQA).")] = None,
    ffn_hidden: Annotated[StrOpt, Opt(help="MLP intermediate size.")] = None,
    activation: Annotated[StrOpt, Opt(help="gelu or swiglu.")] = None,
    vocab: Annotated[StrOpt, Opt(help="Vocabulary size.")] = None,
    seq_len: Annotated[StrOpt, Opt(help="Sequence length.")] = None,
    experts: Annotated[StrOpt, Opt(help="Routed experts (MoE).")] = None,
    topk: Annotated[StrOpt, Opt(help="Experts per token (MoE).")] = None,
    mtp_layers: Annotated[StrOpt, Opt(help="Multi-token-prediction modules (DeepSeek-V3: 1; 0 to leave them out).")] = None,
    params: Annotated[StrOpt, Opt(help="Parameter budget for shape search, e.g. 176e9.")] = None,
    tolerance: Annotated[str, Opt(help="Budget tolerance, e.g. 3% or 0.03.")] = "5%",
    tp: Annotated[StrOpt, Opt(help="Tensor-parallel degrees (default: powers of 2 up to a node).")] = None,
    pp: Annotated[StrOpt, Opt(help="Pipeline degrees (default: every divisor of the GPU count).")] = None,
    vpp: Annotated[StrOpt, Opt(help="Virtual pipeline stages per rank (default 1,2,4 where the profile's framework interleaves, Megatron-LM; else 1).")] = None,
    cp: Annotated[StrOpt, Opt(help="Context-parallel degrees (default 1,2,4,8 for sequences of 16k tokens or more, else 1).")] = None,
    ep: Annotated[StrOpt, Opt(help="Expert-parallel degrees (default: powers of two up to 64 and the GPU count dividing an MoE model's experts).")] = None,
    mbs: Annotated[str, Opt(help="Micro batch sizes.")] = "1,2,4,8",
    gbs: Annotated[str, Opt(help="Global batch sizes (samples).")] = "2048",
    zero_stage: Annotated[str, Opt(help="ZeRO stages (3 = FSDP).")] = "0,1,2,3",
    recompute: Annotated[str, Opt(help="Recompute modes: none,selective,full.")] = "none,selective,full",
    sequence_parallel: Annotated[StrOpt, Opt(help="true, false or both (default: both when tp > 1).")] = None,
    precision: Annotated[str, Opt(help="fp32, fp16, bf16, fp8, mxfp8 or nvfp4.")] = "bf16",
    flash_attention: Annotated[StrOpt, Opt(help="true/false (default: the profile's).")] = None,
    profile: Annotated[StrOpt, Opt(help="Efficiency profile (`topo profiles`).")] = None,
    framework: FrameworkOpt = None,
    task: TaskOpt = None,
    lora_rank: LoraRankOpt = None,
    offload: OffloadOpt = None,
    fsdp_shard: FsdpShardOpt = None,
    etp: EtpOpt = None,
    schedule: ScheduleOpt = None,
    cp_comm: CpCommOpt = None,
    fp8_recipe: Fp8RecipeOpt = None,
    headroom: Annotated[str, Opt(help="Memory kept free, fraction of the GPU (default 0: the model is within ~5%; check warns above 95%).")] = "0",
    tokens: Annotated[str, Opt(help="Training tokens for gpu-hours / days (1e12, 2T).")] = "1e12",
    cap: Annotated[str, Opt(help="Most rows written without --top (csv, json, parquet, markdown).")] = "100000",
    rampup: Annotated[bool, Opt(help="Flag configs breaking seeds/001's batch ramp-up rule.")] = False,
    top: Annotated[StrOpt, Opt("--top", "-k", help="Show the K best (default 20 on the terminal).")] = None,
    sort: Annotated[StrOpt, Opt("--sort", "--objective", help="Column to rank by (default: step_time_s, or tokens_per_s_per_gpu when several --gbs are searched).")] = None,
    descending: Annotated[Optional[bool], Opt("--descending/--ascending", help="Ranking direction.")] = None,
    pareto: Annotated[StrOpt, Opt(help="Pareto front of two columns, e.g. step_time_s,mem_gb.")] = None,
    fmt: Annotated[str, Opt("--format", "-f", help="table, csv, json, parquet or markdown.")] = "table",
    output: Annotated[StrOpt, Opt("--output", "-o", help="Write to FILE.")] = None,
    stats: Annotated[bool, Opt("--stats", help="Print enumeration statistics.")] = False,
    progress: Annotated[bool, Opt("--progress/--no-progress", help="Progress bar on long runs.")] = True,
    plot_file: PlotOpt = None,
    gpu_hour_usd: UsdOpt = None,
) -> None:
    """Rank every feasible topology for a cluster (fastest step first)."""
    from toposcan import cost, plot, uncertainty

    spec.choice("format", fmt, render.FORMATS)  # before the run, not after it
    _require_plot(plot_file)
    want_cost = gpu_hour_usd is not None or sort in cost.OBJECTIVE_COLUMN
    if want_cost:
        cost.price(gpu, gpu_hour_usd)  # an unknown price fails before the run
    if fmt == "parquet" and not output:
        raise InputError("`--format parquet` needs `-o FILE`", code="invalid_value")
    ints = lambda v: v  # noqa: E731  (lists and ranges are parsed by toposcan.spec)
    top_k = top if top is not None else (None if (fmt != "table" or output or pareto or plot_file) else "20")
    kw: dict[str, Any] = dict(
        gpu=gpu, nodes=nodes, gpus_per_node=gpus_per_node, intra_node_gbs=intra_node_gbs,
        inter_node_gbs=inter_node_gbs, nvlink_domain=nvlink_domain, layers=ints(layers), hidden=ints(hidden),
        heads=ints(heads), **_model_fields(kv_heads=kv_heads, ffn_hidden=ffn_hidden, activation=activation,
                                           vocab=vocab, seq_len=seq_len, experts=experts, topk=topk,
                                           mtp_layers=mtp_layers),
        tp=tp, pp=pp, vpp=vpp, cp=cp, ep=ep, mbs=mbs, gbs=gbs, zero_stage=zero_stage,
        recompute=[r for r in recompute.split(",") if r], precision=precision, profile=profile, framework=framework,
        headroom=headroom, train_tokens=tokens, rampup=rampup, objective=cost.OBJECTIVE_COLUMN.get(sort, sort),
        descending=descending, progress=progress and sys.stderr.isatty(), with_stats=True, cap=cap,
        **_knobs(task=task, lora_rank=lora_rank, offload=offload, fsdp_shard=fsdp_shard, etp=etp,
                 schedule=schedule, cp_comm=cp_comm, fp8_recipe=fp8_recipe),
    )
    if sequence_parallel is not None and sequence_parallel != "both":
        kw["sequence_parallel"] = sequence_parallel
    if flash_attention is not None:
        kw["flash_attention"] = flash_attention
    if params is not None:
        kw["params"] = params
        kw["tolerance"] = tolerance
    if pareto:
        parts = [p.strip() for p in pareto.split(",")]
        kw["pareto"] = tuple(parts)
    elif top_k is not None:
        kw["top"] = top_k
    try:
        df, st = toposcan.enumerate(model, **kw)
    except InputError as e:  # name the flag the user typed
        if e.message.startswith("`objective`"):
            e.message = "`sort`" + e.message[len("`objective`"):]
        raise
    _header(st["resolved"], st if (stats or fmt == "table") else None, kind="enumerate", network=inter_node_gbs)
    if df.height >= int(spec.positive_int("cap", cap, maximum=100_000_000)) and top_k is None and not pareto:
        _stderr(f"output capped at {df.height:,} rows (--cap to change, --top K for the best K)")
    if stats and fmt != "table":
        _stderr(str({k: v for k, v in st.items() if k != "resolved"}))
    if df.height == 0:
        _stderr("no feasible configuration: every candidate broke a rule or ran out of memory (see pruned above)")
        raise typer.Exit(1)
    framework = st["framework"]
    if want_cost or gpu in cost.prices()["gpu"].to_list():
        df = cost.add_cost(df, gpu, gpu_hour_usd)
    if fmt == "table":
        _stderr(uncertainty.describe(framework, gpu))
    if plot_file:
        plot.save(plot.pareto(df), plot_file)
        _stderr(f"plot: {plot_file}")
        if top is None and fmt == "table" and not output and not pareto:
            df = df.head(20)  # the plot has every row; the terminal the 20 best
    shape = params is not None or any(v is not None for v in (hidden, layers, heads))
    render.write(df, fmt, output, columns=render.table_columns(df, shape) if fmt in ("table", "markdown") else None)


@app.command("evaluate")
def evaluate_cmd(
    nodes: NodesOpt = "1",
    gpu: GpuOpt = "a100-80",
    gpus_per_node: GpnOpt = None,
    intra_node_gbs: IntraOpt = None,
    inter_node_gbs: InterOpt = None,
    nvlink_domain: DomainOpt = None,
    model: ModelOpt = None,
    layers: Annotated[StrOpt, Opt(help="Layers.")] = None,
    hidden: Annotated[StrOpt, Opt(help="Hidden size.")] = None,
    heads: Annotated[StrOpt, Opt(help="Attention heads.")] = None,
    kv_heads: Annotated[StrOpt, Opt(help="Key/value heads (GQA).")] = None,
    ffn_hidden: Annotated[StrOpt, Opt(help="MLP intermediate size.")] = None,
    activation: Annotated[StrOpt, Opt(help="gelu or swiglu.")] = None,
    vocab: Annotated[StrOpt, Opt(help="Vocabulary size.")] = None,
    seq_len: Annotated[StrOpt, Opt(help="Sequence length.")] = None,
    experts: Annotated[StrOpt, Opt(help="Routed experts (MoE).")] = None,
    topk: Annotated[StrOpt, Opt(help="Experts per token (MoE).")] = None,
    mtp_layers: Annotated[StrOpt, Opt(help="Multi-token-prediction modules (DeepSeek-V3: 1; 0 to leave them out).")] = None,
    dp: Annotated[StrOpt, Opt(help="Data-parallel degree (default: GPUs / (tp*pp*cp)).")] = None,
    tp: Annotated[StrOpt, Opt(help="Tensor-parallel degree (default 1).")] = None,
    pp: Annotated[StrOpt, Opt(help="Pipeline degree (default 1).")] = None,
    vpp: Annotated[StrOpt, Opt(help="Virtual pipeline stages per rank (default 1).")] = None,
    cp: Annotated[StrOpt, Opt(help="Context-parallel degree (default 1).")] = None,
    ep: Annotated[StrOpt, Opt(help="Expert-parallel degree (default 1).")] = None,
    mbs: Annotated[StrOpt, Opt(help="Micro batch size (default 1).")] = None,
    gbs: Annotated[StrOpt, Opt(help="Global batch size, samples (default 2048).")] = None,
    zero_stage: Annotated[StrOpt, Opt(help="ZeRO stage (default 1).")] = None,
    recompute: Annotated[StrOpt, Opt(help="none, selective or full (default selective).")] = None,
    sequence_parallel: Annotated[StrOpt, Opt(help="true or false (default: true when tp > 1).")] = None,
    precision: Annotated[StrOpt, Opt(help="fp32, fp16, bf16, fp8, mxfp8 or nvfp4 (default bf16).")] = None,
    flash_attention: Annotated[StrOpt, Opt(help="true/false (default: the framework's).")] = None,
    profile: Annotated[StrOpt, Opt(help="Efficiency profile.")] = None,
    framework: FrameworkOpt = None,
    task: TaskOpt = None,
    lora_rank: LoraRankOpt = None,
    offload: OffloadOpt = None,
    fsdp_shard: FsdpShardOpt = None,
    etp: EtpOpt = None,
    schedule: ScheduleOpt = None,
    cp_comm: CpCommOpt = None,
    fp8_recipe: Fp8RecipeOpt = None,
    headroom: Annotated[str, Opt(help="Memory kept free, fraction of the GPU (default 0: the model is within ~5%; check warns above 95%).")] = "0",
    tokens: Annotated[str, Opt(help="Training tokens for gpu-hours / days (1e12, 2T).")] = "1e12",
    fmt: Annotated[str, Opt("--format", "-f", help="table, csv, json or markdown.")] = "table",
    plot_file: PlotOpt = None,
    gpu_hour_usd: UsdOpt = None,
) -> None:
    """Score one configuration, with its memory per pipeline stage."""
    from toposcan import cost, plot, uncertainty

    spec.choice("format", fmt, ("table", "csv", "json", "markdown"))
    _require_plot(plot_file)
    kw: dict[str, Any] = dict(gpu=gpu, nodes=nodes, gpus_per_node=gpus_per_node, intra_node_gbs=intra_node_gbs,
                              inter_node_gbs=inter_node_gbs, nvlink_domain=nvlink_domain, dp=dp, tp=tp, pp=pp, vpp=vpp,
                              cp=cp, ep=ep, mbs=mbs, gbs=gbs, zero_stage=zero_stage, recompute=recompute,
                              sequence_parallel=sequence_parallel, precision=precision, profile=profile,
                              framework=framework, headroom=headroom, train_tokens=tokens, stages=True,
                              **_model_fields(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads,
                                              ffn_hidden=ffn_hidden, activation=activation, vocab=vocab,
                                              seq_len=seq_len, experts=experts, topk=topk,
                                              mtp_layers=mtp_layers),
                              **_knobs(task=task, lora_rank=lora_rank, offload=offload, fsdp_shard=fsdp_shard,
                                       etp=etp, schedule=schedule, cp_comm=cp_comm, fp8_recipe=fp8_recipe))
    if flash_attention is not None:
        kw["flash_attention"] = flash_attention
    row, stages = toposcan.evaluate(model, **kw)
    r = row.row(0, named=True)
    if r["step_time_s"] is not None:
        if gpu_hour_usd is not None or gpu in cost.prices()["gpu"].to_list():
            row = cost.add_cost(row, gpu, gpu_hour_usd)
        r = row.row(0, named=True)
    if plot_file:  # before any output, as a bad path is an error
        plot.save(plot.breakdown(row), plot_file)
    if fmt in ("csv", "json"):
        render.write(row, fmt, None)
        if r["reject"]:
            raise typer.Exit(1)
        return
    _stderr(f"evaluate: model `{r['model']}`, gpu `{gpu}` x {r['gpus']}, framework `{r['framework']}` "
            f"(profile `{r['profile']}`)" + (f"; defaulted: {r['defaulted']}" if r["defaulted"] else ""))
    if r["step_time_s"] is None:  # a broken rule: nothing to time
        lines = [f"params            {r['params']:,} ({r['params_active']:,} active)",
                 f"dp tp pp          {r['dp']} x {r['tp']} x {r['pp']} (vpp {r['vpp']}, cp {r['cp']}, ep {r['ep']}) = {r['gpus']} GPUs",
                 f"batch             mbs {r['mbs']}, gbs {r['gbs']}",
                 f"peak memory       {r['mem_gb']:.1f} GiB on stage {r['mem_stage']}"]
    else:
        lines = [
            f"params            {r['params']:,} ({r['params_active']:,} active)",
            f"dp tp pp          {r['dp']} x {r['tp']} x {r['pp']} (vpp {r['vpp']}, cp {r['cp']}, ep {r['ep']}) = {r['gpus']} GPUs",
            f"batch             mbs {r['mbs']}, gbs {r['gbs']}, {r['grad_accum']} micro batches per replica",
            *([f"training mode     {render.mode_line(r)}"] if render.mode_line(r) else []),
            f"step time         {r['step_time_s']:.3f} s "
            f"{uncertainty.plus_minus(r['step_time_s'], r['step_time_s_lo'], r['step_time_s_hi'])} "
            f"(bubble {r['bubble_fraction']:.1%})",
            "  spent on        " + render.breakdown(r),
            f"TFLOP/s per GPU   {r['tflops_per_gpu']:.1f} (Megatron formula: every matmul, full s^2 attention)",
            f"MFU / HFU         {r['mfu']:.1%} / {r['hfu']:.1%} (causal attention counted once, dense 16-bit peak)",
            f"tokens/s/GPU      {r['tokens_per_s_per_gpu']:,.0f}",
            f"peak memory       {r['mem_gb']:.1f} GiB "
            f"{uncertainty.plus_minus(r['mem_gb'], r['mem_gb_lo'], r['mem_gb_hi'])} on stage {r['mem_stage']} "
            f"({'fits' if r['fits'] else 'DOES NOT FIT'} with {float(headroom):.0%} headroom)",
            f"energy            {r['energy_j_per_token']:.3f} J/token; {r['gpu_hours']:,.0f} GPU-hours, "
            f"{r['train_days']:.1f} days for {spec.positive_float('tokens', tokens):.3g} tokens",
        ]
        if "cost_usd" in r:
            lines.append(f"cost              ${r['cost_usd']:,.0f} at ${r['usd_per_gpu_hour']:.2f}/GPU-hour; "
                         f"${r['usd_per_m_tokens']:.3f} per million tokens")
    warn = toposcan.explain_warnings(int(r["warnings"]))
    if warn:
        lines.append(f"warnings          {', '.join(warn)}")
    if r["reject"]:
        lines.append(f"BROKEN RULE       {r['reject']}: {r['reject_message']}")
    sys.stdout.write("\n".join(lines) + "\n\nmemory per stage (GiB):\n")
    render.write(stages, "markdown" if fmt == "markdown" else "table", None,
                 columns=list(stages.columns))
    if r["reject"]:
        raise typer.Exit(1)


@app.command("gpus")
def gpus_cmd(fmt: Annotated[str, Opt("--format", "-f", help="table, csv, json or markdown.")] = "table") -> None:
    """List the GPU catalog with sources."""
    df = toposcan.gpus()
    cols = ["name", "memory_gib", "sms", "bf16_tflops", "fp8_tflops", "memory_bw_gbs", "elementwise_gbs", "intra_node_gbs",
            "inter_node_gbs", "gpus_per_node", "board_power_w"]
    render.write(df, fmt, None, columns=cols if fmt in ("table", "markdown") else None)


@app.command("models")
def models_cmd(fmt: Annotated[str, Opt("--format", "-f", help="table, csv, json or markdown.")] = "table") -> None:
    """List the model catalog with exact parameter counts."""
    df = toposcan.models()
    cols = ["name", "params", "layers", "hidden", "heads", "kv_heads", "ffn_hidden", "activation", "vocab",
            "seq_len", "experts", "topk"]
    render.write(df, fmt, None, columns=cols if fmt in ("table", "markdown") else None)


@app.command("profiles")
def profiles_cmd(fmt: Annotated[str, Opt("--format", "-f", help="table, csv, json or markdown.")] = "table") -> None:
    """List the efficiency profiles and their fitted constants."""
    df = toposcan.profiles()
    cols = ["name", "gemm_efficiency", "attention_efficiency", "memory_efficiency", "intra_link_efficiency",
            "inter_link_efficiency", "layer_overhead_s", "dp_overlap", "fsdp_overlap", "step_overhead_s",
            "memory_overhead_gib", "fragmentation"]
    render.write(df, fmt, None, columns=cols if fmt in ("table", "markdown") else None)


@app.command("check")
def check_cmd(
    file: Annotated[Optional[str], typer.Argument(help="Launch script, DeepSpeed JSON or llm-foundry YAML.")] = None,
    args: Annotated[StrOpt, Opt("--args", help="A plain Megatron argument list instead of a file.")] = None,
    nodes: Annotated[StrOpt, Opt("--nodes", "-n", help="Nodes (default: from the file).")] = None,
    gpu: Annotated[StrOpt, Opt("--gpu", "-g", help="Catalog GPU (default: from the file).")] = None,
    gpus_per_node: GpnOpt = None,
    intra_node_gbs: IntraOpt = None,
    inter_node_gbs: InterOpt = None,
    nvlink_domain: DomainOpt = None,
    model: Annotated[StrOpt, Opt("--model", "-m", help="Catalog model for fields the file leaves out.")] = None,
    profile: Annotated[StrOpt, Opt(help="Efficiency profile.")] = None,
    framework: FrameworkOpt = None,
    task: TaskOpt = None,
    lora_rank: LoraRankOpt = None,
    offload: OffloadOpt = None,
    fsdp_shard: FsdpShardOpt = None,
    etp: EtpOpt = None,
    schedule: ScheduleOpt = None,
    cp_comm: CpCommOpt = None,
    fp8_recipe: Fp8RecipeOpt = None,
    strict: Annotated[bool, Opt("--strict", help="Exit 3 when a warning fires.")] = False,
    max_slowdown: Annotated[str, Opt(help="Warn when the best topology is this much faster (fraction).")] = "0.1",
    tokens: Annotated[StrOpt, Opt(help="Training tokens for the time-to-train line.")] = None,
    fmt: Annotated[str, Opt("--format", "-f", help="text or json.")] = "text",
    plot_file: PlotOpt = None,
) -> None:
    """Pre-launch gate: exit 0 pass, 1 fail (OOM, broken rule), 2 usage/parse error, 3 warning with --strict."""
    from toposcan.errors import InputError as _InputError

    _require_plot(plot_file)
    try:
        if fmt not in ("text", "json"):  # a bad option: exit 2, as check's other usage errors
            raise _InputError(f"`format` must be one of {{text, json}}, got `{fmt}`", code="invalid_value")
        report = toposcan.check(file, args=args, nodes=nodes, gpu=gpu, gpus_per_node=gpus_per_node,
                                intra_node_gbs=intra_node_gbs, inter_node_gbs=inter_node_gbs,
                                nvlink_domain=nvlink_domain, model=model,
                                profile=profile, framework=framework, max_slowdown=max_slowdown,
                                train_tokens=tokens,
                                **_knobs(task=task, lora_rank=lora_rank, offload=offload, fsdp_shard=fsdp_shard,
                                         etp=etp, schedule=schedule, cp_comm=cp_comm, fp8_recipe=fp8_recipe))
    except ToposcanError as e:
        sys.stderr.write(f"error: {e.message}\n")
        if e.hint:
            sys.stderr.write(f"\nhint: {e.hint}\n")
        raise typer.Exit(2) from None
    sys.stdout.write((report.to_json() if fmt == "json" else str(report)) + "\n")
    if plot_file and report.frame is not None and report.prediction:
        from toposcan import plot

        mine = {"mem_gb": report.prediction["mem_gb"], "step_time_s": report.prediction["step_time_s"],
                "label": "this launch"}
        plot.save(plot.pareto(report.frame, highlight=mine), plot_file)
        _stderr(f"plot: {plot_file}")
    raise typer.Exit(report.exit_code(strict))


@app.command("calibrate")
def calibrate_cmd(
    runs: Annotated[str, typer.Argument(help="Measured runs: a .csv, .parquet or .json table, one run per row, "
                                              "columns named like evaluate's options plus step_time_s, "
                                              "tokens_per_s_per_gpu or tflops_per_gpu (and optionally mem_gb).")],
    base: Annotated[StrOpt, Opt(help="Catalog profile to start from (default: the one for the runs' GPU).")] = None,
    name: Annotated[str, Opt(help="Name of the new profile.")] = "calibrated",
    free: Annotated[StrOpt, Opt(help="Time constants the fit may move, comma-separated (default: all).")] = None,
    output: Annotated[StrOpt, Opt("--output", "-o", help="Write the profile to FILE.toml, for --profile FILE.toml.")] = None,
    loo: Annotated[str, Opt("--loo", help="Leave-one-out error: approx (from leverages, fast) or exact (a refit per run).")] = "approx",
    fmt: Annotated[str, Opt("--format", "-f", help="text or json.")] = "text",
) -> None:
    """Fit a profile's constants to your own measured runs; use it everywhere with --profile FILE.toml."""
    spec.choice("format", fmt, ("text", "json"))
    if output is not None and not output.endswith(".toml"):
        raise InputError(f"`output` must end in .toml (as --profile expects), got `{spec._show(output)}`",
                         code="invalid_value")
    free_l = [f.strip() for f in free.split(",") if f.strip()] if free is not None else None
    cal = toposcan.calibrate(runs, base=base, name=name, free=free_l, loo=loo)
    if output:
        cal.save(output)
        _stderr(f"wrote {output}; use it with --profile {output}")
    if fmt == "json":
        for w in cal.warnings:  # the text report prints them; JSON keeps stdout a document
            _stderr(f"warning: {w}")
        sys.stdout.write(json.dumps(render.json_safe(cal.to_dict()), default=str, allow_nan=False) + "\n")
    else:
        sys.stdout.write(str(cal) + "\n\n")
        render.write(cal.runs, "table", None, columns=list(cal.runs.columns))


@app.command("validate")
def validate_cmd(
    table: Annotated[StrOpt, Opt("--table", "-t", help="seed001, seed001-all, seed001-mem, seed002, seed002-<table>, accounting or one of its tables (seed001-tflops, seed002-mfu, ...), our own H200 measurements: h200-steps, h200-mem, h200-gemm, h200-energy, h100-steps, h100-mem, h100-energy, a published table: narayanan2021, megatron-bridge, megatron-bridge-new (runs held out of the fit), or a cross-stack one: seed001-transfer, narayanan2021-transfer.")] = None,
    fmt: Annotated[str, Opt("--format", "-f", help="table, csv, json or markdown.")] = "table",
    summary_only: Annotated[bool, Opt("--summary", help="Only the per-table summary.")] = False,
    fit: Annotated[bool, Opt("--fit", help="Refit every profile on its rows and print the constants.")] = False,
    report: Annotated[bool, Opt("--report", help="Step-time fidelity per source and framework: MAPE, max, signed bias, Spearman, joint refit and leave-one-group-out refits.")] = False,
    by: Annotated[StrOpt, Opt("--by", help="With --report: comma-separated groups, of source, table, framework, profile, gpu, family.")] = None,
) -> None:
    """Measured (seed tables) beside predicted, with the error, and a summary per table."""
    from toposcan import validate as v

    if fit:
        results = v.refit()
        for name, r in results.items():
            consts = ", ".join(f"{k} {r['profile'][k]:.4g}" for k in v.TIME_KEYS)
            sys.stdout.write(f"{name}: {consts}; MAPE {r['mape']:.2f}%, max {r['max_error']:.2f}%, "
                             f"leave-one-out MAPE {r['loo_mape']:.2f}%\n")
            if "memory" in r:
                sys.stdout.write(f"{name}: memory_overhead_gib {r['memory']['memory_overhead_gib']:.3g}, "
                                 f"fragmentation {r['memory']['fragmentation']:.3g}\n")
        return
    spec.choice("format", fmt, ("table", "csv", "json", "markdown"))
    if report:
        rep = v.report(by=tuple(b.strip() for b in by.split(",")) if by else ("source", "framework"))
        render.write(rep, fmt, None, columns=list(rep.columns))
        return
    rows, summary = v.validate(table)
    sum_cols = ["table", "rows", "mape", "max_error", "spearman", "min_spearman_within"]
    if fmt == "json":  # one document for machines
        doc = {"rows": rows.to_dicts() if not summary_only else [], "summary": summary.to_dicts()}
        sys.stdout.write(json.dumps(render.json_safe(doc), default=str, allow_nan=False) + "\n")
        return
    if fmt == "csv":  # one table per stream: the rows, or the summary with --summary (and on stderr)
        if summary_only:
            render.write(summary, "csv", None)
        else:
            render.write(rows, "csv", None)
            _stderr(render.text_table(summary, sum_cols))
        return
    if not summary_only:
        cols = ["table", "group", "line", "config", "unit", "measured", "predicted", "error_pct"]
        render.write(rows, fmt, None, columns=cols)
        sys.stdout.write("\n")
    render.write(summary, fmt, None, columns=sum_cols)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `topo`: runs the app and turns every error into one line and an exit code."""
    try:
        rc = app(args=argv, standalone_mode=False)
        return rc if isinstance(rc, int) else 0
    except ToposcanError as e:
        sys.stderr.write(f"error: {e.message}\n")
        if e.hint:
            sys.stderr.write(f"\nhint: {e.hint}\n")
        return 2
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except typer.Abort:
        sys.stderr.write("error: interrupted\n")
        return 130
    except TyperException as e:  # usage errors: unknown option, bad value, missing argument
        if type(e).__name__ == "NoArgsIsHelpError":  # `topo` alone: the help, as click prints it
            sys.stderr.write(f"{e.format_message()}\n")
            return 2
        sys.stderr.write(f"error: {e.format_message()}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 - the CLI never shows a traceback
        sys.stderr.write(f"error: internal error ({type(e).__name__}: {e})\n\nhint: please report this input\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """Console-script entry: exit with :func:`main`'s code."""
    sys.exit(main())
