"""`topo check` on real launch configs (tests/fixtures/launch, sources in its README) and on the
seeds/001 configurations whose outcome is known."""

import json

import pytest

import toposcan

FIX = "tests/fixtures/launch/"
SEED001 = ("--num-layers 72 --hidden-size 14336 --num-attention-heads 64 --seq-length 2048 "
           "--padded-vocab-size 250880 --checkpoint-activations --fp16 --zero-stage 1 --global-batch-size 2016 ")


def test_bloom_launch_script_passes():
    # BLOOM-176B trained with this script on 48 nodes of A100-80 (TP 4, PP 12, DP 8, MBS 2, 70 layers
    # on 12 uneven stages): it must pass; uneven stages are only a warning in Megatron-DeepSpeed.
    r = toposcan.check(FIX + "bloom_tr11_176b_ml.slurm", gpu="a100-80")
    assert r.exit_code() == 0 and not r.failed
    assert (r.config["dp"], r.config["tp"], r.config["pp"], r.config["mbs"]) == (8, 4, 12, 2)
    assert r.prediction["mem_gb"] < 80
    codes = {c.code: c.status for c in r.checks}
    assert codes["rampup"] == "pass" and codes["uneven_stages"] == "warn"
    assert r.rank is not None and r.best is not None
    assert len(r.ignored) > 10  # unknown arguments are listed, not dropped


@pytest.mark.parametrize("dp,tp,pp", [(48, 8, 1), (32, 2, 6)])
def test_seed001_oom_configs_fail_on_memory(dp, tp, pp):
    # seeds/001 "GBS Variations": DP48 TP8 PP1 and DP32 TP2 PP6 ran out of memory.
    args = SEED001 + f"--tensor-model-parallel-size {tp} --pipeline-model-parallel-size {pp} --micro-batch-size 1"
    r = toposcan.check(args=args, nodes=48, gpu="a100-80", compare=False)
    assert r.exit_code() == 1
    assert [c.code for c in r.checks if c.status == "fail"] == ["oom"]


@pytest.mark.parametrize("hidden,heads,layers,nodes,pp,mbs,warning", [
    # seeds/001 tile/wave table (line 253): 40 nodes, DP4 TP8 PP10 MBS1, hidden 14400, head_dim 150.
    (14400, 96, 80, 40, 10, 1, "head_dim_misaligned"),
    (14400, 96, 80, 40, 10, 1, "tile_quantization"),     # hidden/tp = 1800, not a multiple of 128
    # seeds/001 NHEADS table (line 412): 13824 with 128 heads, head_dim 108, ran at 99.8 TFLOPs.
    (13824, 128, 78, 48, 6, 4, "head_dim_misaligned"),
])
def test_seed001_quantization_configs_warn(hidden, heads, layers, nodes, pp, mbs, warning):
    args = (f"--num-layers {layers} --hidden-size {hidden} --num-attention-heads {heads} --seq-length 2048 "
            "--padded-vocab-size 250880 --checkpoint-activations --fp16 --zero-stage 1 --global-batch-size 2048 "
            f"--tensor-model-parallel-size 8 --pipeline-model-parallel-size {pp} --micro-batch-size {mbs}")
    r = toposcan.check(args=args, nodes=nodes, gpu="a100-80", compare=False)  # the file's own shape
    assert r.exit_code() == 0
    assert any(c.code == warning and c.status == "warn" for c in r.checks)
    assert r.exit_code(strict=True) == 3


def test_divisibility_failure_names_rule_and_fix():
    args = SEED001.replace("64", "60") + "--tensor-model-parallel-size 8 --micro-batch-size 1"
    r = toposcan.check(args=args, nodes=48, gpu="a100-80", compare=False)
    fails = [c for c in r.checks if c.status == "fail"]
    assert [c.code for c in fails] == ["hidden_not_divisible_by_heads"] and fails[0].fix
    assert r.exit_code() == 1
    # With --model the catalog gives the architecture: the file's 60 heads are a finding, not the
    # model scored (issue 14: the gate scored Megatron's defaults instead of the named model).
    named = toposcan.check(args=args, nodes=48, gpu="a100-80", model="bloom-176b", compare=False)
    finding = [c for c in named.checks if c.code == "model_mismatch"]
    assert finding and finding[0].status == "warn" and "heads 60" in finding[0].message
    assert named.config["heads"] == 112


@pytest.mark.parametrize("name,nodes,verdict", [
    ("foundry_mpt_70b.yaml", 8, 0),
    ("foundry_mpt_7b_fsdp2.yaml", 1, 0),
    ("megatron_gpt3_175b_distributed.sh", 1, 1),   # the script's own cluster is 1 node: tp8 x pp16 cannot fit
    ("megatron_pretrain_gpt_distributed.sh", None, 0),
])
def test_fixture_verdicts(name, nodes, verdict):
    r = toposcan.check(FIX + name, gpu="h100-80", nodes=nodes, compare=False)
    assert r.exit_code() == verdict, str(r)


def test_deepspeed_json_needs_the_model():
    with pytest.raises(toposcan.ToposcanError, match="give `--model`"):
        toposcan.check(FIX + "ds_config_cifar.json", gpu="a100-80", nodes=1)
    r = toposcan.check(FIX + "ds_config_cifar.json", gpu="a100-80", nodes=1, model="gpt3-1.3b", compare=False)
    assert r.kind == "deepspeed"


@pytest.mark.parametrize("name", ["hostile_truncated_ds.json", "hostile_truncated_mpt.yaml",
                                  "hostile_no_command.sh", "hostile_unbalanced_quote.sh"])
def test_hostile_files_are_parse_errors(name):
    with pytest.raises(toposcan.ParseError) as e:
        toposcan.check(FIX + name, gpu="a100-80", nodes=1)
    assert "\n" not in str(e.value)


def test_json_report_round_trips():
    r = toposcan.check(FIX + "bloom_tr11_176b_ml.slurm", gpu="a100-80", compare=False)
    d = json.loads(r.to_json())
    assert d["verdict"] == "warn" and d["config"]["tp"] == 4 and d["prediction"]["step_time_s"] > 0


@pytest.mark.parametrize("gpu,profile", [("a100-40", "llm-foundry-a100-40"), ("h200", "llm-foundry-h100"),
                                         ("a100-80", "llm-foundry-a100"), ("v100-32", "llm-foundry-a100")])
def test_foundry_files_get_the_foundry_profile_for_their_gpu(gpu, profile):
    # llm-foundry YAMLs are scored with the profiles fitted to llm-foundry's own runs (seeds/002), the
    # one for the GPU where there is one (profiles.toml `default_for`).
    r = toposcan.check(FIX + "foundry_mpt_7b_fsdp2.yaml", gpu=gpu, nodes=1, compare=False)
    assert r.config["profile"] == profile


def test_megatron_scripts_get_their_stacks_profile_on_a100():
    # BLOOM's script runs Megatron-DeepSpeed: the profile fitted to that stack (seeds/001); NVIDIA's
    # own Megatron-LM example gets the A100's default, fitted to Megatron-LM's published runs.
    bloom = toposcan.check(FIX + "bloom_tr11_176b_ml.slurm", gpu="a100-80", compare=False)
    assert bloom.config["profile"] == "megatron-deepspeed-a100"
    from toposcan import launch
    from pathlib import Path
    read = lambda name: Path(FIX + name).read_text(encoding="utf-8")  # noqa: E731
    assert launch.parse_launch(read("bloom_tr11_176b_ml.slurm")).framework == "megatron-deepspeed"
    assert launch.parse_launch(read("megatron_pretrain_gpt_distributed.sh")).framework == "megatron-lm"
    r = toposcan.check(FIX + "megatron_pretrain_gpt_distributed.sh", gpu="a100-80", nodes=1, compare=False)
    assert r.config["profile"] == "megatron-lm-a100"
    # An explicit profile wins, and other GPUs keep their default.
    assert toposcan.check(FIX + "bloom_tr11_176b_ml.slurm", gpu="a100-80", profile="megatron-lm-a100",
                          compare=False).config["profile"] == "megatron-lm-a100"
    # On another GPU the script keeps its framework (issue 15: the framework is an axis of its own).
    assert toposcan.check(FIX + "bloom_tr11_176b_ml.slurm", gpu="h100-80", compare=False).config["profile"] == "megatron-deepspeed-a100"


def test_report_renders_in_a_notebook():
    # Jupyter shows _repr_markdown_: the verdict, one table row per check, the prediction
    r = toposcan.check(FIX + "bloom_tr11_176b_ml.slurm", gpu="a100-80", compare=False)
    md = r._repr_markdown_()
    assert "pass with warnings" in md and md.count("\n| ") == len(r.checks) + 1  # header + checks
    assert all(f"`{c.code}`" in md for c in r.checks) and "spent on" in md
