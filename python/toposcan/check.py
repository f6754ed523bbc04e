"""``topo check``: the pre-launch sanity gate.

Reads the launch config about to run (a Megatron-LM / Megatron-DeepSpeed script or argument list,
a DeepSpeed JSON, an llm-foundry YAML), scores it with the same code as :func:`toposcan.evaluate`,
and answers with a list of checks, each ``pass``, ``warn`` or ``fail`` with one line of reason and
the fix. Exit codes (as ruff does): 0 pass (warnings allowed), 1 a check failed, 2 usage or parse
error, 3 with ``strict`` when a warning fired.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toposcan import api, catalog, launch, render, resolve, spec, uncertainty
from toposcan.errors import InputError, ParseError, ToposcanError
from toposcan.rules import WARNING_HELP, explain_warnings

#: What to change for each hard rule.
FIX = {
    "gpus_mismatch": "make dp*tp*pp*cp equal the GPU count (nodes x gpus per node)",
    "tp_exceeds_node": "keep tp within a node (tp <= gpus per node)",
    "hidden_not_divisible_by_heads": "pick heads dividing hidden",
    "heads_not_divisible_by_tp": "pick tp dividing the head count",
    "kv_heads_not_divisible_by_tp": "pick tp dividing the query groups (kv heads)",
    "ffn_not_divisible_by_tp": "pick tp dividing the FFN size",
    "too_few_layers_for_pp": "use fewer pipeline stages than layers",
    "layers_not_divisible_by_pp": "pick pp dividing layers (or a framework that balances uneven stages)",
    "layers_not_divisible_by_pp_vpp": "pick pp*vpp dividing layers",
    "vpp_needs_pp": "interleaving needs pp > 2",
    "micro_batches_not_divisible_by_pp": "make gbs/(mbs*dp) a multiple of pp for the interleaved schedule",
    "gbs_not_divisible_by_mbs_dp": "make gbs a multiple of mbs*dp",
    "sequence_parallel_needs_tp": "drop --sequence-parallel or use tp > 1",
    "seq_not_divisible_by_cp": "make seq_len a multiple of 2*cp",
    "experts_not_divisible_by_ep": "pick ep dividing the expert count",
    "ep_needs_experts": "expert parallelism needs an MoE model",
    "ep_not_divisor_of_dp": "pick ep dividing dp*cp",
    "fp8_unsupported": "use bf16 on this GPU",
    "zero_stage_with_pipeline": "use ZeRO stage 0 or 1 with pipeline parallelism, or pp 1 with ZeRO-2/3",
    "oom": "raise tp or pp, lower mbs, use a higher ZeRO stage or recompute more",
    "fsdp_shard_not_divisor_of_dp": "make dp a multiple of the number of distributed-optimizer instances (replicas)",
}

STATUSES = ("pass", "warn", "fail")


@dataclass
class Check:
    """One check: ``code`` (stable slug), ``status`` and one line each of reason and fix."""

    code: str
    status: str
    message: str
    fix: str = ""


@dataclass
class CheckReport:
    """The answer of :func:`check`; ``exit_code()`` is what ``topo check`` exits with."""

    source: str
    kind: str
    config: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    prediction: dict[str, Any] = field(default_factory=dict)
    best: dict[str, Any] | None = None
    rank: int | None = None
    candidates: int | None = None
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The compared topologies (for `--plot`); not part of to_dict / to_json.
    frame: Any = field(default=None, repr=False, compare=False)

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    @property
    def warned(self) -> bool:
        return any(c.status == "warn" for c in self.checks)

    def exit_code(self, strict: bool = False) -> int:
        if self.failed:
            return 1
        if strict and self.warned:
            return 3
        return 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("frame", None)
        d["verdict"] = "fail" if self.failed else ("warn" if self.warned else "pass")
        return d

    def to_json(self) -> str:
        return json.dumps(render.json_safe(self.to_dict()), indent=2, default=_json_default, allow_nan=False)

    def _repr_markdown_(self) -> str:
        """The report as a Markdown table (Jupyter shows it)."""
        verdict = "FAIL" if self.failed else ("pass with warnings" if self.warned else "pass")
        cell = lambda t: (t or "").replace("|", "\\|")  # noqa: E731
        rows = "\n".join(f"| {ch.status} | `{ch.code}` | {cell(ch.message)} | {cell(ch.fix) if ch.status != 'pass' else ''} |"
                         for ch in self.checks)
        text = str(self).splitlines()
        pred = "\n".join(f"- {ln}" for ln in text if ln.startswith(("predicted", "  spent on")))
        return (f"**{self.source}** ({self.kind}): **{verdict}**\n\n| status | check | reason | fix |\n|---|---|---|---|\n"
                f"{rows}\n\n{pred}\n")

    def __str__(self) -> str:
        c = self.config
        mode = render.mode_line(c)
        lines = [f"{self.source} ({self.kind}): {c.get('nodes')} nodes x {c.get('gpus_per_node')} {c.get('gpu')}, "
                 f"dp {c.get('dp')} tp {c.get('tp')} pp {c.get('pp')}"
                 + (f" vpp {c['vpp']}" if c.get("vpp", 1) > 1 else "")
                 + f", mbs {c.get('mbs')} gbs {c.get('gbs')}, zero {c.get('zero_stage')}, recompute {c.get('recompute')}"
                 + (f"; {mode}" if mode else "")]
        for ch in self.checks:
            mark = {"pass": "pass", "warn": "WARN", "fail": "FAIL"}[ch.status]
            lines.append(f"  {mark}  {ch.code}: {ch.message}" + (f"\n        fix: {ch.fix}" if ch.fix and ch.status != "pass" else ""))
        p = self.prediction
        if p and p.get("step_time_s") is None:  # a broken rule: nothing to time
            lines.append(f"predicted: no step time (breaks a hard rule); peak {p['mem_gb']:.1f} GiB (stage {p['mem_stage']})")
        elif p:
            lines.append(f"predicted: {p['step_time_s']:.2f} s/step, {p['tflops_per_gpu']:.1f} TFLOP/s per GPU, "
                         f"MFU {p['mfu']:.1%}, {p['tokens_per_s_per_gpu']:,.0f} tokens/s/GPU, peak {p['mem_gb']:.1f} GiB "
                         f"(stage {p['mem_stage']}); {p['train_days']:.1f} days for {p['train_tokens']:.3g} tokens")
            if p.get("time_breakdown_s"):
                lines.append(f"  spent on: {render.breakdown(p['time_breakdown_s'])}")
        if self.ignored:
            lines.append(f"ignored ({len(self.ignored)}): " + ", ".join(self.ignored[:12])
                         + (" ..." if len(self.ignored) > 12 else ""))
        for n in self.notes:
            lines.append(f"note: {n}")
        verdict = "FAIL" if self.failed else ("pass with warnings" if self.warned else "pass")
        lines.append(f"verdict: {verdict}")
        return "\n".join(lines)


def _json_default(o: Any) -> Any:
    return str(o)  # non-finite floats are already None (render.json_safe)


def _num(x: Any) -> Any:
    return x.item() if hasattr(x, "item") else x


def check(
    source: str | Path | None = None,
    *,
    args: str | None = None,
    text: str | None = None,
    nodes: int | None = None,
    gpu: str | None = None,
    gpus_per_node: int | None = None,
    intra_node_gbs: float | None = None,
    inter_node_gbs: float | None = None,
    nvlink_domain: int | None = None,
    model: str | None = None,
    profile: str | None = None,
    framework: str | None = None,
    max_slowdown: float = 0.10,
    train_tokens: float | None = None,
    headroom: float = 0.0,
    compare: bool = True,
    task: str | None = None,
    lora_rank: int | None = None,
    offload: str | None = None,
    fsdp_shard: int | None = None,
    etp: int | None = None,
    schedule: str | None = None,
    cp_comm: str | None = None,
    fp8_recipe: str | None = None,
) -> CheckReport:
    """Check a launch config before it runs.

    ``source`` is a path (its kind told from its content), ``text`` the same content given directly,
    ``args`` a plain Megatron argument list. The cluster comes from ``nodes``, ``gpu`` and
    ``gpus_per_node`` or from the launcher's own variables in the file. ``model`` fills model
    fields the file leaves out (e.g. the vocabulary) from a catalog model. The training-mode
    keywords (``task``, ``lora_rank``, ``offload``, ``fsdp_shard``, ``etp``, ``schedule``,
    ``cp_comm``, ``fp8_recipe``; see :func:`toposcan.evaluate`) override what the file says.

    >>> r = check(args="--num-layers 24 --hidden-size 2048 --num-attention-heads 16 --seq-length 2048 "
    ...           "--micro-batch-size 4 --global-batch-size 256 --bf16 --tensor-model-parallel-size 2",
    ...           nodes=1, gpu="a100-80", compare=False)
    >>> r.exit_code(), r.config["dp"]
    (0, 4)
    """
    if sum(x is not None for x in (source, args, text)) != 1:
        raise InputError("give exactly one of a file, `--args` or text", code="usage")
    if args is not None:
        cfg = launch.parse_args(args)
        label = "--args"
    else:
        if source is not None:
            path = Path(source)
            # Bounded, and regular files only: /dev/zero or a FIFO fail before a byte is read.
            text = launch.read_launch_file(path)
            cfg = launch.parse_launch(text, str(path), base_dir=str(path.parent))
            label = str(source)
        else:
            assert text is not None
            cfg = launch.parse_launch(text, None)
            label = "<text>"
    return _check_config(cfg, label, nodes=nodes, gpu=gpu, gpus_per_node=gpus_per_node,
                         links={"intra_node_gbs": intra_node_gbs, "inter_node_gbs": inter_node_gbs,
                                "nvlink_domain": nvlink_domain}, model=model,
                         profile=profile, framework=framework, max_slowdown=max_slowdown,
                         train_tokens=train_tokens, headroom=headroom, compare=compare,
                         knobs=dict(task=task, lora_rank=lora_rank, offload=offload, fsdp_shard=fsdp_shard, etp=etp,
                                    schedule=schedule, cp_comm=cp_comm, fp8_recipe=fp8_recipe))


def _stack_framework(cfg: launch.LaunchConfig) -> str | None:
    """The framework a launch file runs: Megatron scripts say which fork (the parser records it),
    NeMo 2 and Megatron-Bridge recipes run Megatron-Core, llm-foundry YAMLs are Composer; a DeepSpeed
    JSON alone does not say (the GPU's default then). None where no profile of it is fitted yet."""
    name = {"foundry": "llm-foundry"}.get(cfg.kind) or {"nemo-2": "megatron-core", "megatron-bridge": "megatron-core"
                                                       }.get(cfg.framework, cfg.framework) or None
    fitted = {catalog.profile_spec(n).get("framework") for n in catalog.profile_names()}
    return name if name in fitted else None


def _check_config(cfg: launch.LaunchConfig, label: str, *, nodes: Any, gpu: Any, gpus_per_node: Any,
                  links: dict[str, Any], model: Any, profile: Any, framework: Any, max_slowdown: Any,
                  train_tokens: Any, headroom: Any, compare: bool, knobs: dict[str, Any] | None = None
                  ) -> CheckReport:
    sp = dict(cfg.spec)
    notes = list(cfg.notes)
    for k, v in (knobs or {}).items():  # given on the command line: they override the file
        if v is None:
            continue
        if k in sp and str(sp[k]) != str(v):
            notes.append(f"{k} {v} given; the file says {sp[k]}")
        sp[k] = v
        if k == "fsdp_shard":  # replaces the file's replica count too
            sp.pop("fsdp_replicas", None)
    if (knobs or {}).get("task") not in (None, "lora") and (knobs or {}).get("lora_rank") is None:
        sp.pop("lora_rank", None)  # the file's adapter rank goes with the file's task
    if gpu is None or (isinstance(gpu, str) and not gpu):
        gpu = cfg.cluster.get("gpu")
    else:  # the file's guesses at the GPU do not matter once it is given
        notes = [n for n in notes if "pass --gpu" not in n]
    if gpu is None:
        raise InputError("the GPU is not in the file; give `--gpu` (see `topo gpus`)", code="missing_field")
    gpu_entry = catalog.gpu_spec(gpu)
    gpn = gpus_per_node if gpus_per_node is not None else cfg.cluster.get("gpus_per_node", gpu_entry["gpus_per_node"])
    nodes = nodes if nodes is not None else cfg.cluster.get("nodes")
    if nodes is None and cfg.world_size and cfg.world_size % spec.positive_int("gpus_per_node", gpn) == 0:
        nodes = cfg.world_size // int(gpn)  # a log states the total only
        notes.append(f"nodes {nodes} from the file's world size {cfg.world_size} / {gpn} GPUs per node")
    if nodes is None:
        raise InputError("the node count is not in the file; give `--nodes`", code="missing_field")
    max_slowdown = spec.positive_float("max_slowdown", max_slowdown, minimum=0.0, maximum=10.0, inclusive_min=True)

    fields = {k: sp.pop(k) for k in list(sp) if k in spec.MODEL_FIELDS}
    mismatched: list[str] = []
    if model is None and cfg.model is not None:
        model = cfg.model
        notes.append(f"model `{model}` named by the file (its recipe or flavor); --model to change")
    if model is not None:
        fields, mismatched = _architecture(model, fields, set(getattr(cfg, "defaulted", ())), notes)
    if model is None and not all(k in fields for k in ("layers", "hidden", "heads")):
        raise InputError("the file does not give layers, hidden size and heads; give `--model`", code="missing_field")
    if model is None and "vocab" not in fields:
        fields["vocab"] = 50257
        notes.append("vocab not in the file: 50257 (GPT-2) assumed; give --model to use a catalog model's")
    rampup = sp.pop("rampup", None)
    # Megatron's --num-distributed-optimizer-instances, torchtitan's replicate degree: the shard
    # group is dp / replicas, known once dp is.
    replicas = sp.pop("fsdp_replicas", None)
    named = profile is not None and not (isinstance(profile, str) and not profile)
    if framework is None and not named:
        framework = _stack_framework(cfg)
    prof_name, why = resolve.framework_profile(framework, profile if named else None, gpu, sp.get("precision"))
    notes.append(f"framework `{catalog.profile_spec(prof_name).get('framework')}`: profile `{prof_name}` ({why})")
    if cfg.kind == "megatron" and sp.get("precision") == "bf16" and sp.get("zero_stage", 0) == 0 and sp.get("uneven_stages"):
        # Megatron-DeepSpeed with --bf16 and ZeRO stage 0 runs DeepSpeed's BF16_Optimizer, which
        # partitions the fp32 master weights and Adam states over data parallelism like ZeRO-1
        # (deepspeed/runtime/bf16_optimizer.py).
        sp["zero_stage"] = 1
        notes.append("ZeRO stage 0 with bf16 in Megatron-DeepSpeed runs DeepSpeed's BF16_Optimizer, which shards "
                     "optimizer states over dp like ZeRO-1: checked as zero_stage 1")
    train_tokens = spec.positive_float("train_tokens", train_tokens if train_tokens is not None else 1e12,
                                       maximum=1e18)
    kw: dict[str, Any] = dict(gpu=gpu, nodes=nodes, gpus_per_node=gpn, profile=prof_name, headroom=headroom,
                              train_tokens=train_tokens,
                              rampup=False, **{k: v for k, v in links.items() if v is not None}, **fields)
    for k in ("dp", "tp", "pp", "vpp", "cp", "ep", "mbs", "gbs", "zero_stage", "recompute", "sequence_parallel",
              "precision", "uneven_stages", *resolve.KNOBS):
        if k in sp:
            kw[k] = sp[k]
    if "gbs" not in kw:
        kw["gbs"] = None
    checks: list[Check] = []
    gpus = spec.positive_int("nodes", nodes) * spec.positive_int("gpus_per_node", gpn)
    tp, pp, cp = (int(kw.get(k, 1) or 1) for k in ("tp", "pp", "cp"))
    if "dp" not in kw:
        if gpus % (tp * pp * cp):
            checks.append(Check("gpus_mismatch", "fail",
                                f"tp*pp*cp = {tp * pp * cp} does not divide the cluster's {gpus} GPUs",
                                FIX["gpus_mismatch"]))
            return CheckReport(label, cfg.kind, {**kw, "dp": None}, checks, ignored=cfg.ignored, notes=notes)
        kw["dp"] = gpus // (tp * pp * cp)
    if replicas is not None and replicas > 1:
        dp = int(kw["dp"])
        if dp % replicas:
            checks.append(Check("fsdp_shard_not_divisor_of_dp", "fail",
                                f"{replicas} distributed-optimizer instances (replicas) do not divide dp {dp}",
                                FIX["fsdp_shard_not_divisor_of_dp"]))
            return CheckReport(label, cfg.kind, {**kw}, checks, ignored=cfg.ignored, notes=notes)
        kw["fsdp_shard"] = dp // replicas
        notes.append(f"fsdp_shard {kw['fsdp_shard']} = dp {dp} / {replicas} replicas (sharded within, replicated across)")
    if kw["gbs"] is None:
        kw["gbs"] = kw["dp"] * int(kw.get("mbs", 1))
        notes.append("global batch not in the file: one micro batch per replica assumed")
    try:
        row, stages = api.evaluate(model, **kw, stages=True)
    except InputError as e:
        if e.code not in FIX:
            raise
        # A model-shape rule the scorer cannot get past (e.g. hidden % heads): a failed check.
        checks.append(Check(e.code, "fail", e.message, FIX[e.code]))
        return CheckReport(label, cfg.kind, {**kw}, checks, ignored=cfg.ignored, notes=notes)
    r = {k: _num(v) for k, v in row.row(0, named=True).items()}
    config = {k: r[k] for k in ("nodes", "gpu", "dp", "tp", "pp", "vpp", "cp", "ep", "mbs", "gbs", "grad_accum",
                                "zero_stage", "recompute", "sequence_parallel", "precision", "layers", "hidden",
                                "heads", "kv_heads", "ffn_hidden", "seq_len", "params")}
    mode = resolve.mode(kw, precision=r["precision"], vpp=[int(r["vpp"])], dp=int(r["dp"]))  # as validated
    config.update({k: r.get(k, mode[k]) for k in resolve.KNOBS})
    config["gpus_per_node"] = int(gpn)
    config["profile"] = prof_name

    checks.extend(Check(**f) for f in cfg.findings)  # what the file alone shows (e.g. seq > max positions)
    if mismatched:
        checks.append(Check("model_mismatch", "warn", f"the file and `{model}` disagree: " + "; ".join(mismatched)
                            + f" (scored as `{model}`)",
                            "fix the launch arguments, or drop --model to score what the file describes"))
    # Hard rules (divisibility, kernels) and memory.
    reject = r["reject"]
    if reject and reject != "oom":
        checks.append(Check(reject, "fail", r["reject_message"], FIX.get(reject, "")))
    else:
        checks.append(Check("divisibility", "pass", "heads, query groups, layers per stage, batch and GPU count divide"))
    cap = float(gpu_entry["memory_gib"])
    usable = cap * (1 - float(headroom or 0))
    verdict, mem_lo, mem_hi = uncertainty.memory_check(r["mem_gb"], catalog.profile_spec(prof_name)["framework"],
                                                       gpu, usable)
    span = f"predicted peak {r['mem_gb']:.1f} GiB (80% interval {mem_lo:.1f}-{mem_hi:.1f}) on stage {r['mem_stage']}"
    of = f"the {cap:.0f} GiB of a {gpu}" + (f" minus {headroom:.0%} headroom" if headroom else "")
    # Three verdicts (fits / at risk / does not fit); the gate fails whenever the prediction itself is
    # over capacity (seeds/001's DP32 TP2 PP6 ran out of memory at a predicted 84.8 of 80 GiB, interval 78-90).
    if verdict == "does not fit" or r["mem_gb"] > usable:
        checks.append(Check("oom", "fail", f"{span} exceeds {of}: {verdict}", FIX["oom"]))
    elif verdict == "at risk":
        checks.append(Check("memory_at_risk", "warn", f"{span} crosses {of}: at risk", FIX["oom"]))
    else:
        checks.append(Check("memory", "pass", f"{span} fits {of}"))
    # Kernel and quantization rules (soft).
    for code in explain_warnings(int(r["warnings"])):
        checks.append(Check(code, "warn", _warning_message(code, r), WARNING_HELP.get(code, "")))
    # Batch ramp-up: every ramp-up batch must be a multiple of mbs*dp (seeds/001: dp % 4, gbs % 32).
    if rampup:
        unit = r["mbs"] * r["dp"]
        bad = [x for x in (rampup.get("start"), rampup.get("increment")) if x and x % unit]
        if bad or r["gbs"] % unit:
            checks.append(Check("rampup_incompatible", "fail",
                                f"ramp-up batch sizes {rampup.get('start')} + k*{rampup.get('increment')} are not all "
                                f"multiples of mbs*dp = {unit}",
                                "pick dp and mbs so that mbs*dp divides the ramp-up start and increment"))
        else:
            checks.append(Check("rampup", "pass", f"ramp-up {rampup.get('start')} + k*{rampup.get('increment')} "
                                f"is a multiple of mbs*dp = {unit}"))

    pred = {k: r[k] for k in ("step_time_s", "tflops_per_gpu", "mfu", "hfu", "tokens_per_s_per_gpu", "mem_gb",
                              "mem_stage", "gpu_hours", "train_days", "energy_j_per_token", "bubble_fraction")}
    pred["train_tokens"] = kw["train_tokens"]
    pred["time_breakdown_s"] = {col: r[col] for _, col in render.BREAKDOWN if col in r}
    pred["memory_by_stage_gb"] = [round(x, 2) for x in stages["total_gb"].to_list()]
    report = CheckReport(label, cfg.kind, config, checks, pred, ignored=cfg.ignored, notes=notes)
    if compare and not reject:
        _compare(report, model, kw, r, max_slowdown)
    return report


def _architecture(model: str, fields: dict[str, Any], defaulted: set[str], notes: list[str]
                  ) -> tuple[dict[str, Any], list[str]]:
    """With ``--model`` the catalog gives the architecture and the file the run: the file keeps its
    sequence length; an architecture field the file states and the catalog contradicts is returned
    as a finding; fields the parser only filled with the framework's defaults give way silently."""
    entry = catalog.model_spec(model)
    mismatched = [f"{k} {fields[k]} in the file, {entry[k]} in the catalog" for k in sorted(fields)
                  if k != "seq_len" and k in entry and k not in defaulted and fields[k] != entry[k]]
    kept = {k: v for k, v in fields.items() if k == "seq_len"}
    if any(k in defaulted for k in fields):
        notes.append(f"architecture from `{model}`; the file's framework defaults ("
                     + ", ".join(sorted(k for k in fields if k in defaulted)) + ") not used")
    return kept, mismatched


def _warning_message(code: str, r: dict[str, Any]) -> str:
    hd = r["hidden"] // r["heads"] if r["heads"] else 0
    if code == "head_dim_misaligned":
        return f"head_dim {r['hidden']}/{r['heads']} = {hd} is not a multiple of 8: attention GEMMs fall off tensor cores"
    if code == "tile_quantization":
        return (f"hidden/tp = {r['hidden'] // r['tp']} or ffn/tp = {r['ffn_hidden'] // r['tp']} is not a multiple of 128: "
                f"GEMM tiles waste the remainder (layer GEMMs at {r['gemm_efficiency']:.0%} of ideal)")
    if code == "wave_quantization":
        return f"layer GEMMs at {r['gemm_efficiency']:.0%} of ideal: the last wave leaves SMs idle"
    if code == "fused_softmax_unavailable":
        return (f"(heads/tp)*mbs = {r['heads'] // r['tp']}*{r['mbs']} is not a multiple of 4 (or the sequence is out of "
                "range): Megatron falls back to an unfused softmax")
    if code == "uneven_stages":
        return f"{r['layers']} layers over {r['pp']} stages are uneven: the largest stage sets the pace"
    return WARNING_HELP.get(code, code)


def _compare(report: CheckReport, model: Any, kw: dict[str, Any], r: dict[str, Any], max_slowdown: float) -> None:
    """Ranks the config among every valid topology (dp, tp, pp, micro batch) for the same model,
    cluster and global batch, keeping its ZeRO stage, recompute, sequence parallelism and precision:
    those are framework choices the launch config already made."""
    ekw = {k: v for k, v in kw.items() if k in spec.MODEL_FIELDS or k in (
        "gpu", "nodes", "gpus_per_node", "intra_node_gbs", "inter_node_gbs", "nvlink_domain", "profile", "headroom", "train_tokens",
        "precision", "uneven_stages", *resolve.KNOBS)}
    ekw.update(gbs=r["gbs"], zero_stage=r["zero_stage"], recompute=r["recompute"], cp=r["cp"], ep=r["ep"],
               sequence_parallel=r["sequence_parallel"], mbs=sorted({1, 2, 4, 8, int(r["mbs"])}))
    df, stats = api.enumerate(model, **ekw, with_stats=True, cap=2_000_000)
    report.candidates = df.height
    report.frame = df
    if df.height == 0:
        return
    t = r["step_time_s"]
    report.rank = int((df["step_time_s"] < t * (1 - 1e-9)).sum()) + 1
    b = {k: _num(v) for k, v in df.row(0, named=True).items()}
    keys = ("dp", "tp", "pp", "mbs")
    report.best = {k: b[k] for k in keys} | {"step_time_s": b["step_time_s"], "mem_gb": b["mem_gb"]}
    slowdown = t / b["step_time_s"] - 1
    change = ", ".join(f"{k} {r[k]} -> {b[k]}" for k in keys if r[k] != b[k])
    held = (f"dp, tp, pp and mbs searched; held as in the file: gbs {r['gbs']}, zero {r['zero_stage']}, "
            f"recompute {r['recompute']}, sequence parallel {'on' if r['sequence_parallel'] else 'off'}, "
            f"{r['precision']}, cp {r['cp']}, ep {r['ep']}"
            + (f", {mode}" if (mode := render.mode_line({**kw, **r})) else ""))
    msg = (f"rank {report.rank} of {df.height} valid topologies; the best is {b['step_time_s']:.2f} s/step "
           f"({slowdown:.1%} faster) ({held})" if slowdown > 1e-9
           else f"rank {report.rank} of {df.height}: no valid topology is faster ({held})")
    status = "warn" if slowdown > max_slowdown else "pass"
    report.checks.append(Check("slower_than_best", status, msg, f"change {change}" if change else ""))
