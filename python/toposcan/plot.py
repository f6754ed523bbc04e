"""Charts of toposcan frames with Vega-Altair (the optional extra ``toposcan[plot]``).

* :func:`pareto`: step time (or tokens/s/GPU) against peak memory per GPU, points coloured by
  tp x pp, the Pareto front drawn, the GPU's capacity as a rule, the layout in the tooltip;
* :func:`breakdown`: where each second of a step and each GiB of memory goes, for the top rows;
* :func:`scaling`: tokens/s and MFU against GPU count, one line per framework or GPU;
* :func:`save`: ``.html`` (self-contained), ``.png`` or ``.svg``, rendered offline by vl-convert.

Each chart function returns an Altair chart object; a notebook shows it inline. Without altair
installed they raise a one-line :class:`~toposcan.errors.InputError` naming the extra to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from toposcan.errors import InputError

INSTALL_HINT = "pip install 'toposcan[plot]'"

#: The layout shown in every tooltip, where the frame has the column.
LAYOUT = ("dp", "tp", "pp", "vpp", "cp", "ep", "mbs", "gbs", "zero_stage", "recompute", "sequence_parallel")

#: Step-time components (they add up to step_time_s), with their labels; the same split as
#: ``render.BREAKDOWN``, in the order a step spends them.
TIME_PARTS = (("compute", "compute_s"), ("recompute", "recompute_s"), ("TP/CP comm", "tp_comm_s"), ("EP all-to-all", "ep_comm_s"),
              ("PP comm", "pp_comm_s"), ("ZeRO-3 gathers", "fsdp_comm_s"), ("DP comm (exposed)", "dp_comm_exposed_s"),
              ("bubble", "bubble_s"), ("optimizer", "optimizer_s"), ("overheads", "overhead_s"))
#: Memory components on the peak stage (they add up to mem_gb).
MEMORY_PARTS = (("weights", "weights_gb"), ("gradients", "gradients_gb"), ("optimizer", "optimizer_gb"),
                ("activations", "activations_gb"), ("logits", "logits_gb"), ("buffers", "buffers_gb"),
                ("overhead", "overhead_gb"))

#: Columns where larger is better (a Pareto front keeps the highest, not the lowest).
HIGHER_IS_BETTER = {"tokens_per_s_per_gpu", "tflops_per_gpu", "mfu", "hfu"}

TITLES = {"mem_gb": "peak memory per GPU (GiB)", "step_time_s": "step time (s)",
          "tokens_per_s_per_gpu": "tokens/s per GPU", "tflops_per_gpu": "TFLOP/s per GPU", "mfu": "MFU",
          "gpus": "GPUs", "tokens_per_s": "tokens/s (all GPUs)", "cost_usd": "training run cost (USD)",
          "usd_per_m_tokens": "USD per million tokens", "train_days": "training days"}


def _altair() -> Any:
    try:
        import altair
    except ImportError:
        raise InputError(f"plotting needs the `altair` package: {INSTALL_HINT}", code="missing_dependency") from None
    return altair


def _vl_convert() -> Any:
    try:
        import vl_convert
    except ImportError:
        raise InputError(f"saving a chart needs the `vl-convert-python` package: {INSTALL_HINT}",
                         code="missing_dependency") from None
    return vl_convert


def _plain(df: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    """The columns a chart needs, enums and categoricals as strings (Vega data is JSON)."""
    df = df.select([c for c in dict.fromkeys(cols) if c in df.columns])
    return df.with_columns([pl.col(c).cast(pl.String) for c, t in df.schema.items()
                            if isinstance(t, (pl.Enum, pl.Categorical))])


def _need(frame: Any, cols: list[str], what: str) -> None:
    if not isinstance(frame, pl.DataFrame):
        raise InputError(f"`frame` must be a polars DataFrame (from toposcan.enumerate or evaluate), "
                         f"got {type(frame).__name__}", code="invalid_value")
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise InputError(f"{what} needs column `{missing[0]}`, which the frame lacks", code="invalid_value")
    if frame.height == 0:
        raise InputError(f"{what}: the frame has no rows to plot", code="invalid_value")


def _title(col: str) -> str:
    return TITLES.get(col, col)


def pareto_front(frame: pl.DataFrame, x: str = "mem_gb", y: str = "step_time_s") -> pl.DataFrame:
    """The rows no other row beats on both ``x`` (lower is better) and ``y`` (lower is better,
    higher for throughput and utilization columns), sorted by ``x``."""
    better = -1.0 if y in HIGHER_IS_BETTER else 1.0
    rows = frame.with_columns((pl.col(y) * better).alias("_y")).sort([x, "_y"])
    keep, best = [], float("inf")
    for i, v in enumerate(rows["_y"]):
        if v < best:
            keep.append(i)
            best = v
    return rows[keep].drop("_y")


def _capacity(frame: pl.DataFrame, gpu_memory_gib: float | None) -> float | None:
    if gpu_memory_gib is not None:
        return float(gpu_memory_gib)
    if "gpu" in frame.columns and frame["gpu"].n_unique() == 1:
        from toposcan import catalog

        return float(catalog.gpu_spec(frame["gpu"][0])["memory_gib"])
    return None


def pareto(frame: pl.DataFrame, x: str = "mem_gb", y: str = "step_time_s", gpu_memory_gib: float | None = None,
           highlight: dict[str, Any] | None = None) -> Any:
    """``y`` (step time, or ``tokens_per_s_per_gpu``) against ``x`` (peak memory per GPU): one
    point per row coloured by ``tp x pp``, the Pareto front as a step line, the GPU's memory as a
    vertical rule (``gpu_memory_gib``, or the catalog's for the frame's ``gpu``; none when ``x`` is
    not memory), and error bars on the front where the frame has ``<col>_lo``/``<col>_hi`` intervals.
    ``highlight`` (a row as a dict with ``x`` and ``y``, e.g. a launch file's configuration) is
    drawn as a labelled cross."""
    alt = _altair()
    _need(frame, [x, y], "pareto")
    layout = [c for c in LAYOUT if c in frame.columns]
    extra = [f"{c}_{s}" for c in (x, y) for s in ("lo", "hi") if f"{c}_{s}" in frame.columns]
    data = _plain(frame, [x, y, *layout, *extra])
    if "tp" in data.columns and "pp" in data.columns:
        data = data.with_columns(pl.format("tp{} x pp{}", "tp", "pp").alias("tp x pp"))
    tooltip = [alt.Tooltip(c, title=c) for c in layout] + [alt.Tooltip(x, format=".3~g"), alt.Tooltip(y, format=".3~g")]
    xenc = alt.X(x, type="quantitative", title=_title(x), scale=alt.Scale(zero=False))
    yenc = alt.Y(y, type="quantitative", title=_title(y), scale=alt.Scale(zero=False))
    color = alt.value("#4c78a8")
    if "tp x pp" in data.columns:
        order = data.select("tp", "pp", "tp x pp").unique().sort(["tp", "pp"])["tp x pp"].to_list()
        color = alt.Color("tp x pp:N", title="tp x pp", sort=order, scale=alt.Scale(scheme="tableau20"))
    front = pareto_front(data, x, y)
    layers = []
    # Intervals on the front only: on every point they hide the cloud.
    for c, ch in ((y, "Y"), (x, "X")):
        if f"{c}_lo" in data.columns and f"{c}_hi" in data.columns:
            lo, hi = (alt.X, alt.X2) if ch == "X" else (alt.Y, alt.Y2)
            other = yenc if ch == "X" else xenc
            layers.append(alt.Chart(front).mark_rule(strokeWidth=1.5).encode(
                other, lo(f"{c}_lo", type="quantitative"), hi(f"{c}_hi"), color=color))
    layers.append(alt.Chart(data).mark_point(filled=True, size=60).encode(xenc, yenc, color=color, tooltip=tooltip))
    layers.append(alt.Chart(front).mark_line(interpolate="step-after", color="black", strokeDash=[4, 2]).encode(
        alt.X(x, type="quantitative"), alt.Y(y, type="quantitative")))
    if highlight is not None:
        if not isinstance(highlight, dict) or x not in highlight or y not in highlight:
            raise InputError(f"`highlight` must be a row with `{x}` and `{y}`", code="invalid_value")
        mark = pl.DataFrame({x: [float(highlight[x])], y: [float(highlight[y])],
                             "label": [str(highlight.get("label", "this configuration"))]})
        hl = alt.Chart(mark).encode(alt.X(x, type="quantitative"), alt.Y(y, type="quantitative"), tooltip=["label"])
        layers += [hl.mark_point(shape="cross", size=300, filled=True, color="black"),
                   hl.mark_text(align="left", dx=10, dy=-10, fontWeight="bold").encode(text="label")]
    cap = _capacity(frame, gpu_memory_gib) if x == "mem_gb" else None
    if cap is not None:
        rule = pl.DataFrame({"capacity_gib": [cap], "label": [f"GPU memory {cap:g} GiB"]})
        layers.append(alt.Chart(rule).mark_rule(color="firebrick", strokeWidth=2).encode(
            alt.X("capacity_gib", type="quantitative"), tooltip=["label"]))
    title = "Pareto front: " + _title(y) + " vs " + _title(x)
    if "model" in frame.columns and "gpu" in frame.columns and frame["model"].n_unique() == 1:
        title += f" ({frame['model'][0]} on {frame['gpus'][0] if 'gpus' in frame.columns else ''} {frame['gpu'][0]})"
    return alt.layer(*layers).properties(title=title, width=480, height=320)


def _rank_label(frame: pl.DataFrame) -> pl.Series:
    parts = [c for c in ("dp", "tp", "pp", "cp", "ep", "mbs") if c in frame.columns]
    labels = []
    for i, r in enumerate(frame.select(parts).iter_rows(named=True)):
        labels.append(f"#{i + 1} " + " ".join(f"{k}{v}" for k, v in r.items() if k in ("dp", "tp", "pp", "mbs") or v != 1))
    return pl.Series("row", labels)


def _stacked(alt: Any, frame: pl.DataFrame, parts: tuple[tuple[str, str], ...], unit: str, title: str,
             order: list[str]) -> Any:
    cols = [(label, c) for label, c in parts if c in frame.columns]
    if not cols:
        return None
    long = pl.concat([frame.select(pl.col("row"), pl.lit(label).alias("component"), pl.col(c).cast(pl.Float64).alias(unit))
                      for label, c in cols])
    long = long.filter(pl.col(unit) > 0)
    names = [label for label, _ in cols]
    return alt.Chart(long).mark_bar().encode(
        alt.Y("row:N", sort=order, title=None),
        alt.X(f"sum({unit}):Q", title=title, stack="zero"),
        alt.Color("component:N", sort=names, title=title.split(" (")[0]),
        alt.Order("component_order:Q"),
        tooltip=["row", "component", alt.Tooltip(f"{unit}:Q", format=".3~g")],
    ).transform_calculate(component_order=f"indexof({names!r}, datum.component)").properties(width=360, height=max(
        80, 22 * frame.height))


def breakdown(frame: pl.DataFrame, top: int = 10) -> Any:
    """Stacked step time by component (compute, recompute, TP/CP/EP, PP, ZeRO-3 and exposed DP
    communication, bubble, optimizer, overheads) beside stacked peak memory by component (weights,
    gradients, optimizer, activations, logits, buffers, overhead) for the first ``top`` rows.
    Components with no column in the frame, or zero in every row, are left out."""
    alt = _altair()
    _need(frame, ["step_time_s"], "breakdown")
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise InputError(f"`top` must be a positive integer, got `{top}`", code="invalid_value")
    rows = frame.head(top)
    rows = _plain(rows, [c for _, c in TIME_PARTS + MEMORY_PARTS]).with_columns(_rank_label(rows))
    order = rows["row"].to_list()
    charts = [c for c in (_stacked(alt, rows, TIME_PARTS, "seconds", "step time (s)", order),
                          _stacked(alt, rows, MEMORY_PARTS, "GiB", "peak memory per GPU (GiB)", order)) if c is not None]
    if not charts:
        raise InputError("breakdown needs the component columns (compute_s ..., weights_gb ...), which the frame lacks",
                         code="invalid_value")
    return alt.hconcat(*charts).resolve_scale(color="independent").properties(
        title=f"Where the step and the memory go (top {rows.height})")


def _series_frame(frames: Any) -> pl.DataFrame:
    if isinstance(frames, pl.DataFrame):
        if "series" not in frames.columns:
            raise InputError("scaling needs a dict {name: frame} or a frame with a `series` column", code="invalid_value")
        return frames
    if isinstance(frames, dict) and frames and all(isinstance(v, pl.DataFrame) for v in frames.values()):
        cols = ["gpus", "tokens_per_s_per_gpu", "mfu"]
        for name, f in frames.items():
            _need(f, cols, f"scaling series `{name}`")
        return pl.concat([_plain(f, cols).with_columns(pl.lit(str(name)).alias("series")) for name, f in frames.items()],
                         how="diagonal_relaxed")
    raise InputError("scaling needs a dict {name: frame} or a frame with a `series` column, "
                     f"got {type(frames).__name__}", code="invalid_value")


def scaling(frames: dict[str, pl.DataFrame] | pl.DataFrame) -> Any:
    """Tokens/s (all GPUs) and MFU against GPU count, one line per series: ``frames`` maps a name
    (a framework, a GPU) to a frame, or is one frame with a ``series`` column. Where a series has
    several rows at one GPU count (an enumeration), its fastest row (most tokens/s) is drawn."""
    alt = _altair()
    df = _series_frame(frames)
    _need(df, ["gpus", "tokens_per_s_per_gpu", "mfu", "series"], "scaling")
    best = (df.with_columns((pl.col("tokens_per_s_per_gpu") * pl.col("gpus")).alias("tokens_per_s"))
            .sort("tokens_per_s", descending=True).group_by(["series", "gpus"], maintain_order=True).first()
            .sort(["series", "gpus"]).select("series", "gpus", "tokens_per_s", "mfu"))
    base = alt.Chart(best).encode(
        alt.X("gpus:Q", title=_title("gpus"), scale=alt.Scale(type="log", base=2),
              axis=alt.Axis(values=sorted(best["gpus"].unique().to_list()), format="d")),
        alt.Color("series:N", title="series"),
        tooltip=["series", "gpus", alt.Tooltip("tokens_per_s:Q", format=".4~s"), alt.Tooltip("mfu:Q", format=".1%")])
    tps = base.mark_line(point=True).encode(alt.Y("tokens_per_s:Q", title=_title("tokens_per_s"),
                                                  scale=alt.Scale(type="log")))
    mfu = base.mark_line(point=True).encode(alt.Y("mfu:Q", title="MFU", axis=alt.Axis(format="%")))
    return alt.hconcat(tps.properties(width=320, height=260), mfu.properties(width=320, height=260)).properties(
        title="Scaling: throughput and MFU against GPU count")


FORMATS = (".html", ".png", ".svg")


def _extension(path: str | Path) -> str:
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise InputError(f"`--plot` file must end in one of {', '.join(FORMATS)}, got `{Path(path).name}`",
                         code="invalid_value")
    return ext


def require(path: str | Path | None = None) -> None:
    """Fails early (before a long enumeration) when plotting cannot work: altair or vl-convert
    missing (code ``missing_dependency``, the CLI exits 2) or ``path`` has an unknown extension."""
    if path is not None:
        _extension(path)
    _altair()
    _vl_convert()


def save(chart: Any, path: str | Path) -> Path:
    """Writes ``chart`` to ``path`` by its extension: ``.html`` (self-contained, opens offline),
    ``.png`` (2x scale) or ``.svg``. Returns the path."""
    p = Path(path)
    ext = _extension(p)
    if not hasattr(chart, "to_dict"):
        raise InputError(f"`chart` must be an Altair chart, got {type(chart).__name__}", code="invalid_value")
    vlc = _vl_convert()
    spec = chart.to_dict()
    try:
        if ext == ".png":
            p.write_bytes(vlc.vegalite_to_png(spec, scale=2))
        elif ext == ".svg":
            p.write_text(vlc.vegalite_to_svg(spec), encoding="utf-8")
        else:
            p.write_text(vlc.vegalite_to_html(spec, bundle=True), encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot write `{p}`: {e.strerror or e}", code="io_error") from None
    return p
