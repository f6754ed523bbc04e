"""The training-mode knobs of issue 16 (task, lora_rank, offload, fsdp_shard, etp, schedule, cp_comm,
fp8_recipe) on the Python side: validation, the core's strategy and space dicts, the API, the command
line, launch files, and the Megatron-Bridge runs they make askable.

The result columns these knobs add (``task``, ``offload``, ``schedule``, ``cp_comm``, ``fp8_recipe``,
``lora_rank``, ``fsdp_shard``, ``etp``, ``ep_comm_s``) come from the Rust core; what the knobs cost is
tested in rust/core/tests/modes.rs and tests/test_measured_modes.py.
"""

from pathlib import Path

import polars as pl
import pytest

import toposcan
from toposcan import _core, api, launch, resolve
from toposcan import validate as v
from toposcan.calibrate import core_inputs
from toposcan.cli import main
from toposcan.errors import InputError, ParseError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "launch"
CORE_COLUMNS = {c for c, _, _ in _core.column_info()}
KNOB_COLUMNS = {"task", "offload", "schedule", "cp_comm", "fp8_recipe", "lora_rank", "fsdp_shard", "etp", "ep_comm_s"}


def test_the_core_reports_every_knob() -> None:
    assert KNOB_COLUMNS <= CORE_COLUMNS

SMALL = dict(gpu="h100-80", nodes=2)  # llama-2-7b on 16 H100s: dp 16 at tp = pp = 1


def strategy(**kw):
    """The core's strategy dict for llama-2-7b on 16 H100s with ``kw``."""
    return core_inputs({"model": "llama-2-7b", **SMALL, **kw})[2]


class Spy:
    """Records the space dict that api.enumerate hands to the core, then runs the core."""

    def __init__(self, monkeypatch):
        self.space = None
        real = _core.enumerate

        def spy(space, *args):
            self.space = dict(space)
            return real(space, *args)

        monkeypatch.setattr(api._core, "enumerate", spy)


# --- resolve: defaults, canonical spellings, cross-field rules -------------------------------------


def test_strategy_carries_every_knob_with_its_default():
    s = strategy()
    assert {k: s[k] for k in resolve.KNOBS} == {
        "task": "pretrain", "lora_rank": 16, "offload": "none", "fsdp_shard": 0, "etp": 0, "schedule": "1f1b",
        "cp_comm": "ring", "fp8_recipe": "delayed"}
    # the schedule a vpp implies when none is given
    assert strategy(pp=2, vpp=2)["schedule"] == "interleaved"


def test_strategy_takes_the_given_values_and_aliases():
    s = strategy(task="lora", lora_rank=8, offload="optimizer+params", fsdp_shard=4, etp=1, schedule="zero-bubble",
                 pp=2, cp_comm="a2a", precision="fp8", fp8_recipe="tensorwise")
    assert {k: s[k] for k in resolve.KNOBS} == {
        "task": "lora", "lora_rank": 8, "offload": "optimizer+params", "fsdp_shard": 4, "etp": 1,
        "schedule": "zero-bubble", "cp_comm": "ulysses", "fp8_recipe": "current"}
    assert strategy(cp_comm="p2p")["cp_comm"] == "ring"
    assert strategy(cp_comm="all-to-all")["cp_comm"] == "ulysses"
    assert strategy(schedule="DualPipe", pp=2)["schedule"] == "dualpipe"  # case does not matter


@pytest.mark.parametrize("kw, fields", [
    (dict(task="dpo"), ("`task`", "pretrain, sft, lora")),
    (dict(lora_rank=8), ("`lora_rank`", "`task`")),  # a rank without LoRA names both fields
    (dict(task="lora", lora_rank=0), ("`lora_rank`", "at least 1")),
    (dict(offload="cpu"), ("`offload`", "optimizer+params")),
    (dict(fsdp_shard=3), ("`fsdp_shard`", "dp 16")),  # 3 does not divide dp 16
    (dict(fsdp_shard=-1), ("`fsdp_shard`", "at least 0")),
    (dict(etp=-2), ("`etp`", "at least 0")),
    (dict(etp="two"), ("`etp`", "integer")),
    (dict(schedule="gpipe"), ("`schedule`", "zero-bubble")),
    (dict(schedule="interleaved"), ("`schedule`", "`vpp`")),  # needs vpp >= 2
    (dict(schedule="dualpipe", pp=2, vpp=2), ("`schedule`", "`vpp`")),  # needs vpp 1
    (dict(cp_comm="ring-ulysses"), ("`cp_comm`", "ulysses")),
    (dict(fp8_recipe="current"), ("`fp8_recipe`", "`precision`")),  # bf16 by default
    (dict(precision="mxfp8", fp8_recipe="blockwise"), ("`fp8_recipe`", "`precision`")),
    (dict(precision="fp8", fp8_recipe="mxfp8"), ("`fp8_recipe`", "blockwise")),
])
def test_bad_values_are_one_line_errors_naming_the_fields(kw, fields):
    with pytest.raises(InputError) as e:
        toposcan.evaluate("llama-2-7b", **SMALL, **kw)
    assert "\n" not in e.value.message
    for f in fields:
        assert f in e.value.message, e.value.message


# --- the API: evaluate and enumerate -------------------------------------------------------------


def test_evaluate_accepts_every_knob():
    row = toposcan.evaluate("llama-2-7b", **SMALL, task="lora", lora_rank=8, offload="optimizer", fsdp_shard=8,
                            schedule="1f1b", cp_comm="ulysses", precision="fp8", fp8_recipe="blockwise")
    assert row["feasible"][0] and row["step_time_s"][0] > 0


def test_enumerate_space_holds_the_knobs(monkeypatch):
    spy = Spy(monkeypatch)
    toposcan.enumerate("llama-2-7b", **SMALL, task="sft", offload="optimizer", fsdp_shard=4, etp=1, cp_comm="a2a",
                       precision="fp8", fp8_recipe="current", top=3)
    s = spy.space
    assert {k: s[k] for k in resolve.KNOBS} == {
        "task": "sft", "lora_rank": 16, "offload": "optimizer", "fsdp_shard": 4, "etp": 1, "schedule": "auto",
        "cp_comm": "ulysses", "fp8_recipe": "current"}
    # no schedule given: each row's is what its vpp implies ("auto"); vpp the profile's default list
    assert s["vpp"] == resolve.default_vpp(api._resolve("llama-2-7b", "h100-80", 2, None, None, None, "bf16", {})
                                           .profile_entry)


@pytest.mark.parametrize("schedule, vpp, searched", [
    ("interleaved", None, [2, 4]),
    ("interleaved", "1,2,8", [2, 8]),
    ("1f1b", None, [1]),
    ("zero-bubble", "1,2", [1]),
    ("dualpipe", None, [1]),
])
def test_schedule_sets_the_searched_vpp(monkeypatch, schedule, vpp, searched):
    spy = Spy(monkeypatch)
    toposcan.enumerate("llama-2-7b", **SMALL, schedule=schedule, vpp=vpp, top=2)
    assert spy.space["vpp"] == searched and spy.space["schedule"] == schedule


def test_enumerate_schedule_and_vpp_that_cannot_agree():
    with pytest.raises(InputError, match="`schedule` interleaved needs `vpp`"):
        toposcan.enumerate("llama-2-7b", **SMALL, schedule="interleaved", vpp=1)
    with pytest.raises(InputError, match="`schedule` zero-bubble needs `vpp` 1"):
        toposcan.enumerate("llama-2-7b", **SMALL, schedule="zero-bubble", vpp="2,4")


def test_enumerate_passes_fsdp_shard_through(monkeypatch):
    # in a space dp varies: a shard that divides some dp and not others is the core's to prune, not an error
    spy = Spy(monkeypatch)
    toposcan.enumerate("llama-2-7b", **SMALL, fsdp_shard=3, top=1, include_infeasible=True)
    assert spy.space["fsdp_shard"] == 3


def test_knobs_appear_in_the_rows():
    row = toposcan.evaluate("llama-2-7b", **SMALL, task="lora", lora_rank=8, offload="optimizer", fsdp_shard=8,
                            etp=1, cp_comm="ulysses", precision="fp8", fp8_recipe="blockwise")
    r = row.row(0, named=True)
    assert {k: r[k] for k in resolve.KNOBS} == {
        "task": "lora", "lora_rank": 8, "offload": "optimizer", "fsdp_shard": 8, "etp": 1, "schedule": "1f1b",
        "cp_comm": "ulysses", "fp8_recipe": "blockwise"}
    assert r["ep_comm_s"] == 0  # a dense model has no expert all-to-all
    df = toposcan.enumerate("llama-2-7b", **SMALL, schedule="interleaved", task="sft", top=5)
    assert set(df["schedule"]) == {"interleaved"} and set(df["task"]) == {"sft"} and (df["vpp"] >= 2).all()


# --- the command line ----------------------------------------------------------------------------


KNOB_FLAGS = ["--task", "lora", "--lora-rank", "8", "--offload", "optimizer", "--fsdp-shard", "4", "--etp", "1",
              "--cp-comm", "a2a", "--precision", "fp8", "--fp8-recipe", "current"]


def test_cli_evaluate_and_enumerate_take_the_flags(capsys, monkeypatch):
    assert main(["evaluate", "-m", "llama-2-7b", "-g", "h100-80", "-n", "2", "--format", "json", *KNOB_FLAGS]) == 0
    spy = Spy(monkeypatch)
    assert main(["enumerate", "-m", "llama-2-7b", "-g", "h100-80", "-n", "2", "--top", "2", "--schedule", "zero-bubble",
                 *KNOB_FLAGS]) == 0
    assert (spy.space["task"], spy.space["lora_rank"], spy.space["cp_comm"], spy.space["vpp"]) == ("lora", 8, "ulysses", [1])


@pytest.mark.parametrize("argv, field", [
    (["--task", "rlhf"], "`task`"),
    (["--lora-rank", "8"], "`lora_rank`"),
    (["--offload", "disk"], "`offload`"),
    (["--fsdp-shard", "x"], "`fsdp_shard`"),
    (["--etp", "-1"], "`etp`"),
    (["--schedule", "1f2b"], "`schedule`"),
    (["--cp-comm", "ring2"], "`cp_comm`"),
    (["--fp8-recipe", "delayed"], "`fp8_recipe`"),  # with the default bf16
])
@pytest.mark.parametrize("command", ["evaluate", "enumerate"])
def test_cli_bad_values_exit_2_with_one_line(capsys, command, argv, field):
    assert main([command, "-m", "llama-2-7b", "-g", "h100-80", "-n", "2", *argv]) == 2
    err = capsys.readouterr().err
    first = err.strip().splitlines()[0]
    assert first.startswith("error: ") and field in first and "Traceback" not in err


def test_cli_check_flags_override_the_file(capsys):
    path = str(FIXTURES / "knobs_bridge_lora_overrides.sh")
    assert main(["check", path, "-g", "h100-80", "-n", "4", "--format", "json"]) in (0, 1, 3)
    import json

    cfg = json.loads(capsys.readouterr().out)["config"]
    assert (cfg["task"], cfg["lora_rank"], cfg["cp_comm"], cfg["fsdp_shard"]) == ("lora", 16, "ulysses", 4)
    assert main(["check", path, "-g", "h100-80", "-n", "4", "--format", "json", "--task", "sft", "--cp-comm", "ring",
                 "--fsdp-shard", "2", "--offload", "none"]) in (0, 1, 3)
    doc = json.loads(capsys.readouterr().out)
    cfg = doc["config"]
    assert (cfg["task"], cfg["cp_comm"], cfg["fsdp_shard"], cfg["offload"]) == ("sft", "ring", 2, "none")
    assert "lora_rank" not in cfg or cfg["lora_rank"] == 16  # the file's rank goes with its task (16 is the default)
    assert any("task sft given; the file says lora" in n for n in doc["notes"])
    assert main(["check", path, "-g", "h100-80", "-n", "4", "--schedule", "bogus"]) == 2
    assert "`schedule`" in capsys.readouterr().err


# --- launch files ----------------------------------------------------------------------------------


def parse(name):
    return launch.parse_launch((FIXTURES / name).read_text(encoding="utf-8"), name)


def test_megatron_moe_arguments():
    s = parse("knobs_megatron_moe_args.txt").spec
    # --expert-tensor-parallel-size 1, --cp-comm-type a2a, --fp8-format hybrid --fp8-recipe tensorwise,
    # --num-distributed-optimizer-instances 2, --optimizer-cpu-offload
    assert (s["etp"], s["cp_comm"], s["precision"], s["fp8_recipe"]) == (1, "ulysses", "fp8", "current")
    assert (s["fsdp_replicas"], s["offload"], s["zero_stage"]) == (2, "optimizer", 1)


@pytest.mark.parametrize("args, expect", [
    ("--cp-comm-type p2p", {"cp_comm": "ring"}),
    ("--cp-comm-type a2a+p2p", {"cp_comm": "ring"}),
    ("--cp-comm-type a2a a2a", {"cp_comm": "ulysses"}),  # one per layer
    ("--fp8-format e4m3 --fp8-recipe mxfp8", {"precision": "mxfp8"}),
    ("--fp8-format hybrid --fp8-recipe blockwise", {"precision": "fp8", "fp8_recipe": "blockwise"}),
    ("--fp8-format hybrid", {"precision": "fp8", "fp8_recipe": "delayed"}),  # Megatron's default recipe
    ("--use-torch-fsdp2", {"zero_stage": 3}),
    ("--use-megatron-fsdp --data-parallel-sharding-strategy optim_grads", {"zero_stage": 2}),
])
def test_megatron_argument_mapping(args, expect):
    s = launch.parse_args("--num-layers 4 --hidden-size 256 --num-attention-heads 4 --bf16 " + args).spec
    assert {k: s.get(k) for k in expect} == expect


@pytest.mark.parametrize("args, field", [
    ("--cp-comm-type ring", "--cp-comm-type"),
    ("--fp8-format hybrid --fp8-recipe rowwise", "--fp8-recipe"),
    ("--use-megatron-fsdp --data-parallel-sharding-strategy full", "--data-parallel-sharding-strategy"),
])
def test_megatron_bad_values(args, field):
    with pytest.raises(ParseError) as e:
        launch.parse_args("--num-layers 4 --hidden-size 256 --num-attention-heads 4 " + args)
    assert field in str(e.value) and "\n" not in str(e.value)


def test_check_turns_replicas_into_a_shard_size():
    # 2 distributed-optimizer instances over dp 4 (32 GPUs / tp 2 / pp 2 / cp 2): shards of 2
    r = toposcan.check(FIXTURES / "knobs_megatron_moe_args.txt", gpu="h100-80", nodes=4, compare=False)
    assert (r.config["dp"], r.config["fsdp_shard"], r.config["etp"], r.config["cp_comm"]) == (4, 2, 1, "ulysses")
    # 3 instances do not divide dp 4: the launch would stop, so the gate fails
    r = toposcan.check(args="--num-layers 4 --hidden-size 256 --num-attention-heads 4 --vocab-size 1000 --bf16 "
                         "--num-distributed-optimizer-instances 3", gpu="h100-80", nodes=1, compare=False)
    assert r.failed and r.checks[-1].code == "fsdp_shard_not_divisor_of_dp"


def test_deepspeed_offload_and_mics():
    s = parse("knobs_ds_zero3_infinity_mics.json").spec
    # offload_param to nvme (ZeRO-Infinity) with offload_optimizer to cpu; mics_shard_size 8
    assert (s["zero_stage"], s["offload"], s["fsdp_shard"]) == (3, "optimizer+params", 8)
    only_opt = launch.parse_launch('{"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}')
    assert only_opt.spec["offload"] == "optimizer"


def test_torchtitan_hsdp_schedule_float8_offload():
    cfg = parse("knobs_torchtitan_hsdp_pp.toml")
    s = cfg.spec
    # replicate 2 x shard 4: HSDP with shards of 4; ZBVZeroBubble: zero-bubble at vpp 1; float8 rowwise:
    # current scaling; enable_cpu_offload: FSDP2's CPUOffloadPolicy, parameters and optimizer
    assert (s["dp"], s["zero_stage"], s["fsdp_shard"]) == (8, 3, 4)
    assert (s["schedule"], s.get("vpp", 1)) == ("zero-bubble", 1)
    assert (s["precision"], s["fp8_recipe"], s["offload"]) == ("fp8", "current", "optimizer+params")
    r = toposcan.check(FIXTURES / "knobs_torchtitan_hsdp_pp.toml", gpu="h100-80", nodes=2, compare=False)
    assert (r.config["fsdp_shard"], r.config["schedule"], r.config["offload"]) == (4, "zero-bubble", "optimizer+params")


@pytest.mark.parametrize("schedule, expect", [
    ("1F1B", ("1f1b", 1)), ("GPipe", ("1f1b", 1)), ("Interleaved1F1B", ("interleaved", 2)),
    ("LoopedBFS", ("interleaved", 2)), ("InterleavedZeroBubble", ("zero-bubble", 1)), ("DualPipeV", ("dualpipe", 1)),
])
def test_torchtitan_schedules(schedule, expect):
    text = f'[parallelism]\npipeline_parallel_degree = 4\npipeline_parallel_schedule = "{schedule}"\n'
    s = launch.parse_launch(text, "job.toml").spec
    assert (s["schedule"], s.get("vpp", 1)) == expect


def test_torchtitan_unknown_schedule_is_one_line():
    with pytest.raises(ParseError) as e:
        launch.parse_launch('[parallelism]\npipeline_parallel_degree = 2\npipeline_parallel_schedule = "Zigzag"\n',
                            "job.toml")
    assert "pipeline_parallel_schedule" in str(e.value) and "\n" not in str(e.value)


def test_bridge_lora_overrides():
    cfg = parse("knobs_bridge_lora_overrides.sh")
    s = cfg.spec
    # peft=lora peft.dim=16, model.cp_comm_type=a2a, mixed_precision=bf16_with_fp8_current_scaling_mixed,
    # ddp.num_distributed_optimizer_instances=2, optimizer.optimizer_cpu_offload=true
    assert (s["task"], s["lora_rank"], s["cp_comm"]) == ("lora", 16, "ulysses")
    assert (s["precision"], s["fp8_recipe"], s["fsdp_replicas"], s["offload"]) == ("fp8", "current", 2, "optimizer")


@pytest.mark.parametrize("overrides, expect", [
    ("model.expert_tensor_parallel_size=1 model.fp8=hybrid model.fp8_recipe=tensorwise",
     {"etp": 1, "precision": "fp8", "fp8_recipe": "current"}),
    ("model.fp8_recipe=mxfp8 model.fp8=hybrid", {"precision": "mxfp8", "fp8_recipe": None}),  # any order
    ("model.fp8_recipe=blockwise", {"fp8_recipe": None}),  # no fp8: no recipe
    ("mixed_precision=bf16_with_mxfp8_mixed", {"precision": "mxfp8"}),
    ("peft=none", {"task": "sft"}),
])
def test_bridge_override_mapping(overrides, expect):
    s = launch.parse_args("model.num_layers=4 model.tensor_model_parallel_size=1 " + overrides).spec
    assert {k: s.get(k) for k in expect} == expect


def test_foundry_peft_config():
    text = ("model:\n  name: hf_causal_lm\n  pretrained_model_name_or_path: meta-llama/Llama-2-7b-hf\n"
            "  peft_config:\n    peft_type: LORA\n    r: 64\nglobal_train_batch_size: 64\n"
            "fsdp_config:\n  sharding_strategy: FULL_SHARD\n  cpu_offload: true\n")
    s = launch.parse_launch(text, "ft.yaml").spec
    assert (s["task"], s["lora_rank"], s["offload"]) == ("lora", 64, "optimizer+params")


# --- the Megatron-Bridge runs ----------------------------------------------------------------------


def test_every_mapped_bridge_run_builds_its_inputs():
    # Every run whose skip is empty (fit and new coverage) turns into the core's inputs without a Python-side
    # error: what is left is the core's own rejections (ep folding, until the core reads etp).
    cases, skipped = v.mbridge_cases(which="all")
    rows = [r for r in v.load("megatron_bridge", "published") if not r["our_skip"]]
    rejected = {k: n for k, n in skipped.items() if k.startswith("rejected: ")}
    assert len(cases) + sum(rejected.values()) == len(rows) == 233
    assert "rejected: invalid_value" not in rejected
    for c in cases:
        core_inputs(c.kwargs)
    new = [c for c in cases if c.extra["set"] == "new-coverage"]
    assert {c.table for c in new} == {v.MBRIDGE_NEW_TABLE}
    assert {c.extra["task"] for c in new} >= {"sft", "lora"}
    assert {c.kwargs["lora_rank"] for c in new if c.extra["task"] == "lora"} == {32}  # Megatron-Bridge LoRA.dim
    assert {c.kwargs.get("fp8_recipe") for c in new} >= {"blockwise", "current"}


def test_ep_folding_runs_are_scored_once_the_core_reads_etp():
    _, skipped = v.mbridge_cases(which="new-coverage")
    assert "rejected: ep_not_divisor_of_dp" not in skipped, skipped


def test_new_coverage_is_held_out_of_every_fit():
    # Adding the held-out source changes no fitted prediction of the fit set: its rows are in no refit.
    both = v.report_rows(logo=False, sources=(v.MBRIDGE_TABLE, v.MBRIDGE_NEW_TABLE))
    alone = v.report_rows(logo=False, sources=(v.MBRIDGE_TABLE,))
    fit = both.filter(pl.col("source") == v.MBRIDGE_TABLE)
    assert fit["fit_s"].to_list() == pytest.approx(alone["fit_s"].to_list(), rel=1e-9)
    new = both.filter(pl.col("source") == v.MBRIDGE_NEW_TABLE)
    assert new.height == len(v.mbridge_cases(which="new-coverage")[0]) > 0
    rep = v.report(by=("source",), logo=False, sources=(v.MBRIDGE_TABLE, v.MBRIDGE_NEW_TABLE))
    assert rep["source"].to_list() == [v.MBRIDGE_TABLE, v.MBRIDGE_NEW_TABLE]


def test_bridge_fp8_runs_are_current_scaling():
    # plain FP8 and FP8-CS rows: precision fp8 with the current recipe (no separate fp8-cs precision left)
    cases, _ = v.mbridge_cases()
    fp8 = [c for c in cases if c.kwargs["precision"] == "fp8"]
    assert fp8 and {c.kwargs["fp8_recipe"] for c in fp8} == {"current"}
