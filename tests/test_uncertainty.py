"""80% intervals (toposcan.uncertainty): the stored table matches the data, the intervals cover
what they claim on measured runs left out group by group, and the verdicts and widening behave."""

from __future__ import annotations

import math

import polars as pl
import pytest

import toposcan
from toposcan import uncertainty as u


@pytest.fixture(scope="module")
def res() -> pl.DataFrame:
    return u.residuals()


def test_stored_table_matches_a_refit(res):
    """data/intervals.toml is what fit_intervals() gives today: profiles or data moved without it
    when this fails (regenerate with `python -m toposcan.uncertainty`)."""
    fresh = {(c.framework, c.family, c.quantity): c for c in u.fit_intervals(res)}
    stored = {(c["framework"], c["family"], c["quantity"]): c for c in u.stored()["cell"]}
    assert set(fresh) == set(stored), "cells added or gone: regenerate data/intervals.toml"
    for key, c in fresh.items():
        s = stored[key]
        assert (s["runs"], s["groups"]) == (c.runs, c.groups), key
        assert s["lo"] == pytest.approx(c.lo, abs=2e-6) and s["hi"] == pytest.approx(c.hi, abs=2e-6), key
    assert (u.stored()["default"]["lo"], u.stored()["default"]["hi"]) == pytest.approx(u.DEFAULT, abs=1e-6)


def test_leave_one_group_out_coverage_is_near_80_percent(res):
    """The issue's target: the 80% interval, fitted without each group, covers 70-90% of that group's
    measured values, over all step-time and memory runs that validate holds."""
    cov = u.coverage(res)
    total = cov.filter(pl.col("table") == "all").row(0, named=True)
    assert total["runs"] >= 500  # seeds/001, seeds/002, Narayanan 2021, our H100/H200 runs
    assert 0.7 <= total["coverage"] <= 0.9, cov
    # No source is far off either way (a per-source miss this large would mean a biased cell). The
    # Megatron-Bridge SFT/LoRA/blockwise/folding runs (27, `megatron-bridge-new`) are the worst
    # predicted (38% MAPE against 19% for the other 197 of the same cell): 15 of 27 inside (0.56).
    assert cov.filter(pl.col("table") != "megatron-bridge-new")["coverage"].min() >= 0.6, cov
    assert cov.filter(pl.col("table") == "megatron-bridge-new")["coverage"][0] >= 0.5, cov


def test_residual_signs_follow_the_validation_error(res):
    """r = ln(measured/predicted): a step time predicted 10% too slow is -0.095; a throughput table's
    residual is that of the step time (predicted tokens/s too high = step predicted too fast)."""
    from toposcan.validate import validate

    df, _ = validate("seed002-h100_bf16")
    r0 = df.row(0, named=True)
    mine = res.filter(pl.col("table") == "seed002-h100_bf16")["residual"][0]
    assert mine == pytest.approx(math.log(r0["predicted"] / r0["measured"]))
    df, _ = validate("seed001")
    r0 = df.row(0, named=True)
    assert res.filter(pl.col("table") == "seed001")["residual"][0] == pytest.approx(math.log(r0["measured"] / r0["predicted"]))


def test_interval_widens_for_few_runs_and_defaults_for_none():
    rng = [(-1) ** i * 0.01 * (i % 5) for i in range(40)]
    wide = u.interval(rng[:5])
    narrow = u.interval(rng)
    assert wide[1] - wide[0] > narrow[1] - narrow[0]
    assert u.interval([0.01, -0.02]) == u.DEFAULT
    lo, hi = u.interval([0.0] * 20)  # no spread: the 2% floor either side
    assert (lo, hi) == pytest.approx((-u.FLOOR, u.FLOOR))


def test_add_intervals_brackets_the_prediction_and_uses_the_cell():
    f = toposcan.evaluate("bloom-176b", gpu="a100-80", nodes=48, tp=4, pp=12, mbs=2)
    out = u.add_intervals(f, "megatron-deepspeed", "a100-80")
    r = out.row(0, named=True)
    assert r["step_time_s_lo"] < r["step_time_s"] < r["step_time_s_hi"]
    assert r["mem_gb_lo"] < r["mem_gb"] < r["mem_gb_hi"]
    lo, hi = u.bounds("megatron-deepspeed", "a100-40", "step_time_s")  # same family, same cell
    assert r["step_time_s_hi"] == pytest.approx(r["step_time_s"] * math.exp(hi))
    assert (lo, hi) != u.DEFAULT
    # A framework with no measured runs on Blackwell gets the wide default.
    unknown = u.add_intervals(f, "megatron-deepspeed", "b200").row(0, named=True)
    assert unknown["step_time_s_hi"] == pytest.approx(r["step_time_s"] * 1.25)
    assert unknown["step_time_s_lo"] == pytest.approx(r["step_time_s"] * 0.75)


def test_gpu_family():
    assert [u.gpu_family(g) for g in ("a100-80", "rtx-a6000", "h100-80", "h200", "b200", "v100-32", "mi300x")] == \
        ["ampere", "ampere", "hopper", "hopper", "blackwell", "other", "other"]
    # Every catalog GPU's family agrees with its full name (architecture by product line).
    lines = {"ampere": ("A100", "A5000", "A6000"), "hopper": ("H100", "H200", "H800", "H20 "),
             "blackwell": ("B200", "B300", "GB200", "GB300")}
    for name, full in toposcan.gpus().select("name", "full_name").iter_rows():
        want = next((fam for fam, keys in lines.items() if any(k in full for k in keys)), "other")
        assert u.gpu_family(name) == want, (name, full)


def test_memory_verdict_three_ways():
    assert u.memory_verdict(60.0, 70.0, 80.0) == "fits"
    assert u.memory_verdict(75.0, 85.0, 80.0) == "at risk"
    assert u.memory_verdict(81.0, 90.0, 80.0) == "does not fit"
    assert u.memory_verdict(70.0, 80.0, 80.0) == "fits"  # at capacity still fits


def test_plus_minus_display():
    assert u.plus_minus(10.0, 9.5, 10.8) == "+-8%"
    assert u.plus_minus(10.0, 7.5, 12.5) == "+-25%"
    assert u.plus_minus(float("nan"), 1.0, 2.0) == ""


def test_unknown_quantity_is_one_line_error():
    with pytest.raises(toposcan.InputError, match="`quantity` must be one of"):
        u.bounds("pytorch", "h200", "tflops")


def test_describe_names_the_cell_and_its_runs():
    line = u.describe("megatron-deepspeed", "a100-80")
    cell = next(c for c in u.stored()["cell"] if (c["framework"], c["family"], c["quantity"]) ==
                ("megatron-deepspeed", "ampere", "step_time_s"))
    assert line.startswith("80% interval (megatron-deepspeed on ampere): step time +-")
    assert f"({cell['runs']} runs)" in line
    assert u.describe("torchtitan", "b200") == ("80% interval (torchtitan on blackwell): step time +-25% "
                                                 "(no runs: the default), memory +-25% (no runs: the default)")
    # Megatron-Core on Blackwell rests on NVIDIA's published runs: wider than the default.
    assert "(no runs" not in u.describe("megatron-core", "b200").split("memory")[0]


def test_memory_check_uses_the_cell_interval():
    lo, hi = u.bounds("megatron-deepspeed", "a100-80", "mem_gb")
    verdict, mem_lo, mem_hi = u.memory_check(70.0, "megatron-deepspeed", "a100-80", 80.0)
    assert (mem_lo, mem_hi) == pytest.approx((70 * math.exp(lo), 70 * math.exp(hi)))
    assert verdict == ("fits" if mem_hi <= 80 else "at risk")
    # Just under capacity: the interval crosses it. Far above: no part of it fits.
    assert u.memory_check(79.0, "megatron-deepspeed", "a100-80", 80.0)[0] == "at risk"
    assert u.memory_check(120.0, "megatron-deepspeed", "a100-80", 80.0)[0] == "does not fit"
