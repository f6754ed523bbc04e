"""The issue-16 catalog: GPU peaks against their datasheets, model parameter counts against their
model cards and papers, Hugging Face config.json reading, and every new model through the core."""

from __future__ import annotations

import builtins
import json
import math
from pathlib import Path

import polars as pl
import pytest

import toposcan
from toposcan import catalog, hfconfig
from toposcan.api import evaluate
from toposcan.errors import InputError, ParseError

HF = Path(__file__).parent / "fixtures" / "hf"
B = 10**9


def counts(entry: dict) -> tuple[int, int]:
    """(params, params_active) the core computes for a models.toml-shaped entry, through the same
    model resolution a catalog name takes."""
    original = catalog.model_spec
    try:
        catalog.model_spec = lambda name: entry if name == "_entry" else original(name)
        row = evaluate(model="_entry", gpu="a100-80", nodes=1, gpus_per_node=1, tp=1, pp=1, mbs=1, gbs=1, _frame=False)
    finally:
        catalog.model_spec = original
    return int(row["params"]), int(row["params_active"])


def embeddings(entry: dict) -> int:
    return entry["vocab"] * entry["hidden"] * (1 if entry["tied_embeddings"] else 2)


def within_rounding(value: float, published: float, step: float) -> bool:
    """A card's figure printed to `step` (0.1B for "8.2B") holds `value` if it rounds to it."""
    return abs(value - published) <= step / 2 + 1e-9 * published


# ---------------------------------------------------------------------------------------------
# GPUs: dense peaks derived from the datasheets' printed figures.

# (gpu, key, printed figure, divisor): the catalog's dense TFLOP/s = printed / divisor. Sparse
# figures are halved; rack (NVL72) and 8-GPU board totals are divided by the GPU count.
DATASHEET = [
    # NVIDIA Blackwell datasheet, HGX B200 per GPU (sparse 4.5 / 9 / 18 PF).
    ("b200", "bf16", 4500.0, 2), ("b200", "fp8", 9000.0, 2), ("b200", "mxfp8", 9000.0, 2), ("b200", "nvfp4", 18000.0, 2),
    # GB200 NVL72 datasheet, rack totals (sparse PF): FP4 1,440, FP8 720, BF16 360, TF32 180.
    ("gb200", "nvfp4", 1_440_000.0, 144), ("gb200", "fp8", 720_000.0, 144), ("gb200", "mxfp8", 720_000.0, 144),
    ("gb200", "bf16", 360_000.0, 144), ("gb200", "tf32", 180_000.0, 144),
    # GB300 NVL72 datasheet: FP4 1,080 PF dense; FP8 720, BF16 360, TF32 180 sparse.
    ("gb300", "nvfp4", 1_080_000.0, 72), ("gb300", "fp8", 720_000.0, 144), ("gb300", "bf16", 360_000.0, 144),
    ("gb300", "tf32", 180_000.0, 144),
    # HGX B300 datasheet, 8-GPU totals: FP4 108 PF dense, FP8 72, BF16 36, TF32 18 sparse, FP32 600 TF.
    ("b300", "nvfp4", 108_000.0, 8), ("b300", "fp8", 72_000.0, 16), ("b300", "bf16", 36_000.0, 16),
    ("b300", "tf32", 18_000.0, 16), ("b300", "fp32", 600.0, 8),
    # H800 SXM datasheet (sparse): BF16 1,979, FP8 3,958; FP32 67.
    ("h800", "bf16", 1979.0, 2), ("h800", "fp8", 3958.0, 2), ("h800", "fp32", 67.0, 1),
    # H100 NVL datasheet (per GPU, sparse): TF32 835, BF16 1,671, FP8 3,341; FP32 60.
    ("h100-nvl", "tf32", 835.0, 2), ("h100-nvl", "bf16", 1671.0, 2), ("h100-nvl", "fp8", 3341.0, 2), ("h100-nvl", "fp32", 60.0, 1),
    # HGX H20 product brief (dense): FP8 296, BF16 148, TF32 74, FP32 44.
    ("h20", "fp8", 296.0, 1), ("h20", "bf16", 148.0, 1), ("h20", "tf32", 74.0, 1), ("h20", "fp32", 44.0, 1),
    # H100 SXM datasheet (the 96 GB part shares its compute).
    ("h100-96", "bf16", 1979.0, 2), ("h100-96", "fp8", 3958.0, 2),
    # AMD MI325X datasheet (dense): FP16 1,307.4, FP8 2,614.9, FP32 vector 163.4.
    ("mi325x", "bf16", 1307.4, 1), ("mi325x", "fp8", 2614.9, 1), ("mi325x", "fp32", 163.4, 1),
    # AMD MI355X datasheet (dense): FP16 2,516.6, FP8 and MXFP8 5,033.2, FP32 vector 157.3.
    ("mi355x", "bf16", 2516.6, 1), ("mi355x", "fp8", 5033.2, 1), ("mi355x", "mxfp8", 5033.2, 1), ("mi355x", "fp32", 157.3, 1),
]


@pytest.mark.parametrize(("gpu", "key", "printed", "divisor"), DATASHEET)
def test_peaks_match_the_datasheets(gpu: str, key: str, printed: float, divisor: int) -> None:
    peak = catalog.gpu_spec(gpu)["peak_tflops"][key]
    assert peak == pytest.approx(printed / divisor, rel=2e-3)


# (gpu, memory GiB, HBM GB/s, intra-node GB/s per direction, NVLink domain, board W): datasheet
# capacity and bandwidth (rack totals / 72 for NVL72: 13.4 TB and 21 TB, 576 TB/s), NVLink
# bidirectional / 2 (H800: 400 GB/s), board power.
MEMORY_AND_LINKS = [
    ("gb200", 13_400 / 72, 576_000 / 72, 900.0, 72, 1200.0),
    ("gb300", 288.0, 576_000 / 72, 900.0, 72, 1400.0),
    ("b300", 2_304 / 8, 8000.0, 900.0, 8, 1100.0),
    ("h800", 80.0, 3350.0, 400 / 2, 8, 700.0),
    ("h20", 96.0, 4000.0, 900 / 2, 8, 400.0),
    ("h100-96", 96.0, 3350.0, 900 / 2, 8, 700.0),
    ("h100-nvl", 94.0, 3900.0, 128 / 2, 8, 400.0),
    ("mi325x", 256.0, 6000.0, 7 * 128 / 2, 8, 1000.0),
    ("mi355x", 288.0, 8000.0, 7 * 153.6 / 2, 8, 1400.0),
]


@pytest.mark.parametrize(("gpu", "mem", "bw", "link", "domain", "watts"), MEMORY_AND_LINKS)
def test_memory_links_and_power_match_the_datasheets(gpu: str, mem: float, bw: float, link: float, domain: int,
                                                     watts: float) -> None:
    g = catalog.gpu_spec(gpu)
    assert g["memory_gib"] == pytest.approx(mem, rel=0.01)
    assert g["memory_bw_gbs"] == pytest.approx(bw, rel=1e-3)
    assert g["intra_node_gbs"] == pytest.approx(link, rel=1e-3)
    assert g["nvlink_domain"] == domain
    assert g["board_power_w"] == watts


def test_every_gpu_carries_the_new_fields_and_a_source() -> None:
    for name in catalog.gpu_names():
        g = catalog.gpu_spec(name)
        assert g["nvlink_domain"] >= 1 and g["host_link_gbs"] > 0 and g["source"], name
        # The scale-up domain holds at least the node, or the node's GPUs could not reach each other at intra_node_gbs.
        assert g["nvlink_domain"] >= g["gpus_per_node"], name
        peak = g["peak_tflops"]
        # MX and NVFP4 rates only where the tensor cores have them: at least the FP8 rate.
        for key in ("mxfp8", "nvfp4"):
            if key in peak:
                assert peak.get("fp8", 0) > 0 and peak[key] >= peak["fp8"], (name, key)
    # Blackwell Ultra: 1.5x Blackwell's NVFP4 (NVIDIA Blackwell Ultra technical blog), the same FP8.
    assert catalog.gpu_spec("gb300")["peak_tflops"]["nvfp4"] == 1.5 * catalog.gpu_spec("gb200")["peak_tflops"]["nvfp4"]
    assert catalog.gpu_spec("gb300")["peak_tflops"]["fp8"] == catalog.gpu_spec("gb200")["peak_tflops"]["fp8"]
    # Host links: PCIe Gen5 x16 64 GB/s per direction; Grace NVLink-C2C 900 bidirectional shared by two GPUs.
    assert catalog.gpu_spec("h100-80")["host_link_gbs"] == 64.0
    assert catalog.gpu_spec("gb200")["host_link_gbs"] == 900 / 2 / 2


def test_topo_gpus_lists_the_new_gpus() -> None:
    df = toposcan.gpus()
    assert {"gb200", "gb300", "b300", "h800", "h20", "h100-96", "h100-nvl", "mi325x", "mi355x"} <= set(df["name"])
    row = df.filter(pl.col("name") == "gb200")
    assert row["nvlink_domain"][0] == 72 and row["nvfp4_tflops"][0] == 10000.0 and row["mxfp8_tflops"][0] == 5000.0
    assert df.filter(pl.col("name") == "a100-80")["nvfp4_tflops"][0] == 0.0


# ---------------------------------------------------------------------------------------------
# Models: counts against the cards.

# (model, published total, how the card prints it (step), card source). A step of 0 means exact.
TOTALS = [
    ("llama-3.1-8b", 8_030_261_248, 0, "HF safetensors total of meta-llama/Llama-3.1-8B"),
    ("llama-3.1-70b", 70_553_706_496, 0, "HF safetensors total of meta-llama/Llama-3.1-70B"),
    ("llama-3.1-405b", 405_853_388_800, 0, "HF safetensors total of meta-llama/Llama-3.1-405B"),
    ("qwen3-0.6b", 0.6 * B, 0.1 * B, "Qwen3-0.6B-Base card: 0.6B"),
    ("qwen3-1.7b", 1.7 * B, 0.1 * B, "Qwen3-1.7B-Base card: 1.7B"),
    ("qwen3-4b", 4.0 * B, 0.1 * B, "Qwen3-4B-Base card: 4.0B"),
    ("qwen3-8b", 8.2 * B, 0.1 * B, "Qwen3-8B-Base card: 8.2B"),
    ("qwen3-14b", 14.8 * B, 0.1 * B, "Qwen3-14B-Base card: 14.8B"),
    ("qwen3-32b", 32.8 * B, 0.1 * B, "Qwen3-32B card: 32.8B"),
    ("qwen3-30b-a3b", 30.5 * B, 0.1 * B, "Qwen3-30B-A3B-Base card: 30.5B"),
    ("qwen3-235b-a22b", 235 * B, 1 * B, "Qwen3-235B-A22B card: 235B"),
    ("gpt-oss-20b", 20.91 * B, 0.01 * B, "gpt-oss model card Table 1: 20.91B"),
    ("gpt-oss-120b", 116.83 * B, 0.01 * B, "gpt-oss model card Table 1: 116.83B"),
    ("nemotron-4-340b", 341.0 * B, 0.2 * B, "Nemotron-4 340B report: 9.4B embedding + 331.6B non-embedding"),
    ("nemotron-4-15b", 15.7 * B, 0.2 * B, "Nemotron-4 15B report: 3.2B embedding + 12.5B non-embedding"),
]


@pytest.mark.parametrize(("name", "published", "step", "card"), TOTALS)
def test_total_matches_the_card(name: str, published: float, step: float, card: str) -> None:
    entry = catalog.model_spec(name)
    total, _ = counts(entry)
    if step == 0:
        assert total == published == entry["params_published"], card
    else:
        assert within_rounding(total, published, step), (card, total)


# (model, published non-embedding count, step, source): separates the layers from the vocabulary.
NON_EMBEDDING = [
    ("qwen3-0.6b", 0.44 * B, 0.01 * B, "Qwen3-0.6B card: 0.44B non-embedding"),
    ("qwen3-1.7b", 1.4 * B, 0.1 * B, "Qwen3-1.7B card: 1.4B"),
    ("qwen3-4b", 3.6 * B, 0.1 * B, "Qwen3-4B card: 3.6B"),
    ("qwen3-8b", 6.95 * B, 0.01 * B, "Qwen3-8B card: 6.95B"),
    ("qwen3-14b", 13.2 * B, 0.1 * B, "Qwen3-14B card: 13.2B"),
    ("qwen3-32b", 31.2 * B, 0.1 * B, "Qwen3-32B card: 31.2B"),
    ("qwen3-30b-a3b", 29.9 * B, 0.1 * B, "Qwen3-30B-A3B card: 29.9B"),
    ("qwen3-235b-a22b", 234 * B, 1 * B, "Qwen3-235B-A22B card: 234B"),
    ("nemotron-4-15b", 12.5 * B, 0.1 * B, "Nemotron-4 15B (arXiv 2402.16819): 12.5B non-embedding"),
    ("nemotron-4-340b", 331.6 * B, 0.1 * B, "Nemotron-4 340B (arXiv 2406.11704): 331.6B non-embedding"),
]


@pytest.mark.parametrize(("name", "published", "step", "card"), NON_EMBEDDING)
def test_non_embedding_matches_the_card(name: str, published: float, step: float, card: str) -> None:
    entry = catalog.model_spec(name)
    total, _ = counts(entry)
    assert within_rounding(total - embeddings(entry), published, step), (card, total - embeddings(entry))


# (model, published activated count, relative tolerance, whether the card counts only one of the
# embedding and unembedding tables, where params_active counts both).
ACTIVE = [
    ("qwen3-30b-a3b", 3.3e9, 0.02, False),     # card: 3.3B activated (counting gives 3.35B: the card truncates)
    ("qwen3-235b-a22b", 22e9, 0.01, False),    # card: 22B activated (22.19B)
    ("gpt-oss-20b", 3.61e9, 0.002, True),      # gpt-oss card Table 1: 3.61B active
    ("gpt-oss-120b", 5.13e9, 0.002, True),     # 5.13B active
    ("llama-4-scout", 17e9, 0.02, False),      # Llama 4 cards: 17B active (17.17B)
    ("llama-4-maverick", 17e9, 0.02, False),   # (17.18B)
    ("mixtral-8x22b", 39e9, 0.01, False),      # Mistral AI: 39B active (39.16B)
]


@pytest.mark.parametrize(("name", "published", "rel", "one_embedding"), ACTIVE)
def test_active_matches_the_card(name: str, published: float, rel: float, one_embedding: bool) -> None:
    entry = catalog.model_spec(name)
    _, active = counts(entry)
    if one_embedding:
        active -= entry["vocab"] * entry["hidden"]
    assert active == pytest.approx(published, rel=rel)


def test_deepseek_v3_with_and_without_mtp() -> None:
    # DeepSeek-V3 report (arXiv 2412.19437): 671B total, 37B activated, for the main model; the
    # card: 685B in the checkpoint = 671B main + 14B MTP module, whose checkpoint copy stores its own
    # embedding and output head (shared with the main model in training).
    entry = catalog.model_spec("deepseek-v3")
    assert entry["mtp_layers"] == 1 and entry["params_published"] == 671 * B
    main, main_active = counts({**entry, "mtp_layers": 0})
    assert within_rounding(main, 671 * B, 1 * B)
    assert within_rounding(main_active - entry["vocab"] * entry["hidden"], 37 * B, 1 * B)  # one embedding table
    with_mtp, _ = counts(entry)
    checkpoint = with_mtp + 2 * entry["vocab"] * entry["hidden"]
    assert checkpoint == pytest.approx(685e9, rel=1e-3)  # 684.49B (the checkpoint also stores FP8 block scales)
    assert 11 * B < with_mtp - main < 12 * B  # one MoE layer (11.4B) + the 2h x h projection


def test_kimi_k2_counts_the_config() -> None:
    # Kimi K2 report (arXiv 2507.20534): 1.04T total, 32.6B activated. Counting the released config
    # (no MTP layer) gives 1.026T, 1.3% below; one DeepSeek-V3-style MTP module (17B) would make
    # 1.043T, so the report most likely counts one. The activated count (both embedding tables,
    # 32.86B) agrees within 1%.
    entry = catalog.model_spec("kimi-k2")
    total, active = counts(entry)
    assert total == pytest.approx(1.04e12, rel=0.015)
    assert counts({**entry, "mtp_layers": 1})[0] == pytest.approx(1.04e12, rel=0.005)
    assert active == pytest.approx(32.6e9, rel=0.01)


def test_llama4_text_models_against_their_cards() -> None:
    # Llama 4 Scout card: 109B total, including the vision encoder and projector that the text
    # model here leaves out (about 0.9B): the text count sits below by less than 1.5%.
    total, _ = counts(catalog.model_spec("llama-4-scout"))
    assert 107.5 * B < total < 109 * B
    # Llama 4 Maverick card: 400B total, a round figure: the text model alone counts 400.7B.
    assert counts(catalog.model_spec("llama-4-maverick"))[0] == pytest.approx(400e9, rel=0.005)


def test_grok_and_mixtral_8x22b_near_the_announced_totals() -> None:
    # xAI: 314B (counting the released code's shapes gives 315.7B, +0.54%); Mistral AI: 141B.
    assert counts(catalog.model_spec("grok-1"))[0] == pytest.approx(314e9, rel=0.006)
    assert within_rounding(counts(catalog.model_spec("mixtral-8x22b"))[0], 141 * B, 1 * B)


def test_maverick_interleaves_dense_and_moe_layers() -> None:
    # Without the interleave every layer would carry 128 experts: 784B, not the card's 400B.
    entry = catalog.model_spec("llama-4-maverick")
    assert entry["moe_layer_every"] == 2
    assert counts({**entry, "moe_layer_every": 1})[0] > 1.9 * counts(entry)[0]


def test_qwen3_head_dim_is_its_own() -> None:
    # Qwen3-0.6B: 16 heads of 128 on hidden 1024. Taking head_dim = hidden / heads (64) would
    # drop 4 x 28 x 1024 x 512 weights and miss the card's 0.44B non-embedding.
    entry = catalog.model_spec("qwen3-0.6b")
    assert entry["heads"] * entry["head_dim"] == 2 * entry["hidden"]
    total, _ = counts(entry)
    narrow, _ = counts({**entry, "head_dim": 64})
    assert total - narrow == 28 * (2 * 1024 * 1024 + 2 * 1024 * 512 + 2 * 64)
    assert not within_rounding(narrow - embeddings(entry), 0.44 * B, 0.01 * B)


def test_every_model_has_every_key_and_a_source() -> None:
    tables = [catalog.model_spec(n) for n in catalog.model_names()]
    keys = set(tables[0])
    for t in tables:
        assert set(t) == keys and t["source"]
    assert {"moe_layer_every", "mtp_layers", "qk_norm", "attention_sinks", "router_bias", "qkv_bias", "sandwich_norm",
            "sliding_window", "full_attention_every"} <= keys


# (model, nodes of 8 H100s, tp, pp, ep): a layout each new model fits in.
LAYOUTS = [
    ("deepseek-v3", 32, 1, 16, 16), ("kimi-k2", 16, 1, 16, 8),
    ("qwen3-0.6b", 1, 1, 1, 1), ("qwen3-1.7b", 1, 1, 1, 1), ("qwen3-4b", 1, 1, 1, 1), ("qwen3-8b", 1, 1, 1, 1),
    ("qwen3-14b", 1, 8, 1, 1), ("qwen3-32b", 1, 8, 1, 1), ("qwen3-30b-a3b", 1, 4, 1, 2), ("qwen3-235b-a22b", 8, 4, 8, 2),
    ("gpt-oss-20b", 1, 8, 1, 1), ("gpt-oss-120b", 4, 8, 4, 1),
    ("llama-3.1-8b", 1, 1, 1, 1), ("llama-3.1-70b", 4, 8, 4, 1), ("llama-3.1-405b", 16, 8, 16, 1),
    ("llama-4-scout", 4, 8, 4, 1), ("llama-4-maverick", 16, 8, 16, 1), ("mixtral-8x22b", 16, 8, 16, 1),
    ("nemotron-4-15b", 1, 8, 1, 1), ("nemotron-4-340b", 16, 8, 16, 1), ("grok-1", 16, 8, 16, 1),
]


@pytest.mark.parametrize(("name", "nodes", "tp", "pp", "ep"), LAYOUTS)
def test_every_new_model_runs_through_the_core(name: str, nodes: int, tp: int, pp: int, ep: int) -> None:
    dp = nodes * 8 // (tp * pp)
    row = evaluate(model=name, gpu="h100-80", nodes=nodes, tp=tp, pp=pp, ep=ep, mbs=1, gbs=8 * dp, recompute="full")
    assert row["feasible"][0], row["reject_message"][0]
    for col in ("step_time_s", "mem_gb", "params", "mfu"):
        assert math.isfinite(float(row[col][0])) and float(row[col][0]) > 0, col
    assert float(row["mem_gb"][0]) < 80


def test_sliding_window_cuts_attention_flops() -> None:
    # GPT-OSS-120B at 4096 tokens: half its layers see 128 keys, so attention is about half of
    # the same model without windows. The 6N part is the same; the attention part shrinks.
    entry = catalog.model_spec("gpt-oss-120b")
    original = catalog.model_spec
    rows = {}
    try:
        for window in (128, 0):
            catalog.model_spec = lambda n, w=window: {**entry, "sliding_window": w} if n == "_e" else original(n)
            rows[window] = evaluate(model="_e", gpu="h100-80", nodes=4, tp=8, pp=4, mbs=1, gbs=8, _frame=False)
    finally:
        catalog.model_spec = original
    six_n = 6 * rows[0]["params_active"] * 4096 * 8
    attn = {w: rows[w]["flops_per_iter_model"] - six_n for w in rows}
    assert attn[128] / attn[0] == pytest.approx((18 * 4096 + 18 * 128) / (36 * 4096), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Hugging Face config.json.

# (fixture, published total or None, non-embedding or None, relative tolerance (0: exact); sources
# in tests/fixtures/hf/README.md)
HF_COUNTS = [
    ("llama-3.1-8b", 8_030_261_248, None, 0),
    ("mixtral-8x7b", 46_702_792_704, None, 0),
    ("qwen2.5-7b", 7.61e9, 6.53e9, 0.001),  # card: 7.61B / 6.53B (counting: 7.6156B / 6.5256B)
    ("qwen3-0.6b", 0.6e9, 0.44e9, 0.01),     # 0.596B / 0.4405B
    ("qwen3-30b-a3b", 30.5e9, 29.9e9, 0.002),
    ("gpt-oss-20b", 20.91e9, None, 0.0005),
    ("gemma-2-2b", None, 2_024_517_888, 0),
    ("gemma-3-1b", None, 698e6, 0.001),
]


@pytest.mark.parametrize(("fixture", "total", "non_embedding", "rel"), HF_COUNTS)
def test_hf_config_counts_match_the_card(fixture: str, total: float | None, non_embedding: float | None,
                                         rel: float) -> None:
    entry, ignored = hfconfig.load_model_file(str(HF / f"{fixture}.json"))
    assert ignored == []
    assert set(entry) == set(catalog.model_spec("llama-3-8b"))  # the shape of a models.toml entry
    n, _ = counts(entry)
    for published, value in ((total, n), (non_embedding, n - embeddings(entry))):
        if published is not None:
            assert value == pytest.approx(published, rel=rel, abs=0), fixture


def test_hf_config_matches_the_catalog_entry() -> None:
    # The same model read from its config and from the catalog gives the same shape and count.
    for fixture, name in (("qwen3-30b-a3b", "qwen3-30b-a3b"), ("deepseek-v3", "deepseek-v3"),
                          ("gpt-oss-20b", "gpt-oss-20b"), ("mixtral-8x7b", "mixtral-8x7b")):
        entry, _ = hfconfig.load_model_file(str(HF / f"{fixture}.json"))
        cat = catalog.model_spec(name)
        shape = [k for k in cat if k not in ("source", "params_published", "seq_len", "ffn_hidden")]
        assert {k: entry[k] for k in shape} == {k: cat[k] for k in shape}, fixture
        assert counts(entry) == counts(cat), fixture


def test_hf_config_windows_and_gemma() -> None:
    gemma3, _ = hfconfig.load_model_file(str(HF / "gemma-3-1b.json"))
    assert (gemma3["sliding_window"], gemma3["full_attention_every"]) == (512, 6)
    assert gemma3["qk_norm"] and gemma3["sandwich_norm"] and gemma3["tied_embeddings"]
    # Gemma 3 report Table 1: 302M embedding parameters (262,144 x 1,152).
    assert gemma3["vocab"] * gemma3["hidden"] == pytest.approx(302e6, abs=0.5e6)
    gemma2, _ = hfconfig.load_model_file(str(HF / "gemma-2-2b.json"))
    assert (gemma2["sliding_window"], gemma2["full_attention_every"]) == (4096, 2)


def test_hf_config_names_what_it_did_not_understand(tmp_path: Path) -> None:
    cfg = json.loads((HF / "llama-3.1-8b.json").read_text())
    cfg.update({"my_new_gate": 3, "mlp_bias": True})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    entry, ignored = hfconfig.load_model_file(str(tmp_path / "config.json"))
    assert ignored == ["mlp_bias", "my_new_gate"]
    assert entry["layers"] == 32 and not entry["bias"]
    # A multimodal wrapper: the text model is read, the vision tower named as ignored.
    wrapped = {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"],
               "text_config": json.loads((HF / "gemma-3-1b.json").read_text()), "vision_config": {"hidden_size": 1152}}
    (tmp_path / "mm.json").write_text(json.dumps(wrapped))
    entry, ignored = hfconfig.load_model_file(str(tmp_path / "mm.json"))
    assert ignored == ["vision_config"] and entry["hidden"] == 1152


@pytest.mark.parametrize(("content", "error", "words"), [
    ("{not json", ParseError, "not valid JSON"),
    ("[1, 2]", ParseError, "JSON object"),
    ('{"model_type": "bert", "hidden_size": 768}', ParseError, "model_type `bert` is not read"),
    ('{"model_type": "llama", "hidden_size": 4096}', ParseError, "`num_hidden_layers` is required"),
    ('{"model_type": "llama", "num_hidden_layers": 2.5, "hidden_size": 8, "num_attention_heads": 1}', ParseError,
     "`num_hidden_layers` must be an integer"),
    ('{"model_type": "qwen3_moe", "num_hidden_layers": 4, "hidden_size": 8, "num_attention_heads": 1, '
     '"intermediate_size": 8, "vocab_size": 8, "num_experts": 4, "num_experts_per_tok": 1, '
     '"moe_intermediate_size": 8, "mlp_only_layers": [2]}', ParseError, "`mlp_only_layers`"),
])
def test_hf_config_errors_are_one_line(tmp_path: Path, content: str, error: type, words: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(error) as e:
        hfconfig.load_model_file(str(path))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_hf_config_missing_file_and_hub_without_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="cannot read"):
        hfconfig.load_model_file(str(tmp_path / "absent.json"))
    real_import = builtins.__import__

    def no_hub(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("huggingface_hub"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_hub)
    with pytest.raises(InputError, match="needs the huggingface_hub package") as e:
        hfconfig.load_model_file("hf:Qwen/Qwen3-0.6B")
    assert e.value.code == "missing_dependency"
    with pytest.raises(InputError, match="hf:org/name"):
        hfconfig.load_model_file("hf:not-a-repo")
