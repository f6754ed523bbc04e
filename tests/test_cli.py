"""`topo` as a user runs it: output formats, exit codes, and one `error:` line (never a traceback) for
bad input. Most tests call `toposcan.cli.main` in-process; a few run the installed `topo` script."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import polars as pl
import pytest

import toposcan
from toposcan import cli

FIX = "tests/fixtures/launch/"
SEED001 = ("--num-layers 72 --hidden-size 14336 --num-attention-heads 64 --seq-length 2048 "
           "--padded-vocab-size 250880 --checkpoint-activations --fp16 --zero-stage 1 --global-batch-size 2016 ")


def topo(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `topo argv...` in-process: (exit code, stdout, stderr)."""
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _one_error_line(err: str) -> str:
    """The error block is `error: <one line>`, optionally a blank line and `hint: <one line>`."""
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error: "), err
    assert all(ln.startswith(("error: ", "hint: ")) for ln in lines), err
    assert sum(ln.startswith("error: ") for ln in lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------------------------
# enumerate


def test_enumerate_default_table_is_ranked_and_names_the_default_model(capsys):
    rc, out, err = topo(capsys, "enumerate", "--nodes", "48", "--gpu", "a100-80")
    assert rc == 0
    assert "bloom-176b" in err and "default" in err  # the stated default model (seeds/001's)
    header, *rows = [ln for ln in out.splitlines() if ln.strip() and not set(ln) <= set("-+| ")]
    cols = header.split()
    assert {"dp", "tp", "pp", "mbs", "step_s", "mem_gb"} <= set(cols)
    assert len(rows) == 20  # the default top 20 on a terminal
    k = cols.index("step_s")
    times = [float(r.split()[k]) for r in rows]
    assert times == sorted(times)


def test_enumerate_csv_is_the_api_frame(capsys):
    rc, out, _ = topo(capsys, "enumerate", "--nodes", "4", "--gpu", "a100-80", "--model", "llama-2-7b",
                      "--top", "15", "--format", "csv")
    assert rc == 0
    df = pl.read_csv(io.StringIO(out))
    api = toposcan.enumerate(model="llama-2-7b", nodes=4, gpu="a100-80", top=15)
    assert df.height == api.height == 15
    assert df["step_time_s"].to_list() == pytest.approx(api["step_time_s"].to_list(), rel=1e-6)
    assert (df["dp"] * df["tp"] * df["pp"] == 32).all() and df["fits"].all()


@pytest.mark.parametrize("fmt", ["json", "markdown", "parquet", "csv"])
def test_enumerate_writes_every_format_to_a_file(capsys, tmp_path, fmt):
    path = tmp_path / f"out.{fmt}"
    rc, out, _ = topo(capsys, "enumerate", "--nodes", "2", "--gpu", "h100-80", "--model", "gpt3-1.3b",
                      "--top", "7", "--format", fmt, "-o", str(path))
    assert rc == 0 and out == ""  # data went to the file
    if fmt == "parquet":
        df = pl.read_parquet(path)
    elif fmt == "csv":
        df = pl.read_csv(path)
    elif fmt == "json":
        df = pl.DataFrame(json.loads(path.read_text()))
    else:
        lines = path.read_text().splitlines()
        assert lines[1].startswith("|") and set(lines[1]) <= set("|-: ")  # a markdown header rule
        assert len(lines) == 2 + 7
        return
    assert df.height == 7 and "step_time_s" in df.columns
    assert df["step_time_s"].is_sorted()


def test_enumerate_stats_and_pareto(capsys):
    rc, out, err = topo(capsys, "enumerate", "--nodes", "8", "--gpu", "a100-80", "--model", "llama-2-13b",
                        "--pareto", "step_time_s,mem_gb", "--stats", "--format", "csv")
    assert rc == 0
    assert "candidates" in err and "scored" in err
    df = pl.read_csv(io.StringIO(out))
    # a Pareto front of (min step time, min memory): sorted by time, memory strictly falls
    df = df.sort("step_time_s")
    assert df.height >= 2 and (df["mem_gb"].diff().drop_nulls() < 0).all()


def test_enumerate_shape_search_from_a_budget(capsys):
    rc, out, _ = topo(capsys, "enumerate", "--nodes", "48", "--gpu", "a100-80", "--params", "176e9",
                      "--tolerance", "3%", "--hidden", "13312:14848:512", "--layers", "64:80:8", "--top", "10",
                      "--format", "csv")
    assert rc == 0
    df = pl.read_csv(io.StringIO(out))
    assert df.height == 10
    assert ((df["params"] - 176e9).abs() <= 0.03 * 176e9).all()
    assert df["hidden"].n_unique() >= 1 and (df["hidden"] % 512 == 0).all()


# ------------------------------------------------------------------------------------------------
# bad input: one line naming the field, exit 2 (a bad value or a usage error, issue 14)

BAD = [
    (["enumerate", "--nodes", "0"], 2, "nodes"),
    (["enumerate", "--nodes", "-3"], 2, "nodes"),
    (["enumerate", "--nodes", "abc"], 2, "nodes"),
    (["enumerate", "--nodes", "1" + "0" * 40], 2, "nodes"),
    (["enumerate", "--gpu", "z100"], 2, "gpu"),
    (["enumerate", "--model", "gpt-9"], 2, "model"),
    (["enumerate", "--gbs", "0"], 2, "gbs"),
    (["enumerate", "--seq-len", "nan"], 2, "seq_len"),  # overrides the default model's
    (["enumerate", "--mbs", "1,x"], 2, "mbs"),
    (["enumerate", "--hidden", "16384:12288"], 2, "hidden"),
    (["enumerate", "--recompute", "some"], 2, "recompute"),
    (["enumerate", "--precision", "int3"], 2, "precision"),
    (["enumerate", "--format", "xml"], 2, "format"),
    (["enumerate", "--format", "parquet"], 2, "parquet"),
    (["enumerate", "--sort", "speed"], 2, "sort"),
    (["enumerate", "--params", "1e9", "--tolerance", "150%"], 2, "tolerance"),
    (["enumerate", "--bogus"], 2, "--bogus"),
    (["evaluate", "--tp", "0"], 2, "tp"),
    (["evaluate", "--zero-stage", "4"], 2, "zero_stage"),
    (["evaluate", "--cp", "0"], 2, "cp"),
    (["evaluate", "--activation", "relu", "--layers", "2", "--hidden", "64", "--heads", "4"], 2, "activation"),
    (["gpus", "--format", "yaml"], 2, "format"),
    (["validate", "--table", "nope"], 2, "table"),
    (["check"], 2, "file"),
    (["check", "no/such/file.sh", "--gpu", "a100-80", "--nodes", "1"], 2, "file.sh"),
    (["check", "--args", "--tensor-model-parallel-size 2", "--gpu", "a100-80", "--nodes", "1",
      "--format", "xml"], 2, "format"),
    (["nope"], 2, "nope"),
]


@pytest.mark.parametrize("argv,code,field", BAD, ids=[" ".join(a)[:60] for a, _, _ in BAD])
def test_bad_input_is_one_line_naming_the_field(capsys, argv, code, field):
    rc, out, err = topo(capsys, *argv)
    assert rc == code, err
    line = _one_error_line(err)
    assert field in line, line
    assert out == ""


def test_fields_without_a_model_override_the_default_model(capsys):
    # no --model and not all of layers/hidden/heads: bloom-176b (the default) with the given fields; its
    # 4x FFN follows a new hidden size, as it does when bloom-176b is named (hidden 4096 -> ffn 16384)
    rc, out, err = topo(capsys, "evaluate", "--hidden", "4096", "--heads", "32", "--nodes", "2", "--zero-stage", "3", "--format", "csv")
    named_rc, named, _ = topo(capsys, "evaluate", "--model", "bloom-176b", "--hidden", "4096", "--heads", "32",
                              "--nodes", "2", "--zero-stage", "3", "--format", "csv")
    assert rc == named_rc == 0
    a, b = pl.read_csv(io.StringIO(out)), pl.read_csv(io.StringIO(named))
    assert a["ffn_hidden"][0] == b["ffn_hidden"][0] == 16384 and a["params"][0] == b["params"][0]


def test_empty_space_says_why(capsys):
    # hidden 4096 is not a multiple of 60 heads: every candidate breaks that rule, and the count says so
    rc, out, err = topo(capsys, "enumerate", "--hidden", "4096", "--heads", "60")
    assert rc == 1 and out == ""
    assert "hidden_not_divisible_by_heads" in err and "no feasible configuration" in err


def test_unknown_gpu_hint_lists_the_catalog(capsys):
    rc, _, err = topo(capsys, "enumerate", "--gpu", "a100")
    assert rc == 2
    line = _one_error_line(err)
    assert all(g in line for g in ("a100-80", "h100-80", "mi300x"))
    assert "hint: `topo gpus`" in err


def test_installed_script_never_prints_a_traceback():
    exe = shutil.which("topo") or os.path.join(os.path.dirname(sys.executable), "topo")
    if not os.path.exists(exe):
        pytest.skip("the `topo` script is not installed beside this interpreter")
    for argv, code in ((["enumerate", "--nodes", "-1"], 2), (["evaluate", "--gpu", "a\x01b"], 2),
                       (["check", FIX + "hostile_truncated_ds.json", "--gpu", "a100-80", "--nodes", "1"], 2)):
        p = subprocess.run([exe, *argv], capture_output=True, text=True, timeout=120)
        assert p.returncode == code, p.stderr
        _one_error_line(p.stderr)


# ------------------------------------------------------------------------------------------------
# the other commands


def test_version_and_help(capsys):
    rc, out, _ = topo(capsys, "--version")
    assert rc == 0 and out.strip() == f"topo {toposcan.__version__}"
    for cmd in ("enumerate", "evaluate", "check", "validate", "gpus", "models", "profiles"):
        rc, out, _ = topo(capsys, cmd, "--help")
        assert rc == 0 and "Usage:" in out and "--format" in out, cmd
    rc, out, _ = topo(capsys, "--help")
    assert rc == 0 and "topo check launch.sh" in out  # the examples
    rc, out, err = topo(capsys)  # bare `topo`: the help, as a usage error
    assert rc == 2 and "Usage:" in out + err and "Traceback" not in err


@pytest.mark.parametrize("cmd,api", [("gpus", toposcan.gpus), ("models", toposcan.models),
                                     ("profiles", toposcan.profiles)])
def test_catalog_listings_match_the_api(capsys, cmd, api):
    rc, out, _ = topo(capsys, cmd, "--format", "csv")
    assert rc == 0
    assert pl.read_csv(io.StringIO(out))["name"].to_list() == api()["name"].to_list()
    rc, out, _ = topo(capsys, cmd)
    assert rc == 0 and all(n in out for n in api()["name"])


def test_models_lists_exact_params(capsys):
    # llama-2-7b: 6,738,415,616 parameters (Touvron et al. 2023, the HF checkpoint's count)
    rc, out, _ = topo(capsys, "models", "--format", "json")
    assert rc == 0
    by = {r["name"]: r for r in json.loads(out)}
    assert by["llama-2-7b"]["params"] == 6_738_415_616


def test_evaluate_bloom_and_its_stage_memory(capsys):
    # BLOOM-176B as trained (seeds/001 and the tr11 launch script): 48 nodes, TP 4, PP 12, MBS 2
    rc, out, _ = topo(capsys, "evaluate", "--model", "bloom-176b", "--nodes", "48", "--tp", "4", "--pp", "12",
                      "--mbs", "2", "--gbs", "2048")
    assert rc == 0
    assert "fits" in out and "DOES NOT FIT" not in out
    assert "memory per stage" in out
    stage_lines = [ln for ln in out.split("memory per stage")[1].splitlines() if ln.strip()[:2].strip().isdigit()]
    assert len(stage_lines) == 12


def test_evaluate_broken_rule_exits_1(capsys):
    # dp 4 x mbs 3 does not divide gbs 2048
    rc, out, _ = topo(capsys, "evaluate", "--model", "bloom-176b", "--nodes", "48", "--tp", "8", "--pp", "12",
                      "--mbs", "3", "--gbs", "2048")
    assert rc == 1 and "BROKEN RULE" in out and "gbs" in out


def test_validate_machine_formats_are_one_document(capsys):
    # csv: one table per stream (rows on stdout, the summary on stderr); json: one object with both
    rc, out, err = topo(capsys, "validate", "--table", "seed004-tflops", "--format", "csv")
    assert rc == 0
    rows = pl.read_csv(io.StringIO(out))
    assert {"measured", "predicted", "error_pct"} <= set(rows.columns) and rows.height == 5  # seeds/004: 5 runs
    assert "mape" in err
    rc, out, _ = topo(capsys, "validate", "--table", "seed004-tflops", "--format", "json")
    doc = json.loads(out)
    assert rc == 0 and len(doc["rows"]) == 5 and doc["summary"][0]["table"] == "seed004-tflops"
    # strict JSON: the OOM rows of seeds/001 have no measured value, written as null, never NaN
    rc, out, _ = topo(capsys, "validate", "--table", "seed001-mem", "--format", "json")

    def no_nan(c):
        raise AssertionError(f"{c} in JSON output")

    doc = json.loads(out, parse_constant=no_nan)
    assert rc == 0 and any(r["measured"] is None for r in doc["rows"])


def test_validate_summary(capsys):
    rc, out, _ = topo(capsys, "validate", "--table", "seed002", "--summary", "--format", "csv")
    assert rc == 0
    df = pl.read_csv(io.StringIO(out))
    assert {"table", "rows", "mape", "max_error", "spearman"} <= set(df.columns)
    assert df["rows"].sum() > 0 and (df["mape"] < 8).all()  # the seeds/002 target


# ------------------------------------------------------------------------------------------------
# check: exit codes a launch script can use


def test_check_exit_codes(capsys):
    rc, out, _ = topo(capsys, "check", FIX + "bloom_tr11_176b_ml.slurm", "--gpu", "a100-80")
    assert rc == 0 and "pass" in out.lower()
    # seeds/001 "GBS Variations": DP 48 TP 8 PP 1 ran out of memory
    oom = SEED001 + "--tensor-model-parallel-size 8 --pipeline-model-parallel-size 1 --micro-batch-size 1"
    rc, out, _ = topo(capsys, "check", "--args", oom, "--nodes", "48", "--gpu", "a100-80", "--model", "bloom-176b")
    assert rc == 1 and "oom" in out.lower()
    # seeds/001 tile/wave table: hidden 14400 (head dim 150) runs, but warns; --strict turns that into 3
    warn = SEED001.replace("14336", "14400").replace("64 ", "96 ") + (
        "--tensor-model-parallel-size 8 --pipeline-model-parallel-size 12 --micro-batch-size 1")
    base = ["check", "--args", warn, "--nodes", "48", "--gpu", "a100-80", "--model", "bloom-176b"]
    rc, _, _ = topo(capsys, *base)
    assert rc == 0
    rc, _, _ = topo(capsys, *base, "--strict")
    assert rc == 3
    rc, out, _ = topo(capsys, *base, "--format", "json")
    report = json.loads(out)
    assert rc == 0 and report["verdict"] == "warn"
    assert any(c["status"] == "warn" for c in report["checks"])
