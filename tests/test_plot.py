"""Charts (toposcan.plot): each chart encodes the fields and marks it promises, renders to SVG
offline, and the README's BLOOM example renders to a valid PNG. Needs the `plot` extra."""

from __future__ import annotations

import struct
import sys

import polars as pl
import pytest

import toposcan

alt = pytest.importorskip("altair")
vlc = pytest.importorskip("vl_convert")

from toposcan import plot, uncertainty  # noqa: E402


@pytest.fixture(scope="module")
def bloom() -> pl.DataFrame:
    """The README's BLOOM example, every feasible layout (not only the front)."""
    return toposcan.enumerate("bloom-176b", gpu="a100-80", nodes=48)


def _layers(spec: dict) -> list[dict]:
    return spec["layer"]


def _mark(layer: dict) -> str:
    m = layer["mark"]
    return m if isinstance(m, str) else m["type"]


def _data(spec: dict, layer: dict) -> list[dict]:
    """The rows a layer draws (Altair puts them in the top-level datasets)."""
    return spec["datasets"][layer["data"]["name"]]


def _svg(chart) -> str:
    svg = vlc.vegalite_to_svg(chart.to_dict())
    assert svg.lstrip().startswith("<svg") and "</svg>" in svg
    return svg


def test_pareto_encodes_points_front_capacity_and_layout(bloom):
    chart = plot.pareto(bloom)
    spec = chart.to_dict()
    marks = [_mark(layer) for layer in _layers(spec)]
    # one rule for the GPU's capacity, plus the front's 80% error bars where the frame has intervals
    assert marks.count("point") == 1 and marks.count("line") == 1
    assert marks.count("rule") == 1 + 2 * ("step_time_s_lo" in bloom.columns)
    points = next(layer for layer in _layers(spec) if _mark(layer) == "point")
    enc = points["encoding"]
    assert (enc["x"]["field"], enc["y"]["field"], enc["color"]["field"]) == ("mem_gb", "step_time_s", "tp x pp")
    tips = {t["field"] for t in enc["tooltip"]}
    assert {"dp", "tp", "pp", "cp", "ep", "mbs", "gbs", "zero_stage", "recompute"} <= tips
    assert len(_data(spec, points)) == bloom.height
    # The capacity rule sits at the catalog's A100-80GB memory.
    rules = [layer for layer in _layers(spec) if _mark(layer) == "rule"]
    assert [row["capacity_gib"] for layer in rules for row in _data(spec, layer) if "capacity_gib" in row] == [80.0]
    # The front drawn is the non-dominated set, checked here by brute force over every row.
    line = next(layer for layer in _layers(spec) if _mark(layer) == "line")
    assert line["mark"]["interpolate"] == "step-after"
    front = {(r["mem_gb"], r["step_time_s"]) for r in _data(spec, line)}
    pts = list(zip(bloom["mem_gb"], bloom["step_time_s"]))
    dominated = {p for p in pts if any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in pts)}
    assert front == set(pts) - dominated
    # The engine's own Pareto reducer agrees on the front's size.
    engine = toposcan.enumerate("bloom-176b", gpu="a100-80", nodes=48, pareto=("step_time_s", "mem_gb"))
    assert len(front) == engine.height
    svg = _svg(chart)
    assert "peak memory per GPU (GiB)" in svg and "step time (s)" in svg


def test_pareto_throughput_keeps_the_highest_and_draws_intervals(bloom):
    f = uncertainty.add_intervals(bloom, "megatron-deepspeed", "a100-80")
    spec = plot.pareto(f, y="tokens_per_s_per_gpu", highlight={"mem_gb": 60.0, "tokens_per_s_per_gpu": 150.0,
                                                                  "label": "launch.sh"}).to_dict()
    line = next(layer for layer in _layers(spec) if _mark(layer) == "line")
    front = _data(spec, line)
    ys = [r["tokens_per_s_per_gpu"] for r in sorted(front, key=lambda r: r["mem_gb"])]
    assert ys == sorted(ys)  # more memory buys more throughput along the front
    assert max(ys) == pytest.approx(bloom["tokens_per_s_per_gpu"].max())
    rules = [layer for layer in _layers(spec) if _mark(layer) == "rule"]
    fields = {(r["encoding"].get("y", {}).get("field"), r["encoding"].get("y2", {}).get("field")) for r in rules}
    fields |= {(r["encoding"].get("x", {}).get("field"), r["encoding"].get("x2", {}).get("field")) for r in rules}
    assert ("tokens_per_s_per_gpu_lo", "tokens_per_s_per_gpu_hi") not in fields  # no interval column for throughput
    assert ("mem_gb_lo", "mem_gb_hi") in fields
    assert [_mark(layer) for layer in _layers(spec)].count("text") == 1  # the highlighted configuration
    _svg(plot.pareto(f))


def test_breakdown_stacks_time_and_memory_components(bloom):
    chart = plot.breakdown(bloom, top=5)
    spec = chart.to_dict()
    time_c, mem_c = spec["hconcat"]
    for c, unit in ((time_c, "seconds"), (mem_c, "GiB")):
        assert _mark(c) == "bar"
        assert c["encoding"]["x"]["aggregate"] == "sum" and c["encoding"]["x"]["field"] == unit
        assert c["encoding"]["color"]["field"] == "component" and c["encoding"]["y"]["field"] == "row"
    # The stacked parts add up to each row's step time and peak memory.
    for c, unit, total in ((time_c, "seconds", "step_time_s"), (mem_c, "GiB", "mem_gb")):
        rows = spec["datasets"][c["data"]["name"]]
        sums: dict[str, float] = {}
        for r in rows:
            sums[r["row"]] = sums.get(r["row"], 0.0) + r[unit]
        assert list(sums.values()) == pytest.approx(bloom[total].head(5).to_list(), rel=1e-9)
        assert len(sums) == 5
    comps = {r["component"] for r in spec["datasets"][time_c["data"]["name"]]}
    assert {"compute", "bubble", "PP comm"} <= comps and "ZeRO-3 gathers" not in comps  # ZeRO-1: zero, left out
    _svg(chart)


def test_breakdown_skips_components_the_frame_lacks(bloom):
    f = bloom.drop("recompute_s", "logits_gb", "pp_comm_s")
    spec = plot.breakdown(f, top=3).to_dict()
    comps = set()
    for c in spec["hconcat"]:
        comps |= {r["component"] for r in spec["datasets"][c["data"]["name"]]}
    assert not comps & {"recompute", "logits", "PP comm"} and {"compute", "weights"} <= comps
    only_time = plot.breakdown(bloom.drop([c for _, c in plot.MEMORY_PARTS]), top=3).to_dict()
    assert len(only_time["hconcat"]) == 1


def test_scaling_one_line_per_series_best_row_per_gpu_count():
    frames = {}
    for gpu in ("a100-80", "h100-80"):
        frames[gpu] = pl.concat([toposcan.enumerate("llama-2-7b", gpu=gpu, nodes=n, gbs=512, top=3) for n in (1, 2, 4)])
    chart = plot.scaling(frames)
    spec = chart.to_dict()
    tps, mfu = spec["hconcat"]
    for c, y in ((tps, "tokens_per_s"), (mfu, "mfu")):
        assert _mark(c) == "line" and c["mark"]["point"] is True
        assert c["encoding"]["x"]["field"] == "gpus" and c["encoding"]["y"]["field"] == y
        assert c["encoding"]["color"]["field"] == "series"
    rows = spec["datasets"][spec["data"]["name"]] if "data" in spec else spec["datasets"][tps["data"]["name"]]
    assert len(rows) == 6  # 2 series x 3 GPU counts, one row each
    for r in rows:
        f = frames[r["series"]].filter(pl.col("gpus") == r["gpus"])
        assert r["tokens_per_s"] == pytest.approx((f["tokens_per_s_per_gpu"] * f["gpus"]).max())
    # Same chart from one frame with a `series` column.
    one = pl.concat([f.with_columns(pl.lit(k).alias("series")) for k, f in frames.items()])
    assert plot.scaling(one).to_dict()["hconcat"][0]["encoding"] == tps["encoding"]
    _svg(chart)


def test_readme_bloom_pareto_png(tmp_path, bloom):
    """The README's example: `toposcan.enumerate("bloom-176b", gpu="a100-80", nodes=48)` drawn as its
    Pareto front and written as PNG."""
    out = plot.save(plot.pareto(bloom), tmp_path / "bloom_pareto.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 600 and height > 400  # 2x scale of a 480 x 320 plot with axes and legend
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND"


def test_save_svg_and_self_contained_html(tmp_path, bloom):
    chart = plot.breakdown(bloom, top=3)
    svg = plot.save(chart, tmp_path / "b.svg").read_text()
    assert svg.lstrip().startswith("<svg")
    html = plot.save(chart, tmp_path / "b.HTML").read_text()
    assert "<html" in html.lower() and "<script src=\"http" not in html  # opens offline


def test_save_rejects_other_extensions(tmp_path, bloom):
    with pytest.raises(toposcan.InputError, match=r"must end in one of \.html, \.png, \.svg, got `x\.pdf`"):
        plot.save(plot.pareto(bloom), tmp_path / "x.pdf")
    with pytest.raises(toposcan.InputError, match="cannot write"):
        plot.save(plot.pareto(bloom), tmp_path / "no" / "such" / "x.svg")


def test_bad_frames_are_one_line_errors(bloom):
    with pytest.raises(toposcan.InputError, match="pareto needs column `hfu_x`"):
        plot.pareto(bloom, y="hfu_x")
    with pytest.raises(toposcan.InputError, match="no rows"):
        plot.pareto(bloom.head(0))
    with pytest.raises(toposcan.InputError, match="`top` must be a positive integer"):
        plot.breakdown(bloom, top=0)
    with pytest.raises(toposcan.InputError, match="`series` column"):
        plot.scaling(bloom)
    with pytest.raises(toposcan.InputError, match="polars DataFrame"):
        plot.pareto([1, 2])


def test_missing_altair_names_the_extra(monkeypatch, bloom):
    monkeypatch.setitem(sys.modules, "altair", None)  # import altair now raises ImportError
    with pytest.raises(toposcan.InputError, match=r"pip install 'toposcan\[plot\]'") as e:
        plot.pareto(bloom)
    assert e.value.code == "missing_dependency" and "\n" not in str(e.value)
    with pytest.raises(toposcan.InputError, match="altair"):
        plot.require("x.png")
    monkeypatch.setitem(sys.modules, "altair", alt)
    monkeypatch.setitem(sys.modules, "vl_convert", None)
    with pytest.raises(toposcan.InputError, match="vl-convert-python"):
        plot.require("x.png")
