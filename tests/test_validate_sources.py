"""The Megatron-Bridge runs as data (data/published/megatron_bridge.csv), and the validation report
per source and framework with its leave-one-group-out refits (validate.report, pointfit)."""

import csv
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from toposcan import _core, mbridge, pointfit, spec
from toposcan import validate as v
from toposcan.calibrate import TIME_KEYS, core_inputs
from toposcan.errors import InputError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "megatron_bridge_performance.csv"


@pytest.fixture(scope="module")
def rows():
    return v.load("megatron_bridge", "published")


def _raw(r):
    return {k: val for k, val in r.items() if k != "row" and not k.startswith("our_")}


def test_our_columns_are_the_mapping_of_the_source_columns(rows):
    # The committed our_* columns cannot drift from toposcan.mbridge.map_row.
    assert len(rows) == 293  # the shared README: 293 runs
    for r in rows:
        assert {k: r[k] for k in mbridge.OUR_COLUMNS} == mbridge.map_row(_raw(r)), r["row"]


@pytest.mark.skipif(not SHARED.exists(), reason="the shared transcription is not beside this checkout")
def test_source_columns_are_the_shared_transcription(rows):
    with SHARED.open(encoding="utf-8", newline="") as f:
        shared = list(csv.DictReader(f))
    assert [_raw(r) for r in rows] == shared


def test_mapped_runs_per_gpu(rows):
    fit = Counter(r["our_gpu"] for r in rows if r["our_set"] == "fit")
    new = Counter(r["our_gpu"] for r in rows if r["our_set"] == "new-coverage")
    # DGX-H100 has 39 runs in the source: 4 Nemotron 3 Nano (Mamba hybrid) and the 25.11 GPT-OSS run
    # whose GA 2 contradicts GBS 512 / (MBS 4 x dp 16) stay skipped: 34 mapped. Of them the fit set is
    # what the mapping before issue 16 expressed, 25; new coverage 1 SFT, 1 LoRA, the 25.09 DeepSeekV3
    # variant in parentheses (FP8 blockwise) and 6 Qwen3-235B runs with EP 32 over dp 16 (MoE parallel
    # folding, expert TP 1): 9.
    assert (fit["h100-80"], new["h100-80"]) == (25, 9)
    assert sum(fit.values()) == 206 and sum(new.values()) == 27
    assert not any(r["our_skip"] for r in rows if r["our_set"])
    assert set(fit) == set(new) | {"b300"} == {"h100-80", "b200", "b300", "gb200", "gb300"}


def test_step_time_from_the_measured_throughput(rows):
    # Row 261: Megatron-Bridge docs/performance-summary-archive.md, "25.11 NeMo Container", System
    # DGX-H100: LLAMA3_70B, 64 GPUs, FP8-CS, GBS 128, MBS 1, seq 8192, TP 4, PP 8, CP 1, VP 5, GA 64,
    # 1602 tokens/s/GPU. Step = 128 x 8192 / (1602 x 64) = 1,048,576 / 102,528 = 10.2272 s; dp = 64 / 32 = 2.
    r = next(r for r in rows if r["row"] == "261")
    assert (r["model_name"], r["gpu"], r["n_gpus"], r["measured_tokens_per_sec_per_gpu"]) == (
        "LLAMA3_70B", "h100-80gb-sxm", "64", "1602")
    assert float(r["our_step_time_s"]) == pytest.approx(10.2272, rel=2e-5)
    assert (r["our_model"], r["our_gpu"], r["our_precision"], r["our_fp8_recipe"], r["our_dp"]) == (
        "llama-3-70b", "h100-80", "fp8", "current", "2")
    case = next(c for c in v.mbridge_cases()[0] if c.line == 261)
    assert case.measured == pytest.approx(10.2272, rel=2e-5)
    assert (case.kwargs["dp"], case.kwargs["tp"], case.kwargs["pp"], case.kwargs["vpp"]) == (2, 4, 8, 5)


def test_dp_agrees_with_the_stated_gradient_accumulation(rows):
    # dp = GPUs / (tp pp cp), experts not multiplied in: the 25.x tables' GA column then gives back the
    # GBS for every mapped run (an EP-multiplied dp would not: e.g. row 266, Qwen3-235B with EP 32).
    checked = 0
    for r in rows:
        ga = re.search(r"GA=(\d+)", r["notes"])
        if ga and not r["our_skip"]:
            assert int(r["gbs"]) == int(ga.group(1)) * int(r["mbs"]) * int(r["our_dp"]), r["row"]
            checked += 1
    assert checked == 56  # 43 of the fit set, 13 new coverage


def test_precision_mapping(rows):
    by = Counter((r["precision"], r["our_precision"], r["our_fp8_recipe"]) for r in rows if r["our_variant"] == "main")
    assert {ours for (_, ours, _) in by} <= {"bf16", "fp8", "mxfp8", "nvfp4"}
    # 26.x plain FP8 and FP8-CS: current scaling (the performance recipes have no delayed scaling)
    assert by[("fp8", "fp8", "current")] == 44 and by[("fp8-cs", "fp8", "current")] > 0
    assert by[("fp8-mx", "mxfp8", "")] > 0 and by[("mxfp8", "mxfp8", "")] > 0
    assert all(recipe == "" for (_, ours, recipe) in by if ours != "fp8")
    # 25.09 rows state no precision: the main values are FP8 (footnote), the variants in parentheses
    # FP8 at "different FP8 quantization granularities": blockwise, new coverage.
    paren = [r for r in rows if not r["precision"] and r["our_variant"] == "paren"]
    assert len(paren) == 11 and all(r["our_fp8_recipe"] == "blockwise" for r in paren)
    assert all(r["our_set"] in ("new-coverage", "") for r in paren)


def test_every_run_is_scored_or_counted():
    cases, skipped = v.mbridge_cases()
    assert len(cases) + sum(skipped.values()) == 293
    assert all(reason in mbridge.SKIP_REASONS or ":" in reason or reason.startswith("set ") for reason in skipped)
    assert skipped["set new-coverage"] == 27 and len(cases) == 197  # the fit set: megatron-core's joint fit
    # With the catalog of issue 16 (GB200/GB300/B300, Qwen3, DeepSeek-V3, GPT-OSS, Kimi-K2, mxfp8/nvfp4)
    # every mapped run but the core's rejections is scored: 206 mapped, at most 16 rejected.
    assert len(cases) >= 190 and {c.extra["gpu"] for c in cases} == {"h100-80", "b200", "b300", "gb200", "gb300"}
    assert {c.extra["family"] for c in cases} <= set(mbridge.FAMILY.values())


def test_nodes_for_rack_scale_machines():
    assert v._nodes(64, 8) == (8, 8)
    assert v._nodes(8, 72) == (1, 8)  # one NVL72 rack partly used
    assert v._nodes(256, 72) == (4, 64)  # 64 GPUs of each rack
    assert v._nodes(128, 4) == (32, 4)


def test_profile_switch_is_one_line(monkeypatch):
    monkeypatch.setattr(v, "MBRIDGE_PROFILE", {"*": "megatron-lm-a100"})
    assert {c.kwargs["profile"] for c in v.mbridge_cases()[0]} == {"megatron-lm-a100"}
    assert {c.kwargs["profile"] for c in v.mbridge_cases("llm-foundry-h100")[0]} == {"llm-foundry-h100"}


def test_megatron_bridge_is_a_validate_table():
    rows, summary = v.validate("megatron-bridge")
    assert rows.height == len(v.mbridge_cases()[0])
    assert summary["table"].to_list() == ["megatron-bridge"]


# --- pointfit: fit.rs's objective -------------------------------------------------------------------


def test_time_bounds_are_the_cores():
    # The core accepts a profile at each bound and rejects one just past it.
    c = v.narayanan2021_cases()[0]
    m, cl, s, prof = core_inputs(c.kwargs)
    for k, (lo, hi) in zip(TIME_KEYS, pointfit.TIME_BOUNDS):
        for x in (lo, hi):
            assert np.isfinite(pointfit.step_times([(m, cl, s)], {**prof, k: x})[0]), (k, x)
        for x in (lo - 1e-3 * (hi - lo), hi + 1e-3 * (hi - lo)):
            with pytest.raises(InputError, match=k):
                v.api._core_call(_core.evaluate, m, cl, s, {**prof, k: x}, spec.options_dict(0.0, 1e12, False, False))


def test_pointfit_reaches_the_rust_fit():
    # Megatron-LM Table 1 (10 rows): the same objective minimized by fit.rs (Nelder-Mead) and here.
    name = v.NARAYANAN_PROFILE
    cases, free = v.FITS[name]
    cases = cases()
    start, mask = v._fit_start(name)
    runs = [core_inputs(c.kwargs)[:3] for c in cases]
    steps = np.array([c.measured for c in cases])
    rust = v.fit_profile(name, cases, free)
    rust_prof = {**start, **{k: float(rust["profile"][k]) for k in TIME_KEYS}}
    ours = pointfit.fit(runs, list(steps), mask, start)
    rust_loss = pointfit.loss(runs, steps, rust_prof, start, mask)
    assert pointfit.loss(runs, steps, ours, start, mask) <= rust_loss * (1 + 1e-4)
    mape = float(np.mean(np.abs(pointfit.step_times(runs, ours) / steps - 1))) * 100
    assert mape == pytest.approx(rust["mape"], abs=0.05)


def test_pointfit_without_rows_is_its_start():
    start, mask = v._fit_start(v.NARAYANAN_PROFILE)
    assert pointfit.fit([], [], mask, start) == start


# --- the report ---------------------------------------------------------------------------------------

SMALL = ("narayanan2021", "h200-steps", "h100-steps", "megatron-bridge")


@pytest.fixture(scope="module")
def small():
    return v.report(sources=SMALL), v.report_rows(sources=SMALL)


def test_report_columns(small):
    rep, _ = small
    assert rep.columns[:2] == ["source", "framework"]
    for col in ("n", "mape", "max_error", "bias_pct", "spearman", "fit_mape", "fit_bias_pct"):
        assert col in rep.columns
    for part in v.LOGO_PARTITIONS:
        for stat in ("mape", "max_error", "bias_pct", "fit_rows"):
            assert f"logo_{part}_{stat}" in rep.columns
    assert rep["source"].to_list() == list(SMALL)
    assert rep["n"].sum() == v.report_rows(sources=SMALL).height


def test_spearman_is_a_correlation(small):
    rep, _ = small
    rho = rep["spearman"].drop_nans()
    assert rho.len() > 0 and ((rho >= -1) & (rho <= 1)).all()


def test_bias_and_mape_agree_with_the_rows(small):
    rep, df = small
    nar = df.filter(pl.col("source") == "narayanan2021")
    err = (nar["predicted_s"] / nar["measured_s"] - 1) * 100
    row = rep.filter(pl.col("source") == "narayanan2021").row(0, named=True)
    assert row["bias_pct"] == pytest.approx(err.mean())
    assert row["mape"] == pytest.approx(err.abs().mean())
    assert row["max_error"] == pytest.approx(err.abs().max())
    assert row["mape"] >= abs(row["bias_pct"])


def test_held_out_error_is_not_below_the_joint_fit(small):
    # For each held group g: the joint fit minimizes SSE(all) + ridge, the held-out fit SSE(rest) + ridge;
    # adding the two optimality conditions gives SSE_g(joint) <= SSE_g(held out) (SSE: summed squared log
    # error, the fits' objective). It must hold for every group of every partition.
    _, df = small
    for part in v.LOGO_PARTITIONS:
        col = f"logo_{part}_s"
        key = "source" if part == "source" else part
        groups = df.filter(pl.col(col).is_not_nan()).group_by([key, "profile"])
        for _, g in groups:
            m = g["measured_s"].to_numpy()
            joint = float(np.sum(np.log(g["fit_s"].to_numpy() / m) ** 2))
            held = float(np.sum(np.log(g[col].to_numpy() / m) ** 2))
            assert joint <= held * (1 + 1e-6) + 1e-12, (part, g["source"][0])


def test_a_source_alone_in_its_framework_is_predicted_from_the_fit_start(small):
    # Megatron-LM's table is the only megatron-lm source: without it nothing is left to fit, so its
    # held-out prediction is the fit's starting point (FIT_START with the nccl-tests link levels).
    rep, df = small
    assert rep.filter(pl.col("source") == "narayanan2021")["logo_source_fit_rows"][0] == 0
    nar = df.filter(pl.col("source") == "narayanan2021")
    start, _ = v._fit_start(v.NARAYANAN_PROFILE)
    runs = [core_inputs(c.kwargs)[:3] for c in v.narayanan2021_cases()]
    assert nar["logo_source_s"].to_numpy() == pytest.approx(pointfit.step_times(runs, start))


def test_megatron_bridge_groups_by_gpu_and_family(small):
    _, df = small
    mb = df.filter(pl.col("source") == "megatron-bridge")
    assert mb["logo_gpu_s"].is_not_nan().all() and mb["logo_family_s"].is_not_nan().all()
    assert df.filter(pl.col("source") != "megatron-bridge")["logo_gpu_s"].is_nan().all()
    by_gpu = v.report(by=("source", "gpu"), sources=SMALL).filter(pl.col("source") == "megatron-bridge")
    assert sorted(by_gpu["gpu"].to_list()) == ["b200", "b300", "gb200", "gb300", "h100-80"]


def test_report_rejects_bad_arguments():
    with pytest.raises(InputError, match="`by` must name"):
        v.report(by=("source", "colour"))
    with pytest.raises(InputError, match="got `seed999`"):
        v.report(sources=("seed999",))
    with pytest.raises(InputError, match="`by` must name .* got none"):
        v.report(by=())


def test_report_on_every_source_is_bounded():
    # The whole report (all sources, three partitions) on the suite's 2 cores: well under a minute.
    import time

    t = time.perf_counter()
    rep = v.report()
    assert time.perf_counter() - t < 60
    assert set(rep["source"]) == set(v.SOURCES)
    assert not math.isnan(rep.filter(pl.col("source") == "seed001")["mape"][0])


def test_megatron_core_profile_is_the_joint_fit():
    # No hand tuning: refitting megatron-core on every expressible Megatron-Bridge run (one fit across
    # H100, B200, B300, GB200 and GB300, not one per table) reproduces the stored constants and error.
    import math

    import numpy as np

    from toposcan import catalog

    cases, _ = v.mbridge_cases(profile="megatron-core", which="all")
    runs = [core_inputs(c.kwargs)[:3] for c in cases]
    steps = [c.measured for c in cases]
    start, free = v._fit_start("megatron-core")
    prof = pointfit.fit(runs, steps, free, start)
    stored = catalog.profile_spec("megatron-core")
    for k in v.TIME_KEYS:
        assert math.isclose(prof[k], stored[k], rel_tol=0.02, abs_tol=1e-3), k
    err = np.abs(pointfit.step_times(runs, prof) / np.array(steps) - 1) * 100
    assert math.isclose(float(err.mean()), stored["fit"]["mape"], abs_tol=0.1)
