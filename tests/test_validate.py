"""Fidelity: predictions against the measured seed tables, held to the issue's targets.

Every number compared here is transcribed in python/toposcan/data/seeds/ with its seed file and
line. Where a target is not met yet, the test holds today's level (so fidelity cannot silently
get worse) and says so; README.md "Where the model is weak" explains each gap.
"""

import math

import polars as pl
import pytest

import toposcan
from toposcan import validate as v


@pytest.fixture(scope="module")
def results():
    rows, summary = v.validate()
    return rows, {r["table"]: r for r in summary.iter_rows(named=True)}


def test_seed001_step_time_meets_targets(results):
    # seeds/001, hidden 13312-14336 from 02-21 on: MAPE <= 5%, max error <= 20% (issue targets).
    _, s = results
    assert s["seed001"]["rows"] >= 50
    assert s["seed001"]["mape"] <= 5.0
    assert s["seed001"]["max_error"] <= 20.0
    assert s["seed001"]["spearman"] >= 0.8
    # held at today's level (MAPE 2.8%, max 14.2%, Spearman 0.90) so a change that loses it fails
    assert s["seed001"]["mape"] <= 3.0 and s["seed001"]["max_error"] <= 15.0 and s["seed001"]["spearman"] >= 0.88


def test_seed001_rank_correlation_within_tables(results):
    rows, _ = results
    t = rows.filter(pl.col("table") == "seed001")
    rho = {g: v.spearman(d["measured"].to_list(), d["predicted"].to_list())
           for (g,), d in t.group_by(["group"]) if d.height >= 4}
    # Issue target (>= 0.8) met on the contender and lower-PP tables (the latter since DeepSpeed's
    # partitioned pipeline sends and Jean Zay's network are modelled) ...
    assert rho["contenders_h14336_l72_dp4pp12"] >= 0.8
    assert rho["contenders_h13824_l84"] >= 0.8
    assert rho["gbs_lower_pp"] >= 0.8
    # ... not yet on these (README: head_dim-128 slowdown of the 2022 stack, an inconsistent
    # GBS-1568 row at line 447, 02-25 runs after a PCIe fix); held at today's level.
    assert rho["nheads_h14336_l72"] >= 0.6
    assert rho["gbs_variations"] >= 0.75
    assert rho["tp_variations"] >= 0.5


def test_ranked_first_is_within_3pct_of_measured_best(results):
    # Among the measured 48-node, GBS-2048 configs of the 14336/72 model (seeds/001), the one
    # toposcan ranks first must have measured within 3% of the measured best.
    rows, _ = results
    t = rows.filter((pl.col("table") == "seed001") & pl.col("config").str.starts_with("h14336 l72 a64")
                    & pl.col("config").str.ends_with("gbs2048"))
    best_measured = t["measured"].min()
    ours = t.sort("predicted")["measured"][0]
    assert ours <= best_measured * 1.03


def test_hidden_14400_vs_13824_gap_from_quantization():
    # seeds/001 "tile and wave quantization" (lines 253-254): 40 nodes, DP4 TP8 PP10 MBS1, 80 layers;
    # 221.21 s/it at hidden 14400 (96 heads, head_dim 150) vs 160.29 s/it at 13824 (64 heads).
    kw = dict(model="bloom-176b", gpu="a100-80", nodes=40, tp=8, pp=10, mbs=1, gbs=2048, layers=80,
              precision="fp16", recompute="full", sequence_parallel=False, profile="megatron-deepspeed-a100",
              _frame=False)
    slow = toposcan.evaluate(hidden=14400, heads=96, **kw)
    fast = toposcan.evaluate(hidden=13824, heads=64, **kw)
    measured_gap = (fast["flops_per_iter_megatron"] / (160.29 * 320) - slow["flops_per_iter_megatron"] / (221.21 * 320)) / 1e12
    predicted_gap = fast["tflops_per_gpu"] - slow["tflops_per_gpu"]
    assert abs(predicted_gap - measured_gap) <= 5.0, (predicted_gap, measured_gap)


@pytest.mark.parametrize("table", ["h100_bf16", "h100_fp8", "a100_80_bf16", "a100_40_bf16"])
def test_seed002_tokens_per_gpu(results, table):
    _, s = results
    r = s[f"seed002-{table}"]
    assert r["mape"] <= 8.0  # issue target
    # Issue target max <= 20% is met on h100_fp8; the others miss it on one or two rows each
    # (mpt-30b at 8192 tokens, mpt-760m at 512-1024 tokens on A100-80, mpt-1b on 32 A100-40);
    # held at today's level.
    assert r["max_error"] <= {"h100_fp8": 20.0, "h100_bf16": 30.0, "a100_80_bf16": 37.0, "a100_40_bf16": 23.0}[table]


def test_memory_against_seed001(results):
    rows, s = results
    mem = rows.filter(pl.col("table") == "seed001-mem")
    # Every row marked OOM in seeds/001 is predicted not to fit; every row that ran fits.
    assert mem.filter(pl.col("oom_measured"))["oom_predicted"].all()
    assert not mem.filter(~pl.col("oom_measured"))["oom_predicted"].any()
    ran = mem.filter(~pl.col("oom_measured"))
    assert s["seed001-mem"]["mape"] <= 6.0
    # Issue target "within 10% of every Mem value" holds on 90% of rows; the exceptions are listed
    # in README (line 305's 65 GB at MBS 2 vs 56 GB at MBS 4, the ZeRO-0 branch row 341, ...).
    assert (ran["error_pct"].abs() <= 10.0).mean() >= 0.9


def test_flops_accounting_is_exact(results):
    rows, _ = results
    # seeds/001 TFLOPs from measured s/it, Megatron-DeepSpeed formula: within 0.1% (line 341, the
    # ZeRO-0 row run on another branch with swapped columns, excepted - seeds/001 says so).
    t = rows.filter((pl.col("table") == "seed001-tflops") & (pl.col("line") != 341))
    assert (t["error_pct"].abs() < 0.1).all()
    # seeds/002 MFU and HFU from measured tokens/s: within 0.1 point; NumParams exact.
    for name in ("seed002-mfu", "seed002-hfu"):
        assert (rows.filter(pl.col("table") == name)["error_pct"].abs() < 0.1).all()
    assert (rows.filter(pl.col("table") == "seed002-params")["error_pct"] == 0).all()


def test_energy_per_token_from_board_power(results):
    # seeds/003: J/token = board power x runtime / 16384 tokens; printed to 3 decimals, so rows
    # below 0.009 J/token carry up to ~30% rounding; the rest agree within 8%. Lines 50-56 (the
    # "RTX A5000 x 8" AlCrossSim rows) imply 300 W, the A6000's power: a label error in the seed.
    rows, _ = results
    e = rows.filter((pl.col("table") == "seed003-energy") & (pl.col("measured") >= 0.009)
                    & ~pl.col("line").is_between(50, 56))
    assert e.height >= 10 and (e["error_pct"].abs() < 8).all()


# Megatron-LM's published weak scaling (Narayanan et al. SC'21, Table 1; data/published/).

def test_narayanan2021_parameter_counts_match_the_papers_formula():
    # The paper's Eq. 2, P = 12 l h^2 (1 + 13/(12h) + (V + s)/(12 l h)), V = 51,200, s = 2048: ours
    # within 0.15% on all ten models (the rest is Megatron padding V to 50,304 at TP 1, not 51,200).
    for c in v.narayanan2021_cases():
        layers, h = c.kwargs["layers"], c.kwargs["hidden"]
        paper = 12 * layers * h * h * (1 + 13 / (12 * h) + (51200 + 2048) / (12 * layers * h))
        ours = toposcan.evaluate(**c.kwargs)["params"][0]
        assert abs(ours / paper - 1) < 0.0015, c.label


def test_narayanan2021_step_time(results):
    # Profile megatron-lm-a100, fitted to these ten rows with the link constants held at their
    # nccl-tests level: MAPE 1.75%, max 4.3%, leave-one-out 2.5%.
    _, s = results
    t = s["narayanan2021"]
    assert t["rows"] == 10 and t["mape"] <= 2.5 and t["max_error"] <= 6.0 and t["spearman"] >= 0.95


def test_megatron_profiles_do_not_carry_across_stacks(results):
    # Held-out before megatron-lm-a100 existed: megatron-deepspeed-a100 (fitted to BigScience's 2022
    # trials on Jean Zay) predicted every Selene row too slow, MAPE 25.5%, max 37%. The other way,
    # the Selene profile predicts BigScience's rows 15% too fast. The two stacks really differ (per-layer
    # overheads, attention, network); these tables keep the gap visible and stop it from growing.
    rows, s = results
    assert 20.0 <= s["narayanan2021-transfer"]["mape"] <= 30.0
    assert (rows.filter(pl.col("table") == "narayanan2021-transfer")["error_pct"] > 0).all()
    assert 10.0 <= s["seed001-transfer"]["mape"] <= 20.0
    assert rows.filter(pl.col("table") == "seed001-transfer")["error_pct"].mean() < 0


def test_llama3_405b_tensor_and_pipeline_parallel_plans_on_h100():
    # Llama 3 405B (arXiv 2407.21783, Table 4; data/published/llama3_405b.csv): TP 8, PP 16 on 8,192
    # and 16,384 H100s at 430 and 400 model TFLOP/s per GPU. The default H100 profile, with its
    # intra-node link held at nccl-tests' level (validate.PINNED), lands within 20% for either
    # interleaving 2 or 4 and within 5% for one of them (the paper does not say which it used). With
    # the link fitted on FSDP-only runs (0.29) it was 18-43% too slow: a check made after looking.
    for r in v.load("llama3_405b", "published")[:2]:
        gpus, dp, per_dp, x = int(r["gpus"]), int(r["dp"]), int(r["batch_per_dp"]), float(r["tflops_per_gpu"])
        errs = []
        for vpp in (2, 4):
            row = toposcan.evaluate("llama-3-405b", gpu="h100-80", nodes=gpus // 8, gpus_per_node=8, dp=dp, tp=8,
                                    pp=16, vpp=vpp, mbs=1, gbs=per_dp * dp, seq_len=8192, zero_stage=2,
                                    recompute="none", sequence_parallel=True, profile="llm-foundry-h100")
            tflops = row["flops_per_iter_model"][0] / row["step_time_s"][0] / gpus / 1e12
            errs.append(abs(x / tflops - 1) * 100)
        assert max(errs) <= 20.0 and min(errs) <= 5.0, (r["row"], errs)


@pytest.mark.parametrize("name", ["megatron-deepspeed-a100", "megatron-lm-a100", "llm-foundry-h100", "llm-foundry-a100", v.H200_PROFILE])
def test_stored_profiles_are_the_fit(name):
    # No hand tuning: refitting from the measured rows reproduces the stored constants and errors.
    from toposcan import catalog
    cases, free = v.FITS[name]
    r = v.fit_profile(name, cases(), free)
    stored = catalog.profile_spec(name)
    for k in v.TIME_KEYS:
        assert math.isclose(r["profile"][k], stored[k], rel_tol=0.02, abs_tol=1e-4), k
    assert abs(r["mape"] - stored["fit"]["mape"]) < 0.05


def test_every_seed002_run_fits_in_memory():
    # seeds/002: every row is a run that trained (llm-foundry picked each micro batch to fit), so
    # the memory model must predict that it fits, on every GPU of the four tables.
    for table in v.SEED002_PROFILE:
        for c in v.seed002_cases(table):
            row = toposcan.evaluate(**c.kwargs)
            assert row["fits"][0], f"{table} line {c.line} {c.label}: {row['mem_gb'][0]:.1f} GiB predicted"


# Our own measurements on a lent H200 (python/toposcan/data/measured/, benches/device/measure.py).

def _h200_groups(rows, table):
    t = rows.filter(pl.col("table") == table)
    return {g: d for (g,), d in t.group_by(["group"])}


def test_h100_predicted_before_its_run(results):
    # The same configurations on an H100, predicted by pytorch-h200 unchanged and committed before
    # the run (h100_predictions.csv): step-time MAPE 4.7%, max 10.4%; memory 2.7%, max 11.1%; the
    # five 6.7B runs predicted not to fit ran out of memory, every other one trained. With the
    # measured elementwise rates (gpus.toml elementwise_gbs) and pytorch-h200 refitted on its H200
    # `fit` rows only: 2.7%, max 6.4%.
    rows, s = results
    assert s["h100-steps"]["rows"] == 72 and s["h100-steps"]["mape"] <= 3.2 and s["h100-steps"]["max_error"] <= 8.0
    assert s["h100-mem"]["mape"] <= 3.0 and s["h100-mem"]["max_error"] <= 12.0
    mem = rows.filter(pl.col("table") == "h100-mem")
    assert mem["oom_measured"].sum() == 5
    assert (mem["oom_measured"] == mem["oom_predicted"]).all()


def test_elementwise_rate_is_the_measured_kernel_mix():
    # gpus.toml's elementwise_gbs is the mix of norm, dropout and GELU bytes a layer moves (4 : 5 : 8)
    # over the rates measured at 128 MB tensors (data/measured/membw.csv); on the H200 it sits well
    # below the HBM peak while a plain copy does not, on the H100 both are near it.
    from toposcan import catalog
    rows = v.load("membw", "measured")
    gpus = catalog.gpus()
    for gpu in ("h100-80", "h200"):
        rate = {r["op"]: float(r["gbs"]) for r in rows if r["gpu"] == gpu and r["elements"] == str(1 << 26)}
        mix = 17 / (4 / rate["layernorm"] + 5 / rate["dropout"] + 8 / rate["gelu"])
        g = gpus.filter(pl.col("name") == gpu)
        assert abs(g["elementwise_gbs"][0] / mix - 1) < 0.001, gpu
        assert rate["copy"] / g["memory_bw_gbs"][0] > 0.84
    assert catalog.gpus().filter(pl.col("name") == "h200")["elementwise_gbs"][0] / 4800 < 0.65


def test_h100_to_h200_slowdown_follows_the_memory_bound_share():
    # Same chip, clocks and power limit; only the HBM differs (3.35 against 4.8 TB/s). Measured, the
    # H100 took 5.8% longer on the 69 configurations run on both; with the elementwise rate the model
    # says 8.0% (10.8% when every memory-bound kernel scaled with the HBM peak).
    h200 = {c.label: c for c in v.h200_cases("time")}
    h100 = {c.label: c for c in v.h200_cases("time", gpu="h100-80")}
    both = sorted(set(h200) & set(h100))
    assert len(both) >= 60
    measured = sum(h100[k].measured / h200[k].measured for k in both) / len(both)
    predicted = sum(toposcan.evaluate(**h100[k].kwargs)["step_time_s"][0]
                    / toposcan.evaluate(**h200[k].kwargs)["step_time_s"][0] for k in both) / len(both)
    assert 1.03 < measured < 1.09
    assert abs(predicted - measured) < 0.03


def test_h200_step_time_fit_and_held_out(results):
    rows, _ = results
    g = _h200_groups(rows, "h200-steps")
    err = {k: d["error_pct"].abs() for k, d in g.items()}
    # `fit`: what profile pytorch-h200 was fitted to, its gemm_efficiency pinned to the measured GEMM
    # level (MAPE 1.5%, max 5.1%).
    assert err["fit"].mean() <= 2.5 and err["fit"].max() <= 7.0
    # `heldout` and `llama` were predicted before they were measured (h200_heldout_predictions.csv,
    # committed first): 4.1% / 11.2% and 6.9% / 13.6% then. Eager SwiGLU, rotary and repeat_kv
    # (`fused_kernels = false`), modelled after the `llama` run, moved it to 5.8% / 8.4%.
    assert g["heldout"].height >= 20 and err["heldout"].mean() <= 4.5 and err["heldout"].max() <= 12.0
    assert g["llama"].height >= 10 and err["llama"].mean() <= 6.5 and err["llama"].max() <= 10.0
    # `llama2`: new Llama-style shapes predicted by that revised model before their run: 5.6% / 10.6%.
    assert g["llama2"].height >= 8 and err["llama2"].mean() <= 6.0 and err["llama2"].max() <= 11.0
    # `mixed`: predicted before its run by the fitted profile (3.8% / 7.0%) and by the variant with the
    # GEMM level pinned (1.6% / 4.3%), which was then adopted; with the level over all sweeps: 1.9% / 4.7%.
    assert g["mixed"].height >= 8 and err["mixed"].mean() <= 3.0 and err["mixed"].max() <= 6.0
    # `mixed2`: 4.9% / 10.0% as predicted before its run; 2.9% / 9.5% after the LM-head misalignment
    # rate was re-measured from kernel timings of the same run.
    assert g["mixed2"].height >= 8 and err["mixed2"].mean() <= 4.0 and err["mixed2"].max() <= 10.5
    for d in g.values():
        assert v.spearman(d["measured"].to_list(), d["predicted"].to_list()) >= 0.9


def test_h200_memory_and_oom(results):
    rows, _ = results
    t = rows.filter(pl.col("table") == "h200-mem")
    ran = t.filter(~pl.col("oom_measured"))
    # Worst: mix-llama-h6144-kv8 (-11%), whose allocator cache held 8.4 GiB above its allocated peak.
    assert ran["error_pct"].abs().mean() <= 4.0 and ran["error_pct"].abs().max() <= 12.0
    # The OOM boundary: the 6.7B model without recompute ran at micro batch 4 (127 GiB of 139.8)
    # and ran out of memory at 6, as predicted before the run.
    assert (t["oom_measured"] == t["oom_predicted"]).all()
    assert t["oom_measured"].sum() >= 1


def test_h200_parameter_counts_are_exact():
    # torch counted every model's parameters (GPT and Llama-style: GQA, SwiGLU, untied head).
    for r in v.load("h200_steps", "measured"):
        assert toposcan.evaluate(**v.h200_config(r))["params"][0] == int(r["params"]), r["name"]


def test_h200_unpadded_vocabulary_costs_what_it_measured():
    # GPT-2's vocabulary 50257 (not a multiple of 8) against 50304: the step of a 125M model took
    # 0.0730 s against 0.0475 s (+54%), of a 1.3B model 0.1852 against 0.1522 (+22%).
    steps = {r["name"]: r for r in v.load("h200_steps", "measured") if r["set"] == "fit"}
    for odd, even in (("gpt-125m-v50257", "gpt-125m"), ("gpt-1.3b-v50257", "gpt-1.3b")):
        measured = float(steps[odd]["step_time_s"]) / float(steps[even]["step_time_s"])
        pred = (toposcan.evaluate(**v.h200_config(steps[odd]))["step_time_s"][0]
                / toposcan.evaluate(**v.h200_config(steps[even]))["step_time_s"][0])
        # 1.80 / 1.20 predicted: the model charges the measured forward penalty to the two backward
        # LM-head GEMMs as well (not measured; they seem to suffer less), so these rows run ~10% high.
        assert abs(pred / measured - 1) < 0.2, (odd, pred, measured)
    # Megatron pads the vocabulary itself (vocab_multiple 128): no such cost there.
    a = toposcan.evaluate(layers=12, hidden=768, heads=12, vocab=50257, gpu="a100-80", gpus_per_node=1, dp=1, mbs=8, gbs=8)
    b = toposcan.evaluate(layers=12, hidden=768, heads=12, vocab=50304, gpu="a100-80", gpus_per_node=1, dp=1, mbs=8, gbs=8)
    assert a["step_time_s"][0] == b["step_time_s"][0]


def test_h200_gemm_level(results):
    # Isolated GEMMs (10 back-to-back calls per sample): one level for all shapes leaves 4.7% MAPE;
    # the tile/wave shape effects do not rank H200 GEMMs (README: where the model is weak).
    _, s = results
    assert s["h200-gemm"]["rows"] >= 130 and s["h200-gemm"]["mape"] <= 6.0


def test_h200_energy_per_token(results):
    # NVML's energy counter over 8 s of steady training steps: the card drew 680-696 W of its 700 W
    # board power in every configuration (125M to 6.7B parameters), the premise of the power model;
    # J/token is then off by the step time's error only (predictions committed before the run).
    for c in v.h200_energy_cases():
        assert 0.95 <= c.extra["avg_power_w"] / 700.0 <= 1.0, c.label
    _, s = results
    assert s["h200-energy"]["rows"] >= 9 and s["h200-energy"]["mape"] <= 5.0 and s["h200-energy"]["max_error"] <= 11.0


def test_h100_energy_per_token_predicted_before_its_run(results):
    # The H100 drew 656-695 W of its 700 W in every configuration that fit (the 6.7B one ran out of
    # memory, as predicted); J/token as predicted before the run (h100_energy_predictions.csv): 4.1%
    # MAPE, max 6.0%, every row over (the step-time bias of the H100).
    for c in v.h200_energy_cases("h100-80"):
        assert 0.92 <= c.extra["avg_power_w"] / 700.0 <= 1.0, c.label
    rows, s = results
    assert s["h100-energy"]["rows"] == 8 and s["h100-energy"]["mape"] <= 4.5 and s["h100-energy"]["max_error"] <= 7.0


def test_h200_kernel_levels():
    # data/measured/h200_attention.csv and h200_gemm.csv: PyTorch's causal flash attention reaches
    # 0.42 of the model's flash-attention time at peak, isolated GEMMs 0.70 (README, measured/README).
    assert 0.38 <= v.h200_attention_level() <= 0.46
    assert 0.66 <= v.h200_gemm_level() <= 0.74
