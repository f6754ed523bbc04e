"""Sliding-window attention: toposcan's time model against the work a block-sparse kernel does and,
once measured, against FlexAttention on an H200 (data/measured/h200_window_attention.csv, from
benches/device/window_attention.py; README.md there).

The model (rust/core/src/score.rs, `LayerBase::new`, the `windowed` branch) prices a layer with
window w as causal flash attention over band = min(2w, seq) keys, and a full causal layer over seq
keys: `_core.attention_time(cluster, "bf16", seq, band, head_dim, batch_heads)`. Backward is 2.5x
forward for both, so the modelled windowed/full ratio is the same for `fwd` and `fwd_bwd`, and it is
band / seq at every shape below (same query tiles, same waves).

A block-sparse kernel with 128 x 128 blocks (FlexAttention's `create_block_mask` default) computes
every key block that holds one unmasked pair: for window w about w/128 + 1 blocks per query block,
and for the causal mask half the blocks plus the diagonal. `block_work_ratio` counts them; the
counts equal torch 2.11's `create_block_mask` (kv_num_blocks + full_kv_num_blocks) at every
(seq, window) of the grid (checked on CPU, 2026-12-04: e.g. seq 4096: 528 causal, 63 / 150 / 408 for
windows 128 / 512 / 2048; seq 32768: 32896 causal, 511 / 1270 / 4216).

Model against block work (head_dim 64 and 128 give the same ratios):

    seq    window  model   blocks  model/blocks
    4096   128     0.0625  0.1193  0.52
    4096   512     0.2500  0.2841  0.88
    4096   2048    1.0000  0.7727  1.29   (band clamped to seq: priced as full causal)
    8192   128     0.0312  0.0611  0.51
    8192   512     0.1250  0.1490  0.84
    8192   2048    0.5000  0.4577  1.09
    32768  128     0.0078  0.0155  0.50
    32768  512     0.0312  0.0386  0.81
    32768  2048    0.1250  0.1282  0.98

Two gaps, marked below as strict xfails (an XPASS means the model was fixed: drop the marker):
- The 2w band gives w keys per query; the kernel computes about w + 128 (the partial block at the
  window's far edge), so a window of 128 (GPT-OSS) is priced at half its work, 512 at 0.8.
- min(2w, seq) prices w >= seq/2 as full causal, though the first w queries see fewer keys than the
  causal triangle would give them: at seq 4096, w 2048 the work is 0.77 of full, priced 1.0.
A fix that prices a window as causal over min(2(w + 128), seq) keys, or as the block ratio times
the full causal time, would close both (for the lead; not changed here).

The measured comparison runs when the CSV exists (it does not yet: the device loan was paused on
2026-12-04 when this was written), and its bounds are predictions written before any measurement:
a kernel's time ratio should be no less than ~0.9 of its block-work ratio (the windowed call does
those blocks, and per-query-block costs such as loading Q and writing O do not shrink with the
window), so the model, at 0.8-1.1 of the block work for w >= 512 with 2w < seq, should land at
0.6-1.2 of the measured ratio there, and under 0.6 at window 128.
"""

import importlib.util
import math
from collections import defaultdict
from pathlib import Path

import pytest

from toposcan import _core
from toposcan import validate as v
from toposcan.spec import cluster_dict

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("window_attention", ROOT / "benches/device/window_attention.py")
wa = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wa)

CLUSTER = cluster_dict("h200", 1, 1)
GRID = [(d, h, s, b, w) for d, h, _, s, b in wa.grid() for w in wa.WINDOWS[1:]]


def block_work_ratio(seq: int, window: int) -> float:
    """Key blocks computed with the window over those computed for the causal mask."""
    return wa.kv_blocks(seq, window)[0] / wa.kv_blocks(seq, 0)[0]


def model_ratio(head_dim: int, seq: int, window: int, batch_heads: int) -> float:
    """The model's windowed/full time for one layer's attention forward (backward is 2.5x both)."""
    band = min(2 * window, seq)
    full = _core.attention_time(CLUSTER, "bf16", seq, seq, head_dim, batch_heads)
    return _core.attention_time(CLUSTER, "bf16", seq, band, head_dim, batch_heads) / full


def _ids(p):
    return f"d{p[0]}-s{p[2]}-w{p[4]}"


def test_block_counts_by_hand():
    # 32 query blocks: causal 1 + 2 + ... + 32; window 128: the first block alone, then the diagonal
    # and the one before it; window 512 spans 5 blocks once the first 4 are past.
    assert wa.kv_blocks(4096, 0) == (528, 32)
    assert wa.kv_blocks(4096, 128)[0] == 1 + 31 * 2
    assert wa.kv_blocks(4096, 512)[0] == 1 + 2 + 3 + 4 + 28 * 5
    # a window as long as the sequence is the causal mask
    assert wa.kv_blocks(4096, 4096) == wa.kv_blocks(4096, 0)


@pytest.mark.parametrize(
    "p", [p for p in GRID if p[4] >= 512 and 2 * p[4] < p[2]], ids=_ids)
def test_model_near_block_work_for_windows_of_512_and_more(p):
    # Where the window is at least 4 blocks and the band is not clamped, the model's w keys per
    # query against the kernel's ~w + 128 give 0.8-1.0, and the causal triangle of the first w
    # queries (which the 2w band ignores) pushes it up by at most w/(2 seq): 0.81..1.09 on the grid.
    d, h, s, b, w = p
    r = model_ratio(d, s, w, b * h) / block_work_ratio(s, w)
    assert 0.78 <= r <= 1.12, f"model/blocks {r:.3f}"


@pytest.mark.xfail(strict=True, reason="model gap: a window of 128 is priced at half the block work "
                   "(2w band = w keys per query; the kernel computes w + 128)")
@pytest.mark.parametrize("p", [p for p in GRID if p[4] == 128], ids=_ids)
def test_model_prices_window_128_near_block_work(p):
    d, h, s, b, w = p
    r = model_ratio(d, s, w, b * h) / block_work_ratio(s, w)
    assert r >= 0.8, f"model/blocks {r:.3f}"


def test_model_window_128_underprices_by_half():
    # The gap above, bounded so it cannot grow unnoticed: 0.50-0.52 of the block work today.
    for d, h, s, b, w in GRID:
        if w == 128:
            r = model_ratio(d, s, w, b * h) / block_work_ratio(s, w)
            assert 0.45 <= r <= 0.6, (d, s, r)


@pytest.mark.xfail(strict=True, reason="model gap: min(2w, seq) prices w = seq/2 as full causal; "
                   "the block work is 0.77 of it at seq 4096")
def test_model_clamped_band_near_block_work():
    r = model_ratio(64, 4096, 2048, 15 * 64) / block_work_ratio(4096, 2048)
    assert r <= 1.15, f"model/blocks {r:.3f}"


def test_model_windowed_never_above_full_and_monotone():
    for d, h, s, b, _ in GRID:
        ratios = [model_ratio(d, s, w, b * h) for w in wa.WINDOWS[1:]]
        assert all(0 < x <= 1 for x in ratios)
        assert ratios == sorted(ratios)


# ---------------------------------------------------------------------------------------------------
# Measured (FlexAttention on an H200): runs once h200_window_attention.csv is committed.


def _measured():
    try:
        rows = v.load("h200_window_attention", folder="measured")
    except FileNotFoundError:
        return None
    t = {}
    for r in rows:
        if r["kernel"] == "flex" and r["status"] == "ok":
            t[(int(r["head_dim"]), int(r["seq"]), int(r["window"]), r["pass"])] = (
                float(r["time_s"]), int(r["heads"]) * int(r["batch"]))
    return t


MEASURED = _measured()


def _measured_ratios():
    """(head_dim, seq, window, pass, batch_heads, measured windowed/full)."""
    out = []
    for (d, s, w, ps), (t, bh) in sorted((MEASURED or {}).items()):
        full = MEASURED.get((d, s, 0, ps))
        if w and full:
            out.append((d, s, w, ps, bh, t / full[0]))
    return out


needs_data = pytest.mark.skipif(MEASURED is None, reason="h200_window_attention.csv not measured yet "
                                "(run benches/device/window_attention.py on an H200)")


@needs_data
def test_measured_grid_mostly_present():
    # 2 head dims x 3 seqs x 3 windows x 2 passes; a compile time-out may lose a shape, not most
    assert len(_measured_ratios()) >= 24


@needs_data
def test_measured_ratio_not_below_block_work():
    for d, s, w, ps, _, m in _measured_ratios():
        assert m >= 0.9 * block_work_ratio(s, w), (d, s, w, ps, m)
        assert m < 1.05 or 2 * w >= s, (d, s, w, ps, m)


@needs_data
def test_model_vs_measured_windows_of_512_and_more():
    bad = []
    for d, s, w, ps, bh, m in _measured_ratios():
        if w >= 512 and 2 * w < s:
            r = model_ratio(d, s, w, bh) / m
            if not 0.6 <= r <= 1.2:
                bad.append((d, s, w, ps, round(m, 4), round(r, 3)))
    assert not bad, f"(d, seq, window, pass, measured ratio, model/measured) out of 0.6-1.2: {bad}"


@needs_data
def test_model_underprices_window_128_measured():
    # Predicted before measuring: the model's 0.5 of the block work puts it under 0.6 of measured.
    by = defaultdict(list)
    for d, s, w, ps, bh, m in _measured_ratios():
        if w == 128:
            by[ps].append(model_ratio(d, s, w, bh) / m)
    assert by and all(r < 0.6 for rs in by.values() for r in rs), dict(by)
    assert all(math.isfinite(r) for rs in by.values() for r in rs)
