"""Calibration against your own measured runs: `toposcan.calibrate`, profile files, `topo calibrate`."""

from __future__ import annotations

import _thread
import importlib
import json
import threading
import time

import numpy as np
import polars as pl
import pytest

import toposcan
from toposcan import cli, pointfit
from toposcan import validate as v

calmod = importlib.import_module("toposcan.calibrate")  # the package's `calibrate` is the function

CONFIGS = [dict(model=m, gpu="a100-80", nodes=n, tp=1, pp=1, mbs=b, gbs=b * 8 * n * 2, zero_stage=3,
                recompute=r, flash_attention=True, seq_len=2048)
           for m, n, b, r in [("mpt-1b", 1, 8, "none"), ("mpt-7b", 1, 4, "full"), ("mpt-7b", 4, 2, "full"),
                              ("mpt-13b", 2, 2, "full"), ("mpt-1b", 4, 16, "none"), ("mpt-30b", 8, 1, "full")]]


def _truth_file(tmp_path, **consts) -> str:
    """A profile file: llm-foundry-a100 with some constants changed (the hidden ground truth)."""
    path = tmp_path / "truth.toml"
    body = "\n".join(f"{k} = {val}" for k, val in consts.items())
    path.write_text(f'["truth"]\nbase = "llm-foundry-a100"\n{body}\n')
    return str(path)


def _measure(truth: str) -> list[dict]:
    runs = []
    for c in CONFIGS:
        r = toposcan.evaluate(**c, profile=truth)
        runs.append({**c, "step_time_s": r["step_time_s"][0], "mem_gb": r["mem_gb"][0]})
    return runs


def test_recovers_a_known_constant_exactly(tmp_path):
    # Runs "measured" with gemm_efficiency 0.70 (the catalog's llm-foundry-a100 has 0.81): fitting only
    # that constant from the catalog profile must find 0.70 again, and the fit must be exact.
    runs = _measure(_truth_file(tmp_path, gemm_efficiency=0.70))
    cal = toposcan.calibrate(runs, base="llm-foundry-a100", free=["gemm_efficiency"])
    assert cal.constants["gemm_efficiency"] == pytest.approx(0.70, rel=2e-3)
    assert cal.mape < 0.2 and cal.base_mape > 5.0
    held = {k: val for k, val in cal.constants.items() if k not in ("gemm_efficiency", "memory_overhead_gib",
                                                                   "fragmentation")}
    assert held == {k: cal.base_constants[k] for k in held}  # not free: unchanged


def test_recovers_memory_overhead_and_fragmentation(tmp_path):
    # Six runs measured with 5 GiB fixed overhead and 10% fragmentation of the activations.
    runs = _measure(_truth_file(tmp_path, memory_overhead_gib=5.0, fragmentation=0.1))
    cal = toposcan.calibrate(runs, base="llm-foundry-a100")
    assert cal.constants["memory_overhead_gib"] == pytest.approx(5.0, abs=0.05)
    assert cal.constants["fragmentation"] == pytest.approx(0.1, abs=0.005)
    assert cal.memory_mape < 0.5 < cal.base_memory_mape


def test_other_frameworks_profile_calibrated_on_seed002():
    # seeds/002 "A100 80GB BF16" (llm-foundry MPT runs), starting from the Megatron-DeepSpeed profile
    # fitted to seeds/001: calibration must bring it to the seed002 target (MAPE <= 8%), and
    # the leave-one-out error (a new run) must stay there too.
    runs = []
    for c in v.seed002_cases("a100_80_bf16"):
        runs.append({**{k: x for k, x in c.kwargs.items() if k != "profile"}, "tokens_per_s_per_gpu": c.measured})
    cal = toposcan.calibrate(pl.DataFrame(runs, infer_schema_length=None), base="megatron-deepspeed-a100")
    assert cal.base_mape > 10.0
    assert cal.mape <= 8.0 and cal.loo_mape <= 8.0


def test_saved_profile_is_used_everywhere(tmp_path):
    runs = _measure(_truth_file(tmp_path, gemm_efficiency=0.65, layer_overhead_s=0.004))
    cal = toposcan.calibrate(runs[:3], base="llm-foundry-a100", name="mine")
    path = tmp_path / "mine.toml"
    cal.save(path)
    for i, c in enumerate(CONFIGS[:3]):
        r = toposcan.evaluate(**c, profile=str(path))
        assert r["step_time_s"][0] == pytest.approx(cal.runs["fitted_step_s"][i], rel=1e-9)
    df, st = toposcan.enumerate(model="mpt-7b", gpu="a100-80", nodes=1, profile=str(path), top=3, with_stats=True)
    assert df.height == 3 and st["profile"] == str(path)


def test_ignored_columns_are_listed_and_measures_converted():
    c = CONFIGS[1]
    r = toposcan.evaluate(**c, profile="llm-foundry-a100")
    tps = float(r["tokens_per_s_per_gpu"][0])
    cal = toposcan.calibrate([{**c, "tokens_per_s_per_gpu": tps, "date": "2026-01-01"}], base="llm-foundry-a100")
    assert cal.ignored == ["date"]
    # measured exactly what the base predicts: the base error is 0 and the fit keeps it there
    assert cal.base_mape < 1e-6 and cal.mape < 1e-3
    assert cal.runs["measured_step_s"][0] == pytest.approx(float(r["step_time_s"][0]), rel=1e-9)


@pytest.mark.parametrize("runs,kw,field", [
    ([], {}, "runs"),
    ([dict(CONFIGS[0])], {}, "step_time_s"),
    ([{**CONFIGS[0], "step_time_s": -1.0}], {}, "step_time_s"),
    ([{**CONFIGS[0], "tp": 0, "step_time_s": 1.0}], {}, "run 0"),
    ([{**CONFIGS[0], "step_time_s": 1.0}], {"base": "nope"}, "nope"),
    ([{**CONFIGS[0], "step_time_s": 1.0}], {"free": ["speed"]}, "free"),
    ([{**CONFIGS[0], "step_time_s": 1.0}], {"name": ""}, "name"),
    # gbs 250 is not a multiple of mbs 4 x dp 8: it cannot run as given, so it is not fitted
    ([{**CONFIGS[1], "gbs": 250, "step_time_s": 10.0}], {}, "run 0"),
    ("runs.xlsx", {}, "runs"),
    ("no/such/runs.csv", {}, "runs"),
    (42, {}, "runs"),
])
def test_bad_input_is_one_line(runs, kw, field):
    with pytest.raises(toposcan.ToposcanError) as e:
        toposcan.calibrate(runs, **kw)
    assert field in e.value.message and "\n" not in e.value.message


@pytest.mark.parametrize("text,field", [
    ("not toml [", "not valid TOML"),
    ('["a"]\ngemm_efficiency = 0.5\n', "base"),
    ('["a"]\nbase = "llm-foundry-a100"\ngemm_efficiency = "fast"\n', "gemm_efficiency"),
    ('["a"]\nbase = "llm-foundry-a100"\ngemm_efficiency = 7.0\n', "gemm_efficiency"),
    ('["a"]\nbase = "llm-foundry-a100"\n["b"]\nbase = "llm-foundry-a100"\n', "exactly one"),
    ('["a"]\nbase = "llm-foundry-a100"\ngemm_eficiency = 0.5\n', "gemm_eficiency"),
    ('["a"]\nbase = "llm-foundry-a100"\nmemory_overhead_gib = -1\n', "memory_overhead_gib"),
    ('["a"]\nbase = "llm-foundry-a100"\nflash_attention = "no"\n', "flash_attention"),
    ('["a"]\nbase = "llm-foundry-a100"\nfused_kernels = 1\n', "fused_kernels"),
    ('["a"]\nbase = "llm-foundry-a100"\ntransient_gradients = "yes"\n', "transient_gradients"),
    ('["a"]\nbase = "llm-foundry-a100"\nvocab_multiple = 0\n', "vocab_multiple"),
    ('["a"]\nbase = "llm-foundry-a100"\nvocab_multiple = 1.5\n', "vocab_multiple"),
    ('["a"]\nbase = "llm-foundry-a100"\nvocab_multiple = 100000\n', "vocab_multiple"),
])
def test_bad_profile_file_is_one_line(tmp_path, text, field):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(toposcan.ToposcanError) as e:
        toposcan.evaluate(model="mpt-1b", profile=str(path))
    assert field in e.value.message and "\n" not in e.value.message


def test_cli_calibrate_writes_a_profile(tmp_path, capsys):
    runs = _measure(_truth_file(tmp_path, gemm_efficiency=0.7))
    csv = tmp_path / "runs.csv"
    pl.DataFrame(runs).write_csv(csv)
    out_toml = tmp_path / "mine.toml"
    rc = cli.main(["calibrate", str(csv), "--base", "llm-foundry-a100", "--free", "gemm_efficiency",
                   "-o", str(out_toml), "--format", "json"])
    out = capsys.readouterr()
    assert rc == 0 and "--profile" in out.err
    doc = json.loads(out.out)
    assert doc["constants"]["gemm_efficiency"] == pytest.approx(0.7, rel=2e-3) and len(doc["runs"]) == len(runs)
    rc = cli.main(["evaluate", "--model", "mpt-7b", "--profile", str(out_toml), "--format", "json"])
    assert rc == 0
    rc = cli.main(["calibrate", str(csv), "-o", str(tmp_path / "mine.txt")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: `output` must end in .toml")


def test_saved_file_survives_any_printable_name_and_records_the_links(tmp_path):
    runs = [{**c, "inter_node_gbs": 12.5} for c in _measure(_truth_file(tmp_path, gemm_efficiency=0.7))[:2]]
    cal = toposcan.calibrate(runs, base="llm-foundry-a100", name='my "a100" \\ cluster ]')
    path = tmp_path / "odd.toml"
    cal.save(path)
    assert "inter_node_gbs = 12.5" in path.read_text()
    r = toposcan.evaluate(**{k: v for k, v in runs[0].items() if k not in ("step_time_s", "mem_gb")},
                          profile=str(path))
    assert r["step_time_s"][0] == pytest.approx(cal.runs["fitted_step_s"][0], rel=1e-12)


def test_duplicate_columns_and_runs_predicted_oom_are_reported(tmp_path):
    csv = tmp_path / "dup.csv"
    csv.write_text("model,tp,tp,step_time_s\nmpt-1b,1,2,3.0\n")
    with pytest.raises(toposcan.ToposcanError, match="column twice: tp"):
        toposcan.calibrate(str(csv))
    # a run the memory model says cannot fit still ran: fitted, and said
    big = dict(CONFIGS[3], recompute="none", mbs=8, gbs=8 * 16 * 2)  # mpt-13b: about 130 GiB predicted
    cal = toposcan.calibrate([{**big, "step_time_s": 60.0}, {**CONFIGS[0], "step_time_s": 5.0}], base="llm-foundry-a100")
    assert any("predicted not to fit" in n for n in cal.notes)


def test_calibration_renders_in_a_notebook():
    cal = toposcan.calibrate("tests/fixtures/calibrate/seed002_a100_40.csv", base="llm-foundry-a100")
    md = cal._repr_markdown_()
    assert all(f"`{k}`" in md for k in cal.constants) and "leave-one-out" in md


def test_profile_file_can_switch_the_framework_settings(tmp_path):
    # A profile file over a catalog base may change the framework's settings, not only constants:
    # GPT-2's unpadded vocabulary costs time only where the framework does not pad it.
    path = tmp_path / "eager.toml"
    path.write_text('["eager"]\nbase = "megatron-deepspeed-a100"\nvocab_multiple = 1\nfused_kernels = false\n')
    kw = dict(layers=12, hidden=768, heads=12, gpu="a100-80", gpus_per_node=1, dp=1, mbs=8, gbs=8)
    odd, even = (toposcan.evaluate(**kw, vocab=v, profile=str(path))["step_time_s"][0] for v in (50257, 50304))
    assert odd > 1.1 * even
    odd, even = (toposcan.evaluate(**kw, vocab=v)["step_time_s"][0] for v in (50257, 50304))
    assert odd == even


# --- issue 14: fit only what the runs identify, with uncertainty; linear time; Ctrl-C; input checks ---

FOUR = CONFIGS[:4]


def _four_runs(factors=(1.3, 0.8, 1.25, 0.7)) -> list[dict]:
    """The issue's case: four runs whose step times the base profile misses by -30% to +30%."""
    rows = []
    for c, f in zip(FOUR, factors):
        r = toposcan.evaluate(**c, profile="llm-foundry-a100")
        rows.append({**c, "step_time_s": r["step_time_s"][0] * f, "mem_gb": r["mem_gb"][0] - 2.5})
    return rows


def test_four_runs_move_only_what_they_identify_and_report_bounds():
    # Today's main moves all 9 time constants from these 4 runs (link and attention efficiency to their
    # bounds, overheads to 0 or 1 s) without a word.
    cal = toposcan.calibrate(_four_runs(), base="llm-foundry-a100")
    time_fitted = [k for k in cal.fitted if k in calmod.TIME_KEYS]
    assert 1 <= len(time_fitted) <= 3 and cal.rank <= 4  # 4 runs: at most 3 with an error estimate left
    moved = [k for k in calmod.TIME_KEYS if cal.constants[k] != cal.base_constants[k]]
    assert set(moved) <= set(time_fitted)
    assert set(cal.held) == set(calmod.TIME_KEYS) - set(time_fitted)  # every other one, with its reason
    assert all(cal.constants[k] == cal.base_constants[k] for k in cal.held)
    assert "rank" in cal.warnings[0] and "condition number" in cal.warnings[0]
    assert all(k in cal.warnings[0] for k in cal.held)
    # a constant that ends on its bound is reported, and has no standard error
    for k in cal.at_bound:
        assert any(k in w and "bound" in w for w in cal.warnings) and cal.std_errors[k] is None
    lo_hi = dict(zip(calmod.TIME_KEYS, pointfit.TIME_BOUNDS))
    assert cal.at_bound == [k for k in time_fitted if cal.constants[k] in lo_hi[k]] + \
        [k for k in ("memory_overhead_gib", "fragmentation") if k in cal.fitted and cal.constants[k] == 0.0]
    doc = cal.to_dict()
    assert doc["held"] == cal.held and doc["rank"] == cal.rank and "std_errors" in doc


def test_identification_holds_a_constant_no_run_feels():
    # Single-node runs have no inter-node traffic and no data-parallel all-reduce outside ZeRO-3's:
    # inter_link_efficiency cannot be learned from them, whatever the fit would like.
    runs = [r for r in _measure_with(gemm_efficiency=0.7) if r["nodes"] == 1]
    cal = toposcan.calibrate(runs, base="llm-foundry-a100", free=["gemm_efficiency", "inter_link_efficiency"])
    assert cal.fitted[:1] == ["gemm_efficiency"] and cal.fitted[1:] == ["memory_overhead_gib"]
    assert "insensitive" in cal.held["inter_link_efficiency"]
    assert cal.constants["inter_link_efficiency"] == cal.base_constants["inter_link_efficiency"]
    assert cal.constants["gemm_efficiency"] == pytest.approx(0.7, rel=5e-3)


def test_identify_drops_a_collinear_column():
    # Columns 0 and 2 move the runs identically (a constant and its twin): only one can be fitted; a
    # column below the sensitivity threshold is held as insensitive. Rank 2 of 3 effective columns.
    s = np.array([[0.5, 0.0, 0.5, 0.001], [0.2, 0.3, 0.2, 0.0], [0.1, 0.6, 0.1, 0.002], [0.4, 0.1, 0.4, 0.0]])
    ident = calmod.identify(s, ["a", "b", "c", "d"], max_fitted=3)
    assert ident.fitted == ["a", "b"] and ident.rank == 2 and not np.isfinite(ident.condition_number)
    assert "confounded with a" in ident.held["c"] and "insensitive" in ident.held["d"]
    assert calmod.identify(s, ["a", "b", "c", "d"], max_fitted=1).fitted == ["a"]


def _measure_with(**consts) -> list[dict]:
    import tempfile, pathlib
    with tempfile.TemporaryDirectory() as d:
        return _measure(_truth_file(pathlib.Path(d), **consts))


def test_standard_errors_cover_the_truth_and_are_saved(tmp_path):
    # Six runs measured with gemm_efficiency 0.70 and step times scattered by +-3% (a fixed pattern):
    # the fitted value lies within 3 standard errors of the truth, and the saved profile still loads.
    runs = _measure_with(gemm_efficiency=0.70)
    for r, f in zip(runs, (1.03, 0.97, 1.02, 0.98, 1.01, 0.99)):
        r["step_time_s"] *= f
    cal = toposcan.calibrate(runs, base="llm-foundry-a100", free=["gemm_efficiency"])
    se = cal.std_errors["gemm_efficiency"]
    assert se is not None and 0 < se < 0.05
    assert abs(cal.constants["gemm_efficiency"] - 0.70) < 3 * se
    path = tmp_path / "mine.toml"
    cal.save(path)
    import tomllib
    saved = tomllib.loads(path.read_text())["calibrated"]["fit"]
    assert saved["std_error"]["gemm_efficiency"] == pytest.approx(se)
    r = toposcan.evaluate(**CONFIGS[0], profile=str(path))  # the catalog accepts the file
    assert r["step_time_s"][0] == pytest.approx(cal.runs["fitted_step_s"][0], rel=1e-9)


def test_exact_leave_one_out_on_request():
    runs = _measure_with(gemm_efficiency=0.70)
    for r, f in zip(runs, (1.06, 0.95, 1.04, 0.97, 1.02, 0.96)):
        r["step_time_s"] *= f
    approx = toposcan.calibrate(runs, base="llm-foundry-a100")
    exact = toposcan.calibrate(runs, base="llm-foundry-a100", loo="exact")
    assert approx.loo == "approx" and exact.loo == "exact"
    assert exact.loo_mape >= exact.mape and approx.loo_mape >= approx.mape
    assert approx.loo_mape == pytest.approx(exact.loo_mape, rel=0.5)
    with pytest.raises(toposcan.ToposcanError, match="`loo`"):
        toposcan.calibrate(runs, loo="yes")


def _many(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    models = ["mpt-1b", "mpt-7b", "mpt-13b"]
    while len(rows) < n:
        m, nodes, mbs = models[len(rows) % 3], int(rng.choice([1, 2, 4, 8])), int(rng.choice([1, 2, 4]))
        c = dict(model=m, gpu="a100-80", nodes=nodes, tp=1, pp=1, mbs=mbs, gbs=mbs * 8 * nodes * 2, zero_stage=3,
                 recompute="full", flash_attention=True, seq_len=2048)
        t = toposcan.evaluate(**c, profile="llm-foundry-a100")["step_time_s"][0]
        rows.append({**c, "step_time_s": t * float(rng.uniform(0.9, 1.1))})
    return rows


def test_cost_grows_linearly_with_the_runs(monkeypatch):
    # Today's main refits once per run for leave-one-out (O(n^2)): 64 rows took 53 s, 128 past a minute.
    calls = [0]
    real = toposcan._core.evaluate

    def counting(*a, **k):
        calls[0] += 1
        return real(*a, **k)

    rows = _many(48)
    counts = []
    for n in (24, 48):
        calls[0] = 0
        monkeypatch.setattr(toposcan._core, "evaluate", counting)
        t0 = time.perf_counter()
        toposcan.calibrate(rows[:n], base="llm-foundry-a100")
        elapsed = time.perf_counter() - t0
        monkeypatch.setattr(toposcan._core, "evaluate", real)
        counts.append(calls[0])
    assert counts[1] <= 2.6 * counts[0]  # evaluations per run do not grow with the number of runs
    assert elapsed < 10.0  # 48 rows: main took about 35 s (2 shared cores); this takes under 1 s


def test_ctrl_c_stops_a_long_calibration():
    # Main spends the whole fit inside one Rust call that holds off KeyboardInterrupt until it returns.
    rows = _many(40)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    t0 = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in range(100):  # long enough that it is still running when the interrupt arrives
                toposcan.calibrate(rows, base="llm-foundry-a100")
    finally:
        timer.cancel()
    assert time.perf_counter() - t0 < 3.0


@pytest.mark.parametrize("change,field", [
    ({"tokens_per_s_per_gpu": 1e300}, "tokens_per_s_per_gpu"),  # main: accepted
    ({"step_time_s": 1e-9}, "step_time_s"),  # 1 ns per step: above any GPU's peak
    ({"step_time_s": float("nan"), "tokens_per_s_per_gpu": 3000.0}, "step_time_s"),  # main: took the other
    ({"nodes": float("inf")}, "nodes"),
    ({"mem_gb": 500.0}, "mem_gb"),  # an A100-80 holds 80 GiB
    ({"tp": [1, 2]}, "tp"),  # main: raw TypeError
])
def test_bad_measured_values_are_one_line(change, field):
    row = {**CONFIGS[1], "step_time_s": 10.0, **change}
    if "tokens_per_s_per_gpu" in change and change.get("step_time_s") is None:
        row.pop("step_time_s")
    with pytest.raises(toposcan.ToposcanError) as e:
        toposcan.calibrate([row, {**CONFIGS[0], "step_time_s": 5.0, "tp": 1}], base="llm-foundry-a100")
    assert f"`{field}`" in e.value.message and "\n" not in e.value.message


def test_runs_without_a_model_are_refused(tmp_path):
    # Main fitted these as BLOOM-176B (the default model).
    rows = [{k: v for k, v in c.items() if k != "model"} | {"step_time_s": 5.0} for c in CONFIGS[:2]]
    with pytest.raises(toposcan.ToposcanError, match="`model` column"):
        toposcan.calibrate(rows, base="llm-foundry-a100")
    rows[1]["model"] = "mpt-7b"
    with pytest.raises(toposcan.ToposcanError, match="run 0: no `model`"):
        toposcan.calibrate(rows, base="llm-foundry-a100")
    # the model's fields are enough
    fields = dict(layers=24, hidden=2048, heads=16, vocab=50368, seq_len=2048)
    rows = [{**{k: v for k, v in CONFIGS[0].items() if k != "model"}, **fields, "step_time_s": 5.0}]
    assert toposcan.calibrate(rows, base="llm-foundry-a100").runs.height == 1


@pytest.mark.parametrize("cell,field", [({"mbs": [8, 8]}, "mbs"), ({"gpu": {"name": "a100-80"}}, "gpu")])
def test_nested_column_is_one_line(tmp_path, cell, field):
    # main: a struct column (a JSON object per cell) raised a raw TypeError (unhashable type: 'dict')
    path = tmp_path / "runs.json"
    path.write_text(json.dumps([{**CONFIGS[0], "step_time_s": 5.0, **cell}]))
    for runs in (str(path), [{**CONFIGS[0], "step_time_s": 5.0, **cell}]):
        with pytest.raises(toposcan.ToposcanError) as e:
            toposcan.calibrate(runs, base="llm-foundry-a100")
        assert f"`{field}`" in e.value.message and "\n" not in e.value.message


def test_cli_exact_leave_one_out_and_warnings_beside_json(tmp_path, capsys):
    # `--loo exact` refits once per run; with --format json the identification warnings go to stderr
    # so that stdout stays one document.
    runs = _measure(_truth_file(tmp_path, gemm_efficiency=0.7))
    csv = tmp_path / "runs.csv"
    pl.DataFrame(runs).write_csv(csv)
    rc = cli.main(["calibrate", str(csv), "--base", "llm-foundry-a100", "--loo", "exact", "--format", "json"])
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert rc == 0 and doc["warnings"] and all(f"warning: {w}" in out.err for w in doc["warnings"])
    assert cli.main(["calibrate", str(csv), "--loo", "sometimes"]) == 2
