"""`--plot`, `--gpu-hour-usd`, `--objective cost`, the +-x% header and the check's three-way memory
verdict, as a user runs them (needs the CLI glue of issue 17)."""

from __future__ import annotations

import io
import sys

import polars as pl
import pytest

from toposcan import cli, cost

pytest.importorskip("altair")
pytest.importorskip("vl_convert")


def topo(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


BLOOM = ("--model", "bloom-176b", "--gpu", "a100-80", "--nodes", "48")


def test_enumerate_plot_svg_and_interval_header(capsys, tmp_path):
    path = tmp_path / "front.svg"
    rc, out, err = topo(capsys, "enumerate", *BLOOM, "--plot", str(path))
    assert rc == 0 and path.read_text().lstrip().startswith("<svg")
    assert "80% interval (megatron-lm on ampere): step time +-" in err
    assert len(out.strip().splitlines()) == 22  # the terminal still shows the 20 best (plus two header lines)


def test_plot_without_altair_exits_2_with_the_install_hint(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "altair", None)
    for cmd in (["enumerate", *BLOOM], ["evaluate", *BLOOM, "--tp", "4", "--pp", "12"],
                ["check", "tests/fixtures/launch/bloom_tr11_176b_ml.slurm", "--gpu", "a100-80"]):
        rc, out, err = topo(capsys, *cmd, "--plot", str(tmp_path / "x.png"))
        assert rc == 2 and out == "" and "pip install 'toposcan[plot]'" in err, cmd
        assert not (tmp_path / "x.png").exists()


def test_plot_bad_extension_exits_2(capsys, tmp_path):
    rc, _, err = topo(capsys, "enumerate", *BLOOM, "--plot", str(tmp_path / "x.pdf"))
    assert rc == 2 and "must end in one of .html, .png, .svg" in err


def test_evaluate_and_check_plots(capsys, tmp_path):
    rc, out, _ = topo(capsys, "evaluate", *BLOOM, "--tp", "4", "--pp", "12", "--mbs", "2", "--plot", str(tmp_path / "b.png"))
    assert rc == 0 and (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    assert "step time" in out and "+-" in out and "cost              $" in out
    rc, out, _ = topo(capsys, "check", "tests/fixtures/launch/bloom_tr11_176b_ml.slurm", "--gpu", "a100-80",
                      "--plot", str(tmp_path / "c.html"))
    assert rc == 0 and "80% interval" in out and (tmp_path / "c.html").stat().st_size > 10_000


def test_objective_cost_and_gpu_hour_usd(capsys):
    rc, out, _ = topo(capsys, "enumerate", "--model", "llama-2-7b", "--gpu", "h100-80", "--nodes", "1", "--gbs", "64",
                      "--objective", "cost", "--gpu-hour-usd", "2.5", "-f", "csv")
    assert rc == 0
    df = pl.read_csv(io.StringIO(out))
    assert df["cost_usd"].is_sorted() and df["cost_usd"].to_list() == pytest.approx((df["gpu_hours"] * 2.5).to_list())
    assert {"step_time_s_lo", "step_time_s_hi", "mem_gb_lo", "mem_gb_hi", "usd_per_m_tokens"} <= set(df.columns)
    rc, _, err = topo(capsys, "enumerate", "--model", "llama-2-7b", "--gpu", "mi300x", "--nodes", "1", "--objective", "cost")
    assert rc == 2 and "--gpu-hour-usd" in err and len(err.strip().splitlines()) <= 3
    assert "mi300x" not in cost.prices()["gpu"].to_list()


def test_check_memory_verdict_three_ways(capsys):
    """fits (pass), at risk (warn: the 80% interval crosses capacity), does not fit (fail). seeds/001's
    shape on 48 A100-80GB nodes: DP24 TP2 PP8 MBS2 is predicted at 77.6 GiB, interval 71.7-82.2."""
    import toposcan
    from tests.test_cli import SEED001

    def memory(tp: int, pp: int, mbs: int) -> tuple[str, str]:
        args = SEED001 + f"--tensor-model-parallel-size {tp} --pipeline-model-parallel-size {pp} --micro-batch-size {mbs}"
        r = toposcan.check(args=args, nodes=48, gpu="a100-80", model="bloom-176b", compare=False)
        return next((c.code, c.status) for c in r.checks if c.code in ("memory", "memory_at_risk", "oom"))

    assert memory(4, 12, 1) == ("memory", "pass")
    assert memory(2, 8, 2) == ("memory_at_risk", "warn")
    assert memory(8, 1, 1) == ("oom", "fail")  # ran out of memory in seeds/001
