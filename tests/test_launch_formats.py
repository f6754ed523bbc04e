"""Regression tests for the launch formats and guards added for issue 14: multi-line bare argument files,
Megatron's printed argument block in a training log, NeMo 2 / Megatron-Bridge recipe overrides, torchtitan
TOML job configs, bounded reads of regular files only, ``--seq-length`` above ``--max-position-embeddings``
and duplicate YAML keys.

Expected values name their source: the public file a fixture transcribes (``tests/fixtures/launch/README.md``),
Megatron-LM's ``megatron/training/arguments.py`` (``_print_args``, ``validate_args``), torchtitan's
``torchtitan/config/job_config.py``, or Megatron-Bridge's ``docs/megatron-lm-to-megatron-bridge.md``.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from test_launch import FIXTURES, ParseError, check_contract, check_error, fixture, launch, parse_args, parse_fixture, \
    parse_launch

detect_kind = launch.detect_kind


def error_of(func, *args, **kwargs) -> ParseError:
    with pytest.raises(ParseError) as info:
        func(*args, **kwargs)
    check_error(info.value)
    return info.value


def block(values: dict[str, str], prefix: str = "", width: int = 48, end: bool = True) -> str:
    """An argument block as Megatron-LM's ``_print_args`` prints it: ``  {name} {dots} {value}``, the dots
    padding the name to ``width`` (48; 32 in early versions), lines sorted case-insensitively."""
    lines = sorted((f"  {k} {'.' * (width - len(k))} {v}" for k, v in values.items()), key=str.lower)
    out = [f"{prefix}------------------------ arguments ------------------------"]
    out += [prefix + line for line in lines]
    if end:
        out.append(f"{prefix}-------------------- end of arguments ---------------------")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------- 1: bare argument files


def test_bare_arguments_over_several_lines_are_one_argument_list():
    # Today's main reads each line as a separate command and keeps only one: "the file does not give
    # layers, hidden size and heads" although it does.
    cfg = parse_fixture("megatron_345m_args.txt")
    check_contract(cfg)
    s = cfg.spec
    # the "345M" model of examples/pretrain_gpt_distributed.sh, which the fixture's lines spell out
    script = parse_fixture("megatron_pretrain_gpt_distributed.sh").spec
    keys = ("layers", "hidden", "heads", "seq_len", "mbs", "gbs", "precision")
    assert tuple(s[k] for k in keys) == tuple(script[k] for k in keys) == (24, 1024, 16, 1024, 8, 64, "fp16")
    assert cfg.ignored == ["--lr 0.00015"]  # the comments are not arguments
    assert any("several lines" in n for n in cfg.notes)


def test_a_commented_out_flag_in_an_argument_file_is_not_read():
    cfg = parse_launch("--num-layers 2\n# --num-layers 48\n--hidden-size 64 \\\n  --num-attention-heads 4\n", "args.txt")
    assert (cfg.spec["layers"], cfg.spec["hidden"], cfg.spec["heads"]) == (2, 64, 4)
    # the same text through `--args "$(cat args.txt)"`: shell comments are comments there too
    cfg = parse_args("--num-layers 2\n# --num-layers 48\n--hidden-size 64 --num-attention-heads 4")
    assert cfg.spec["layers"] == 2 and cfg.ignored == []


def test_a_script_with_a_training_command_is_not_merged_with_stray_lines():
    cfg = parse_launch("--num-layers 48\ntorchrun pretrain_gpt.py --num-layers 2 --hidden-size 64 --num-attention-heads 4\n")
    assert cfg.spec["layers"] == 2


# --------------------------------------------------------------------------------------------- 2: printed argument block


def test_log_block_gives_what_the_script_that_printed_it_gives():
    log = parse_fixture("megatron_log_mixtral_test.log")
    script = parse_fixture("megatron_mixtral_8x7b_distributed.sh")
    check_contract(log)
    assert log.kind == "megatron" and log.framework == "megatron-lm"
    # context_parallel_size 1 is printed (the script leaves it to Megatron's default)
    assert log.spec.pop("cp") == 1
    assert log.spec == script.spec
    # data_parallel_size 2 and world_size 2 are printed; the nodes are not
    assert log.spec["dp"] == 2 and log.world_size == 2 and log.cluster == {}
    assert log.max_position_embeddings == script.max_position_embeddings == 2048
    # the `num_layers ... 48` line after `end of arguments` is log output, not the block
    assert log.spec["layers"] == 2
    # add_bias_linear False / add_position_embedding False are --disable-bias-linear / --no-position-embedding
    assert log.spec["bias"] is False and log.spec["position"] == "rope"
    assert detect_kind(fixture("megatron_log_mixtral_test.log")) == "megatron"


def test_log_block_with_rank_prefix_lists_none_and_deepspeed():
    values = {
        "num_layers": "70", "hidden_size": "14336", "num_attention_heads": "112", "seq_length": "2048",
        "max_position_embeddings": "2048", "micro_batch_size": "2", "global_batch_size": "2048",
        "rampup_batch_size": "['192', '16', '9765625']", "tensor_model_parallel_size": "4",
        "pipeline_model_parallel_size": "12", "virtual_pipeline_model_parallel_size": "None",
        "num_experts": "[1]", "bf16": "True", "fp16": "False", "deepspeed": "True", "zero_stage": "0",
        "position_embedding_type": "alibi", "pad_vocab_size_to": "250880", "checkpoint_activations": "True",
        "data_parallel_size": "8", "world_size": "384", "adam_betas": "[0.9, 0.95]", "lr": "6e-05",
        "tokenizer_name_or_path": "bigscience-catalogue-data-dev/byte-level-bpe-tokenizer-no-norm-250k-whitespace-and-eos-regex-alpha-v3-dedup-lines-articles",
        "account_for_embedding_in_pipeline_split_long_name": "False",  # 49 characters: printed with no dots
    }
    text = ("[2022-07-01 10:00:00] srun: launching 48 tasks\n0: using world size: 384\n"
            + block(values, prefix="0: ")
            + "0: > building tokenizer ...\n0:  iteration 1/ 95367 | lm loss: 1.2E+01\n")
    assert "0:   account_for_embedding_in_pipeline_split_long_name  False" in text
    cfg = parse_launch(text, "tr11.log")
    check_contract(cfg)
    s = cfg.spec
    # the BLOOM-176B values the bloom fixture gives (tests/fixtures/launch/README.md)
    assert (s["layers"], s["hidden"], s["heads"], s["tp"], s["pp"], s["dp"]) == (70, 14336, 112, 4, 12, 8)
    assert s["rampup"] == {"start": 192, "increment": 16, "samples": 9765625}
    assert (s["precision"], s["zero_stage"], s["recompute"], s["position"], s["vocab"]) == \
        ("bf16", 0, "full", "alibi", 250880)
    assert "experts" not in s and "vpp" not in s  # [1] is dense; None is absent
    assert cfg.framework == "megatron-deepspeed" and cfg.world_size == 384
    assert not any("skipped" in n for n in cfg.notes)  # every line of the block, the undotted one too, was read


def test_log_with_two_blocks_reads_the_last():
    first = block({"num_layers": "24", "hidden_size": "1024", "num_attention_heads": "16"})
    second = block({"num_layers": "32", "hidden_size": "4096", "num_attention_heads": "32"})
    cfg = parse_launch("start\n" + first + "crash\nrestart\n" + second + "iteration 1\n")
    assert (cfg.spec["layers"], cfg.spec["hidden"]) == (32, 4096)
    assert any("2 argument blocks" in n for n in cfg.notes)


def test_log_block_of_an_early_megatron_without_end_line():
    # early Megatron-LM padded names to 32 and printed `---- arguments ----` with no end line
    text = block({"num_layers": "24", "hidden_size": "1024", "num_attention_heads": "16", "seq_length": "1024"},
                 width=32, end=False).replace("------------------------ arguments", "-------------------- arguments")
    cfg = parse_launch("> initializing\n" + text + "> building GPT2BPETokenizer tokenizer ...\n")
    assert (cfg.spec["layers"], cfg.spec["hidden"], cfg.spec["heads"], cfg.spec["seq_len"]) == (24, 1024, 16, 1024)
    assert any("no `end of arguments`" in n for n in cfg.notes)


def test_a_long_log_is_cut_after_its_argument_block(tmp_path):
    # Logs run to gigabytes; the block is at the top. The read stops at the limit and keeps the block.
    path = tmp_path / "train.log"
    head = block({"num_layers": "2", "hidden_size": "64", "num_attention_heads": "4"})
    path.write_text(head + " iteration 1 | lm loss: 1.0\n" * 60_000, encoding="utf-8")
    assert path.stat().st_size > launch.MAX_INPUT_CHARS
    cfg = launch.parse_file(path)
    assert cfg.spec["layers"] == 2


# --------------------------------------------------------------------------------------------- 3: NeMo 2 / Megatron-Bridge


def test_megatron_bridge_quickstart_overrides():
    cfg = parse_fixture("bridge_llama3_8b_overrides.sh")
    check_contract(cfg)
    assert (cfg.kind, cfg.framework) == ("nemo", "megatron-bridge")
    s = cfg.spec
    # train.micro_batch_size=2 train.global_batch_size=128 model.num_layers=32 model.hidden_size=4096
    # model.num_attention_heads=32 dataset.sequence_length=4096 model.max_position_embeddings=4096
    assert s == {"mbs": 2, "gbs": 128, "layers": 32, "hidden": 4096, "heads": 32, "seq_len": 4096}
    assert cfg.max_position_embeddings == 4096
    assert cfg.model == "llama-3-8b"  # examples/recipes/llama/pretrain_llama3_8b.py
    assert "checkpoint.save_interval=1000" in cfg.ignored and "logger.wandb_project=my_proj" in cfg.ignored
    # what the overrides leave to the recipe is said, not filled with Megatron's defaults
    assert any("recipe's own values" in n and "tp" in n for n in cfg.notes)
    # the same command given as `--args`
    args = parse_args(fixture("bridge_llama3_8b_overrides.sh").split("\n", 3)[3])
    assert args.spec == s and args.model == "llama-3-8b"


def test_nemo2_cli_overrides_match_by_last_key_part():
    cfg = parse_args(
        "nemo llm pretrain --factory llama3_70b trainer.num_nodes=16 trainer.devices=8 "
        "trainer.strategy.tensor_model_parallel_size=8 trainer.strategy.pipeline_model_parallel_size=4 "
        "trainer.strategy.virtual_pipeline_model_parallel_size=5 trainer.strategy.context_parallel_size=2 "
        "trainer.strategy.expert_model_parallel_size=1 trainer.strategy.sequence_parallel=True "
        "data.global_batch_size=512 data.micro_batch_size=1 data.seq_length=8192 "
        "model.config.recompute_granularity=full model.config.recompute_method=uniform "
        "trainer.plugins.precision=bf16-mixed optim.config.lr=3e-4")
    check_contract(cfg)
    assert (cfg.kind, cfg.framework, cfg.model) == ("nemo", "nemo-2", "llama-3-70b")
    assert cfg.spec == {"tp": 8, "pp": 4, "vpp": 5, "cp": 2, "ep": 1, "sequence_parallel": True, "gbs": 512,
                        "mbs": 1, "seq_len": 8192, "recompute": "full", "precision": "bf16"}
    assert cfg.cluster == {"nodes": 16, "gpus_per_node": 8}
    assert cfg.ignored == ["nemo", "llm", "pretrain", "optim.config.lr=3e-4"]
    # the NeMo 2 recipe prefix and the Megatron-Bridge one read the same field
    for key in ("recipe.trainer.strategy.tensor_model_parallel_size", "model.tensor_model_parallel_size"):
        assert parse_args(f"{key}=4").spec["tp"] == 4


def test_nemo2_override_file_with_comments_and_fp8():
    text = ("# NeMo 2 overrides for the 8B recipe\nrecipe.trainer.strategy.tensor_model_parallel_size=4\n"
            "recipe.model.config.seq_length=8192\nrecipe.data.seq_length=16384  # the trained length\n"
            "recipe.trainer.plugins.fp8=hybrid\nrecipe.trainer.strategy.virtual_pipeline_model_parallel_size=null\n")
    assert detect_kind(text) == "nemo"
    cfg = parse_launch(text, "overrides.txt")
    assert cfg.spec == {"tp": 4, "seq_len": 16384, "precision": "fp8"}
    assert any("differ; the data's is used" in n for n in cfg.notes)


@pytest.mark.parametrize("override, field", [
    ("recipe.trainer.strategy.tensor_model_parallel_size=0", "tensor_model_parallel_size"),
    ("model.num_layers=32x", "model.num_layers"),
    ("model.recompute_granularity=partial", "recompute_granularity"),
    ("trainer.strategy.sequence_parallel=maybe", "sequence_parallel"),
    ("trainer.plugins.precision=int4", "precision"),
])
def test_bad_override_values_name_the_key(override, field):
    exc = error_of(parse_args, override)
    assert field in str(exc)


def test_a_script_running_a_recipe_with_overrides(tmp_path):
    text = ("#!/bin/bash\n#SBATCH --nodes=4\n#SBATCH --gres=gpu:h100_80gb:8\nTP=8\n"
            "torchrun --nproc_per_node 8 scripts/pretrain_llama3_70b.py model.tensor_model_parallel_size=$TP "
            "model.pipeline_model_parallel_size=2 train.global_batch_size=256\n")
    cfg = parse_launch(text, "run.sh")
    assert (cfg.kind, cfg.model) == ("nemo", "llama-3-70b")
    assert (cfg.spec["tp"], cfg.spec["pp"], cfg.spec["gbs"]) == (8, 2, 256)
    assert cfg.cluster == {"gpus_per_node": 8, "nodes": 4, "gpu": "h100-80"}


# --------------------------------------------------------------------------------------------- 4: torchtitan


def test_torchtitan_llama3_70b():
    cfg = parse_fixture("torchtitan_llama3_70b.toml")
    check_contract(cfg)
    assert (cfg.kind, cfg.framework, cfg.model) == ("torchtitan", "torchtitan", "llama-3-70b")
    s = cfg.spec
    # [training] local_batch_size 8, seq_len 8192; [parallelism] tp 8, shard -1 (FSDP over the rest)
    assert (s["mbs"], s["seq_len"], s["tp"], s["pp"], s["cp"]) == (8, 8192, 8, 1, 1)
    assert s["zero_stage"] == 3 and "dp" not in s and "gbs" not in s
    assert s["recompute"] == "full" and s["sequence_parallel"] is True
    # a [float8] section, but `# converters = ["float8"]` is commented out: not fp8
    assert s["precision"] == "bf16"
    assert "training.steps = 1000" in cfg.ignored


def test_torchtitan_llama3_405b_float8_and_old_batch_name():
    cfg = parse_fixture("torchtitan_llama3_405b.toml")
    check_contract(cfg)
    # converters = "float8" (a string), [training] batch_size = 2 (the older name of local_batch_size)
    assert (cfg.model, cfg.spec["precision"], cfg.spec["mbs"]) == ("llama-3-405b", "fp8", 2)


def test_torchtitan_explicit_degrees_pipeline_and_defaults():
    text = ('[model]\nname = "llama3"\nflavor = "debugmodel"\n[training]\nlocal_batch_size = 16\n'
            'global_batch_size = 1024\n[parallelism]\ndata_parallel_replicate_degree = 2\n'
            'data_parallel_shard_degree = 4\npipeline_parallel_degree = 4\npipeline_parallel_microbatch_size = 2\n'
            '[activation_checkpoint]\nmode = "none"\n')
    assert detect_kind(text) == "torchtitan"
    cfg = parse_launch(text, "job.toml")
    s = cfg.spec
    assert (s["dp"], s["pp"], s["mbs"], s["gbs"], s["zero_stage"]) == (8, 4, 2, 1024, 3)
    assert s["recompute"] == "none" and s["seq_len"] == 2048  # job_config.py default seq_len
    assert cfg.model is None and any("HSDP" in n for n in cfg.notes)
    ddp = parse_launch("[parallelism]\ndata_parallel_shard_degree = 1\ndata_parallel_replicate_degree = 8\n[training]\n"
                       "local_batch_size = 4\n", "ddp.toml")
    # DDP: no sharding; global batch defaults to local_batch_size x dp; activation_checkpoint defaults to selective
    assert (ddp.spec["zero_stage"], ddp.spec["dp"], ddp.spec["gbs"], ddp.spec["recompute"]) == (0, 8, 32, "selective")


@pytest.mark.parametrize("text, code, field", [
    ('[parallelism]\ndata_parallel_shard_degree = 0\n', "invalid_value", "data_parallel_shard_degree"),
    ('[parallelism]\ntensor_parallel_degree = -1\n', "invalid_value", "tensor_parallel_degree"),
    ('[parallelism]\ntensor_parallel_degree = true\n', "invalid_value", "tensor_parallel_degree"),
    ('[training]\nseq_len = 4096\n[activation_checkpoint]\nmode = "half"\n', "invalid_value", "activation_checkpoint.mode"),
    ('[training]\nseq_len = 4096\nseq_len = 8192\n', "bad_toml", "line 3"),
    ('[tool.poetry]\nname = "x"\n', "unknown_format", "torchtitan"),
])
def test_torchtitan_bad_values(text, code, field):
    exc = error_of(parse_launch, text, "job.toml")
    assert exc.code == code and field in str(exc)


# --------------------------------------------------------------------------------------------- 5: bounded reads


def test_dev_zero_is_refused_before_reading():
    start = time.perf_counter()
    exc = error_of(launch.read_launch_file, "/dev/zero")
    assert time.perf_counter() - start < 1.0
    assert exc.code == "not_a_file" and "`/dev/zero`" in str(exc) and "character device" in str(exc)


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "launch.sh"
    os.mkfifo(fifo)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(error_of(launch.read_launch_file, fifo)), daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert result[0].code == "not_a_file" and "FIFO" in str(result[0]) and str(fifo) in str(result[0])


def test_directory_and_missing_file(tmp_path):
    assert error_of(launch.read_launch_file, tmp_path).code == "not_a_file"
    exc = error_of(launch.read_launch_file, tmp_path / "nope.sh")
    assert exc.code == "unreadable" and "nope.sh" in str(exc)


def test_a_huge_file_is_read_only_up_to_the_limit(tmp_path):
    # A 2 GiB sparse file: reading it whole takes seconds and gigabytes; the bounded read stops at 1M + 1.
    path = tmp_path / "huge.sh"
    with open(path, "wb") as handle:
        handle.truncate(2 * 1024**3)
    start = time.perf_counter()
    exc = error_of(launch.read_launch_file, path)
    assert time.perf_counter() - start < 2.0
    assert exc.code == "too_large"


def test_read_launch_file_gives_the_text(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_bytes(fixture("foundry_mpt_70b.yaml").encode("utf-8"))
    assert launch.read_launch_file(path) == fixture("foundry_mpt_70b.yaml")
    (tmp_path / "bad.sh").write_bytes(b"--num-layers \xff\xfe\n")
    assert error_of(launch.read_launch_file, tmp_path / "bad.sh").code == "binary"
    assert launch.parse_file(FIXTURES / "megatron_345m_args.txt").spec == parse_fixture("megatron_345m_args.txt").spec


# --------------------------------------------------------------------------------------------- 6: gate findings, YAML


def test_seq_length_above_max_position_embeddings_is_a_finding():
    base = "--num-layers 2 --hidden-size 64 --num-attention-heads 4 "
    cfg = parse_args(base + "--seq-length 8192 --max-position-embeddings 4096")
    check_contract(cfg)
    assert cfg.max_position_embeddings == 4096
    # Megatron's validate_args: assert args.max_position_embeddings >= args.seq_length
    assert [f["code"] for f in cfg.findings] == ["seq_len_exceeds_max_positions"]
    assert cfg.findings[0]["status"] == "fail" and "8192" in cfg.findings[0]["message"]
    assert parse_args(base + "--seq-length 4096 --max-position-embeddings 4096").findings == []
    assert parse_args(base + "--seq-length 4096").findings == []
    # the same in a printed argument block
    log = parse_launch(block({"num_layers": "2", "hidden_size": "64", "num_attention_heads": "4",
                              "seq_length": "8192", "max_position_embeddings": "4096"}))
    assert [f["code"] for f in log.findings] == ["seq_len_exceeds_max_positions"]


def test_duplicate_yaml_keys_are_refused():
    text = fixture("foundry_mpt_70b.yaml")
    assert "global_train_batch_size:" in text
    doubled = text + "global_train_batch_size: 4096\n"
    exc = error_of(parse_launch, doubled, "mpt.yaml")
    line = doubled.splitlines().index("global_train_batch_size: 4096") + 1
    assert exc.code == "duplicate_key" and "`global_train_batch_size`" in str(exc) and f"and {line})" in str(exc)
    nested = "model:\n  name: mpt_causal_lm\n  d_model: 1024\n  n_layers: 24\n  n_layers: 32\n  n_heads: 16\n"
    exc = error_of(parse_launch, nested, "mpt.yaml")
    assert "`n_layers`" in str(exc) and "lines 4 and 5" in str(exc)
    # YAML merge keys are not duplicates: an explicit key overrides the merged one
    merged = ("base: &base\n  d_model: 1024\n  n_layers: 24\n  n_heads: 16\n"
              "model:\n  <<: *base\n  name: mpt_causal_lm\n  n_layers: 32\n")
    assert parse_launch(merged, "mpt.yaml").spec["layers"] == 32


@pytest.mark.parametrize("text", [
    "-" * 200_000 + " argumentX\n",  # a long line of dashes: a `.*-{4,}` banner regex backtracks quadratically
    "------------------------ arguments ------------------------\n" + "-" * 300_000 + " end of argumentsX",
    "model.num_layers=1 " * 40_000,  # an override file near the size limit
])
def test_new_format_detection_stays_linear(text):
    start = time.perf_counter()
    try:
        parse_launch(text)
    except ParseError as exc:
        check_error(exc)
    assert time.perf_counter() - start < 10  # 0.2-1.7 s here; the quadratic banner match took minutes
