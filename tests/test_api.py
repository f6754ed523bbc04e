"""The Python API: evaluate, enumerate, catalogs (exact parameter counts with their sources)."""

import polars as pl
import pytest

import toposcan


def test_bloom_params_match_model_card():
    # bigscience/bloom model card: 176,247,271,424 parameters.
    row = toposcan.evaluate("bloom-176b", gpu="a100-80", nodes=48, tp=4, pp=12, mbs=2, gbs=2048)
    assert int(row["params"][0]) == 176_247_271_424


@pytest.mark.parametrize("name,published", [
    ("bloom-176b", 176_247_271_424),   # bigscience/bloom model card
    ("llama-2-7b", 6_738_415_616),     # meta-llama/Llama-2-7b-hf safetensors total
    ("llama-3-8b", 8_030_261_248),     # meta-llama/Meta-Llama-3-8B safetensors total
])
def test_catalog_params_match_published(name, published):
    df = toposcan.models()
    assert int(df.filter(pl.col("name") == name)["params"][0]) == published


def test_bloom_launch_config_is_feasible():
    # BLOOM-176B trained on 48 nodes of A100-80: TP 4, PP 12 (70 layers, uneven), DP 8, MBS 2.
    row = toposcan.evaluate("bloom-176b", gpu="a100-80", nodes=48, tp=4, pp=12, mbs=2, gbs=2048)
    assert row["feasible"][0] and row["dp"][0] == 8


def test_enumerate_ranks_fastest_first():
    df = toposcan.enumerate(gpu="a100-80", nodes=48, top=10)
    assert df.height == 10
    assert (df["step_time_s"].diff().drop_nulls() >= 0).all()
    assert (df["dp"] * df["tp"] * df["pp"] == 384).all()


def test_step_time_breakdown_adds_up_on_every_row():
    # compute_s + recompute_s + ... + bubble_s == step_time_s for every row of a varied space
    # (ZeRO 0-3, every recompute mode, pipeline and not), and every part is non-negative.
    parts = ["compute_s", "recompute_s", "tp_comm_s", "pp_comm_s", "fsdp_comm_s", "dp_comm_exposed_s",
             "optimizer_s", "overhead_s", "bubble_s"]
    df = toposcan.enumerate(model="llama-2-13b", gpu="h100-80", nodes=4, cap=100_000)
    assert df.height > 100
    total = df.select(pl.sum_horizontal(parts)).to_series()
    assert ((total / df["step_time_s"] - 1).abs() < 1e-9).all()
    assert (df.select(pl.min_horizontal(parts)).to_series() >= 0).all()
    # recompute time appears exactly when something is recomputed
    assert ((df["recompute_s"] > 0) == (df["recompute"] != "none")).all()


def test_moe_and_long_sequences_search_ep_and_cp_by_default():
    # Issue "Exhaustive search at scale": expert parallelism where the model has experts, context
    # parallelism where sequences are long; dense short-sequence models keep both at 1.
    moe = toposcan.enumerate(model="mixtral-8x7b", gpu="h100-80", nodes=4, seq_len=4096, cap=1_000_000)
    assert set(moe["ep"].unique()) > {1} and set(moe["cp"].unique()) == {1}
    assert all(8 % e == 0 for e in moe["ep"].unique())
    long = toposcan.enumerate(model="llama-3-8b", gpu="h100-80", nodes=2, seq_len=65536, cap=1_000_000)
    assert set(long["cp"].unique()) > {1} and set(long["ep"].unique()) == {1}
    short = toposcan.enumerate(model="llama-3-8b", gpu="h100-80", nodes=2, cap=1_000_000)
    assert set(short["cp"].unique()) == {1} and set(short["ep"].unique()) == {1}


def test_network_overrides_change_only_what_crosses_the_links():
    # BLOOM's layout on 48 nodes: with seeds/001's real network (6.25 GB/s per GPU, BLOOM paper §3.4)
    # instead of the DGX's 25, the pipeline sends and DP reduction slow down and nothing else does.
    kw = dict(model="bloom-176b", gpu="a100-80", nodes=48, tp=4, pp=12, mbs=2, gbs=2048)
    dgx = toposcan.evaluate(**kw)
    jz = toposcan.evaluate(**kw, inter_node_gbs=6.25)
    assert jz["pp_comm_s"][0] > 3 * dgx["pp_comm_s"][0] and jz["dp_comm_s"][0] > 3 * dgx["dp_comm_s"][0]
    for col in ("compute_s", "recompute_s", "tp_comm_s", "mem_gb"):  # TP stays inside a node
        assert jz[col][0] == dgx[col][0]
    one_node = dict(model="llama-2-7b", gpu="a100-80", nodes=1, tp=2, mbs=1, gbs=64)
    assert toposcan.evaluate(**one_node, inter_node_gbs=1.0)["step_time_s"][0] == \
        toposcan.evaluate(**one_node)["step_time_s"][0]
    slow_nvlink = toposcan.evaluate(**one_node, intra_node_gbs=50.0)
    assert slow_nvlink["tp_comm_s"][0] > toposcan.evaluate(**one_node)["tp_comm_s"][0]
    for bad in (0, -1, float("nan"), "fast"):
        with pytest.raises(toposcan.InputError, match="inter_node_gbs"):
            toposcan.enumerate(model="llama-2-7b", nodes=2, inter_node_gbs=bad)
