"""One resolution path: (model, gpu, framework / profile, precision, defaults) -> what the core scores.

``evaluate``, ``enumerate``, ``check``, ``calibrate`` and ``validate`` all resolve their inputs here,
so the same question gets the same model, profile and defaults in every command, and
:meth:`Resolved.describe` says what was resolved and what was filled in by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toposcan import catalog, spec, uncertainty
from toposcan.errors import InputError, show

#: Training stacks, each a set of kernels, overlaps and memory layout (profiles.toml `framework`).
FRAMEWORKS = ("megatron-core", "megatron-lm", "megatron-deepspeed", "deepspeed", "torchtitan", "llm-foundry",
              "pytorch")

#: Single-configuration defaults, the same in ``evaluate``, ``check`` (where the launch file is
#: silent) and the CLI. Selective recompute and sequence parallelism (with tp > 1) are what
#: Megatron-Core's and NeMo's recipes run, and what ``enumerate`` ranks first on every catalog model.
DEFAULTS: dict[str, Any] = {
    "tp": 1, "pp": 1, "vpp": 1, "cp": 1, "ep": 1, "mbs": 1, "gbs": spec.DEFAULT_GBS, "zero_stage": 1,
    "recompute": "selective", "precision": "bf16", "uneven_stages": True,
    # Training mode (issue 16). `schedule` has no fixed default: what vpp implies (see :func:`mode`).
    "task": "pretrain", "lora_rank": 16, "offload": "none", "fsdp_shard": 0, "etp": 0, "cp_comm": "ring",
    "fp8_recipe": "delayed",
}

#: The training-mode knobs, asked rather than searched: the same names in the API, on the command
#: line (``--lora-rank``) and in the core's strategy and space dicts.
KNOBS = ("task", "lora_rank", "offload", "fsdp_shard", "etp", "schedule", "cp_comm", "fp8_recipe")
TASKS = ("pretrain", "sft", "lora")
OFFLOADS = ("none", "optimizer", "optimizer+params")
SCHEDULES = ("1f1b", "interleaved", "zero-bubble", "dualpipe")
CP_COMMS = ("ring", "ulysses")
FP8_RECIPES = ("delayed", "current", "blockwise")
#: Other spellings people write, by knob: Megatron's `--cp-comm-type` p2p / a2a; torchao's and
#: Megatron's `tensorwise` is a per-tensor scale from the tensor itself, i.e. current scaling.
ALIASES: dict[str, dict[str, str]] = {
    "cp_comm": {"p2p": "ring", "a2a": "ulysses", "all-to-all": "ulysses", "alltoall": "ulysses"},
    "fp8_recipe": {"tensorwise": "current"},
    "schedule": {"zb": "zero-bubble", "zero_bubble": "zero-bubble", "zbh1": "zero-bubble"},
}
_CHOICES = {"task": TASKS, "offload": OFFLOADS, "schedule": SCHEDULES, "cp_comm": CP_COMMS,
            "fp8_recipe": FP8_RECIPES}


def knob(name: str, value: Any) -> str:
    """A string knob in its canonical spelling (aliases of :data:`ALIASES` accepted), or a one-line
    InputError naming ``name`` and what is allowed."""
    if isinstance(value, str):
        text, alias = value.strip().lower(), ALIASES.get(name, {})
        value = alias.get(text, text)
    allowed = _CHOICES[name]
    if not isinstance(value, str) or value not in allowed:
        extra = sorted(ALIASES.get(name, {}))
        raise InputError(f"`{name}` must be one of {{{', '.join(allowed)}}}"
                         + (f" (or {', '.join(extra)})" if extra else "") + f", got {show(value, quote=True)}",
                         code="invalid_value")
    return value


def mode(given: dict[str, Any], *, precision: str, vpp: list[int], dp: int | None = None,
         space: bool = False) -> dict[str, Any]:
    """The training-mode keys of the core's strategy (or space) dict from the values given (None or
    absent: the default), checked against each other. ``vpp`` is the interleaving degree (a list of
    one for a single configuration, the searched list for an enumeration); ``dp`` the data-parallel
    size where known, which an ``fsdp_shard`` must divide. In a ``space`` the schedule is ``"auto"``
    when not given: each row's follows its vpp (the core reads it so)."""
    def get(key: str) -> Any:
        v = given.get(key)
        return None if v is None or (isinstance(v, str) and not v.strip()) else v

    task = knob("task", get("task") if get("task") is not None else DEFAULTS["task"])
    rank = get("lora_rank")
    if rank is not None and task != "lora":
        raise InputError(f"`lora_rank` is only used with `task` lora, got task {task}", code="invalid_value",
                         hint="add --task lora, or drop --lora-rank")
    rank = spec.positive_int("lora_rank", DEFAULTS["lora_rank"] if rank is None else rank, maximum=1 << 16)
    offload = knob("offload", get("offload") if get("offload") is not None else DEFAULTS["offload"])
    shard = get("fsdp_shard")
    shard = spec.positive_int("fsdp_shard", DEFAULTS["fsdp_shard"] if shard is None else shard, minimum=0,
                              maximum=1 << 24)
    if dp is not None and shard and dp % shard:
        raise InputError(f"`fsdp_shard` {shard} must divide dp {dp} (shard within groups of fsdp_shard ranks, "
                         "replicate across dp / fsdp_shard)", code="invalid_value")
    etp = get("etp")
    etp = spec.positive_int("etp", DEFAULTS["etp"] if etp is None else etp, minimum=0, maximum=1 << 12)
    cp_comm = knob("cp_comm", get("cp_comm") if get("cp_comm") is not None else DEFAULTS["cp_comm"])
    recipe = get("fp8_recipe")
    if recipe is not None:
        recipe = knob("fp8_recipe", recipe)
        if precision != "fp8":
            raise InputError(f"`fp8_recipe` {recipe} needs `precision` fp8, got precision {precision}",
                             code="invalid_value", hint="add --precision fp8, or drop --fp8-recipe")
    sched = get("schedule")
    if sched is None:
        sched = "auto" if space else "interleaved" if max(vpp) > 1 else "1f1b"
    else:
        sched = knob("schedule", sched)
        if sched == "interleaved" and max(vpp) < 2:
            raise InputError(f"`schedule` interleaved needs `vpp` 2 or more, got vpp {max(vpp)}",
                             code="invalid_value")
        if sched != "interleaved" and max(vpp) > 1:
            raise InputError(f"`schedule` {sched} needs `vpp` 1, got vpp {max(vpp)}", code="invalid_value",
                             hint="interleaving (vpp > 1) is --schedule interleaved")
    return {"task": task, "lora_rank": rank, "offload": offload, "fsdp_shard": shard, "etp": etp,
            "schedule": sched, "cp_comm": cp_comm, "fp8_recipe": recipe or DEFAULTS["fp8_recipe"]}


def vpp_for_schedule(schedule: Any, vpp: list[int] | None, default: list[int]) -> list[int]:
    """The interleaving degrees an enumeration searches under a given ``schedule``: interleaved ->
    the degrees above 1 (of ``vpp`` if given, else 2 and 4), the others -> 1; no schedule -> ``vpp``
    (or ``default``), each row's schedule then following its own vpp."""
    if schedule is None or (isinstance(schedule, str) and not schedule.strip()):
        return vpp if vpp is not None else default
    sched = knob("schedule", schedule)
    if sched == "interleaved":
        out = [v for v in vpp if v > 1] if vpp is not None else [2, 4]
        if not out:
            raise InputError(f"`schedule` interleaved needs `vpp` 2 or more, got vpp {', '.join(map(str, vpp or []))}",
                             code="invalid_value")
        return out
    if vpp is not None and 1 not in vpp:
        raise InputError(f"`schedule` {sched} needs `vpp` 1, got vpp {', '.join(map(str, vpp))}", code="invalid_value")
    return [1]


@dataclass
class Resolved:
    """The inputs of one question as the core takes them, and where each came from."""

    model: dict[str, Any]
    label: str
    cluster: dict[str, Any]
    gpu: str
    profile: dict[str, Any]
    profile_entry: dict[str, Any]
    profile_name: str
    framework: str
    #: How the profile was chosen ("given", "the framework's for <gpu>", "the gpu's default", ...).
    profile_reason: str
    #: Human notes on values filled in by default (model, strategy fields).
    defaulted: list[str] = field(default_factory=list)

    @property
    def gpus(self) -> int:
        return int(self.cluster["nodes"] * self.cluster["gpus_per_node"])

    def describe(self, kind: str, network_given: bool = False) -> str:
        """The one-line header every command prints: what was resolved, and what was defaulted."""
        net = self.cluster["inter_node_bw"] / 1e9
        parts = [f"{kind}: model `{self.label}`", f"gpu `{self.gpu}` x {self.gpus} ({self.cluster['nodes']} nodes)",
                 f"framework `{self.framework}` (profile `{self.profile_name}`, {self.profile_reason})",
                 f"{net:g} GB/s network per GPU" + ("" if network_given else " (the catalog's; --inter-node-gbs)")]
        line = ", ".join(parts)
        if self.defaulted:
            line += "; defaulted: " + ", ".join(self.defaulted)
        return line


def framework_profile(framework: str | None, profile: str | None, gpu: str, precision: str | None = None
                      ) -> tuple[str, str]:
    """The profile to score with, and why: a named profile wins (and must belong to ``framework``
    when both are given); else the framework's profile fitted on this GPU, or on the closest one;
    else the GPU's default. An fp8 run uses the profile's ``-fp8`` sibling where one was fitted."""
    if framework is not None:
        framework = spec.choice("framework", framework, FRAMEWORKS)
    if profile is not None and not (isinstance(profile, str) and not profile):
        entry = catalog.profile_spec(profile)
        if framework is not None and entry.get("framework") != framework:
            raise InputError(f"`profile` `{show(profile)}` is a `{entry.get('framework')}` profile, not `{framework}`",
                             code="invalid_value", hint="give one of them, or a profile of that framework (`topo profiles`)")
        return str(profile), "given"
    if framework is None:
        name, why = spec.default_profile(gpu), "the gpu's default"
    else:
        own = [n for n in catalog.profile_names() if catalog.profile_spec(n).get("framework") == framework]
        if not own:
            have = sorted({str(catalog.profile_spec(n).get("framework")) for n in catalog.profile_names()})
            raise InputError(f"`framework` `{framework}` has no fitted profile yet; one of: {', '.join(have)}",
                             code="invalid_value")
        def gpus_of(n: str) -> list[str]:
            e = catalog.profile_spec(n)
            return [*e.get("default_for", []), *e.get("hardware", [])]

        fitted_here = [n for n in own if gpu in gpus_of(n)]
        family = [n for n in own if uncertainty.gpu_family(gpu) in {uncertainty.gpu_family(g) for g in gpus_of(n)}]
        name = (fitted_here or family or own)[0]
        why = (f"the framework's for `{gpu}`" if fitted_here else
               f"the framework's for {uncertainty.gpu_family(gpu)} GPUs" if family else "the framework's only fit, on other hardware")
    if precision == "fp8" and f"{name}-fp8" in catalog.profile_names():
        return f"{name}-fp8", why + ", its fp8 fit"
    return name, why


def resolve(model: str | None, *, gpu: Any, nodes: Any, gpus_per_node: Any = None,
            links: tuple[Any, ...] = (None, None), profile: str | None = None, framework: str | None = None,
            precision: str | None = None, fields: dict[str, Any] | None = None) -> Resolved:
    """Resolve the model (a catalog name or a config.json), cluster and profile of one question.
    ``links`` is (intra_node_gbs, inter_node_gbs[, nvlink_domain]) overrides."""
    if not isinstance(gpu, str):
        raise InputError(f"`gpu` must be a catalog name, got {show(gpu, quote=True)}", code="invalid_value",
                         hint="`topo gpus` lists them")
    model_d, label = spec.model_dict(model, fields or {})
    cluster_d = spec.cluster_dict(gpu, nodes, gpus_per_node, *links)
    name, why = framework_profile(framework, profile, gpu, precision)
    prof_d, prof_entry = spec.profile_dict(name, gpu)
    defaulted = []
    if model is None and label == spec.DEFAULT_MODEL:
        defaulted.append(f"model {label} (seeds/001's 48-node study)")
    if catalog.is_model_file(model):
        ignored = catalog.model_file(model)[1]
        if ignored:
            defaulted.append(f"config.json keys not understood and not costed: {', '.join(ignored[:12])}"
                             + (" ..." if len(ignored) > 12 else ""))
    return Resolved(model_d, label, cluster_d, gpu, prof_d, prof_entry, name, str(prof_entry.get("framework")), why,
                    defaulted)


def strategy(r: Resolved, given: dict[str, Any]) -> dict[str, Any]:
    """The core's strategy dict for one configuration: the values given, and :data:`DEFAULTS` for the
    rest (recorded in ``r.defaulted``). ``dp`` defaults to GPUs / (tp*pp*cp); sequence parallelism
    to on when tp > 1; flash attention to the framework's; the training-mode :data:`KNOBS` as
    :func:`mode` checks them (the schedule to what vpp implies)."""
    def pick(key: str) -> Any:
        v = given.get(key)
        if v is None:
            v = DEFAULTS[key]
            if key in ("recompute", "zero_stage", "gbs", "mbs"):
                r.defaulted.append(f"{key.replace('_', ' ')} {v}")
        return v

    tp = spec.positive_int("tp", pick("tp"), maximum=1 << 12)
    pp = spec.positive_int("pp", pick("pp"), maximum=1 << 16)
    cp = spec.positive_int("cp", pick("cp"), maximum=1 << 12)
    gpus = r.gpus
    if given.get("dp") is None:
        if gpus % (tp * pp * cp):
            raise InputError(f"tp*pp*cp = {tp * pp * cp} does not divide the cluster's {gpus} GPUs; give `dp`",
                             code="gpus_mismatch")
        dp = gpus // (tp * pp * cp)
    else:
        dp = spec.positive_int("dp", given["dp"], maximum=1 << 24)
    sp_given = given.get("sequence_parallel")
    if sp_given is None:
        sp = tp > 1
        r.defaulted.append(f"sequence parallel {'on' if sp else 'off'} (tp {tp})")
    else:
        sp = spec.boolean("sequence_parallel", sp_given)
    flash = given.get("flash_attention")
    vpp = spec.positive_int("vpp", pick("vpp"), maximum=1 << 10)
    precision = spec.choice("precision", pick("precision"), spec.PRECISIONS)
    return {
        "dp": dp, "tp": tp, "pp": pp, "cp": cp,
        "vpp": vpp,
        "ep": spec.positive_int("ep", pick("ep"), maximum=1 << 16),
        "mbs": spec.positive_int("mbs", pick("mbs"), maximum=1 << 20),
        "gbs": spec.positive_int("gbs", pick("gbs"), maximum=spec.MAX_INT),
        "zero_stage": spec.positive_int("zero_stage", pick("zero_stage"), minimum=0, maximum=3),
        "recompute": spec.choice("recompute", pick("recompute"), spec.RECOMPUTE),
        "sequence_parallel": sp,
        "precision": precision,
        "flash_attention": spec.boolean("flash_attention",
                                        r.profile_entry["flash_attention"] if flash is None else flash),
        "uneven_stages": spec.boolean("uneven_stages", pick("uneven_stages")),
        **mode(given, precision=precision, vpp=[vpp], dp=dp),
        **framework_settings(r.profile_entry),
    }


def framework_settings(prof_entry: dict[str, Any]) -> dict[str, Any]:
    """The profile's framework settings the core takes with each strategy (or space)."""
    return {"vocab_multiple": int(prof_entry["vocab_multiple"]), "fused_kernels": bool(prof_entry["fused_kernels"]),
            # ZeRO-2/3 under pp, interleaving at pp 2, uneven chunks: Megatron-Core and torchtitan run
            # them; DeepSpeed's pipeline engine and 2021 Megatron-LM do not.
            "flexible_pipeline": prof_entry.get("framework") not in ("megatron-deepspeed", "deepspeed", "megatron-lm")}


def default_vpp(prof_entry: dict[str, Any]) -> list[int]:
    """Interleaving degrees to search when none are given: Megatron's schedules interleave
    (``--num-layers-per-virtual-pipeline-stage``), the other frameworks' do not."""
    return [1, 2, 4] if prof_entry.get("framework") in ("megatron-lm", "megatron-core") else [1]
