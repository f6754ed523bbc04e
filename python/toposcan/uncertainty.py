"""80% intervals on predicted step time and peak memory, from how far ``topo validate`` is off.

For every measured run a profile can be checked against (the step-time and memory tables of
:func:`toposcan.validate.validate`), the residual is ``r = ln(measured / predicted)``; a throughput
table (tokens/s/GPU) counts as step time, ``ln(predicted_tps / measured_tps)``. Residuals are pooled
per *cell*: the profile's ``framework`` (``data/profiles.toml``) and the GPU's family (ampere, hopper,
blackwell, other). A cell's interval is ``[q10, q90]`` of its residuals; a prediction ``p`` gets
``p * exp(q10) .. p * exp(q90)``.

What the residuals are: those of the shipped profiles (plain residuals, not refitted per held-out
group; a refit per group costs a profile fit each). Rows a profile was fitted to are therefore
in-sample, and rows measured after their predictions (H200 held-out sets, the whole H100 run) are
out-of-sample. Leave-one-group-out applies to the *interval*: :func:`coverage` drops one group of
runs, refits the interval on the rest of its cell and counts how many of the dropped runs fall inside.

Small cells are widened (:func:`interval`): below :data:`MIN_RUNS` runs the cell is not trusted
and the wide :data:`DEFAULT` (-25%/+25%) is used; below 10 runs the half-widths grow by Student's
``t(0.90, n-1) / z(0.90) * sqrt(1 + 1/n)``, the factor a normal prediction interval from ``n``
samples carries over a known spread; no half-width is narrower than :data:`FLOOR` (run-to-run
noise, and in-sample residuals understate the error on a new run).

The fitted table lives in ``data/intervals.toml``, written by ``python -m toposcan.uncertainty``
(:func:`fit_intervals` + :func:`intervals_toml`); a test recomputes it and fails when the profiles or
the data moved without it.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import polars as pl

from toposcan.errors import InputError

QUANTITIES = ("step_time_s", "mem_gb")

#: An interval for a cell with no runs (or fewer than MIN_RUNS): -25% .. +25%.
DEFAULT = (math.log(0.75), math.log(1.25))
MIN_RUNS = 3
#: The narrowest half-width: 2% either side.
FLOOR = math.log(1.02)
#: One-sided 90% quantiles of Student's t for 1..9 degrees of freedom, and the normal's.
T90 = (3.078, 1.886, 1.638, 1.533, 1.476, 1.440, 1.415, 1.397, 1.383)
Z90 = 1.2816

#: The validate tables whose residuals are used: table -> (quantity, profile, catalog GPU). Not used:
#: FLOPs/MFU accounting (exact formulas), energy, GEMM micro-benchmarks, ``seed001-all`` (a superset
#: with assumed shapes) and the ``*-transfer`` tables (a profile on another stack's runs on purpose).
SOURCES: dict[str, tuple[str, str, str]] = {
    "seed001": ("step_time_s", "megatron-deepspeed-a100", "a100-80"),
    "seed001-mem": ("mem_gb", "megatron-deepspeed-a100", "a100-80"),
    "seed002-h100_bf16": ("step_time_s", "llm-foundry-h100", "h100-80"),
    "seed002-h100_fp8": ("step_time_s", "llm-foundry-h100-fp8", "h100-80"),
    "seed002-a100_80_bf16": ("step_time_s", "llm-foundry-a100", "a100-80"),
    "seed002-a100_40_bf16": ("step_time_s", "llm-foundry-a100-40", "a100-40"),
    "narayanan2021": ("step_time_s", "megatron-lm-a100", "a100-80"),
    "h200-steps": ("step_time_s", "pytorch-h200", "h200"),
    "h200-mem": ("mem_gb", "pytorch-h200", "h200"),
    "h100-steps": ("step_time_s", "pytorch-h200", "h100-80"),
    "h100-mem": ("mem_gb", "pytorch-h200", "h100-80"),
    # NVIDIA's Megatron-Bridge runs span five GPUs: "*" takes each run's GPU from its group
    # ("<gpu> <family>"), so Hopper and Blackwell get their own megatron-core cells.
    "megatron-bridge": ("step_time_s", "megatron-core", "*"),
    "megatron-bridge-new": ("step_time_s", "megatron-core", "*"),
}

FAMILIES = ("ampere", "hopper", "blackwell", "other")
_FAMILY_PATTERNS = (("ampere", r"^(a100|a800|a10|a30|a40|rtx-a\d)"), ("hopper", r"^(h100|h800|h200|h20|gh200)"),
                    ("blackwell", r"^(b100|b200|b300|gb200|gb300|rtx-pro-6000)"))


def gpu_family(gpu: str) -> str:
    """The architecture family of a catalog GPU name: ampere, hopper, blackwell or other."""
    g = str(gpu).lower()
    for fam, pat in _FAMILY_PATTERNS:
        if re.match(pat, g):
            return fam
    return "other"


def framework_of(profile: str) -> str:
    """The ``framework`` field of a shipped profile."""
    from toposcan import catalog

    return str(catalog.profile_spec(profile)["framework"])


def _group_key(table: str, group: str, config: str) -> str:
    """The unit left out together. A seeds/002 table or Megatron-LM's Table 1 is one validate
    group; there a group is one model (``mpt-7b``, ``18.4B``), the closest thing to a new run."""
    if table.startswith("seed002-") or table == "narayanan2021":
        return f"{table}:{config.split()[0]}"
    return f"{table}:{group}"


def residuals() -> pl.DataFrame:
    """One row per measured run of :data:`SOURCES`: table, group, framework, family, quantity and
    the residual ``ln(measured / predicted)`` (step time: for throughput rows, the inverse)."""
    from toposcan.validate import validate

    df, _ = validate()
    rows = []
    for r in df.filter(pl.col("table").is_in(list(SOURCES))).iter_rows(named=True):
        meas, pred = r["measured"], r["predicted"]
        if meas is None or pred is None or not (meas > 0 and pred > 0):
            continue  # OOM rows: no measured memory
        quantity, profile, gpu = SOURCES[r["table"]]
        if gpu == "*":
            gpu = str(r["group"]).split()[0]
        ratio = pred / meas if r["unit"] == "tok/s/GPU" else meas / pred
        rows.append({"table": r["table"], "group": _group_key(r["table"], r["group"], r["config"]),
                     "framework": framework_of(profile), "family": gpu_family(gpu), "quantity": quantity,
                     "residual": math.log(ratio)})
    return pl.DataFrame(rows, schema={"table": pl.String, "group": pl.String, "framework": pl.String,
                                      "family": pl.String, "quantity": pl.String, "residual": pl.Float64})


def interval(res: list[float] | np.ndarray) -> tuple[float, float]:
    """The 80% interval ``(lo, hi)`` in log-ratio units from a cell's residuals: the 10th and 90th
    percentiles, widened for fewer than 10 runs, at least :data:`FLOOR` either side of the median;
    :data:`DEFAULT` for fewer than :data:`MIN_RUNS`."""
    x = np.asarray(res, dtype=float)
    n = x.size
    if n < MIN_RUNS:
        return DEFAULT
    mid = float(np.median(x))
    lo, hi = (float(v) for v in np.percentile(x, [10, 90]))
    k = T90[n - 2] / Z90 * math.sqrt(1 + 1 / n) if n < 10 else 1.0
    lo = mid - max(FLOOR, k * (mid - lo))
    hi = mid + max(FLOOR, k * (hi - mid))
    return lo, hi


def coverage(res: pl.DataFrame | None = None) -> pl.DataFrame:
    """Leave-one-group-out coverage: each group's runs against the interval fitted on the rest of
    its cell. One row per source table and quantity (``inside``, ``runs``, ``coverage``) and an
    ``all`` row."""
    res = residuals() if res is None else res
    inside = []
    for (fw, fam, q), cell in res.group_by(["framework", "family", "quantity"], maintain_order=True):
        for (g,), held in cell.group_by(["group"], maintain_order=True):
            lo, hi = interval(cell.filter(pl.col("group") != g)["residual"].to_numpy())
            r = held["residual"].to_numpy()
            inside += [{"table": t, "quantity": q, "inside": bool(lo <= v <= hi)} for t, v in zip(held["table"], r)]
    df = pl.DataFrame(inside)
    per = (df.group_by(["table", "quantity"], maintain_order=True)
           .agg(pl.col("inside").sum().alias("inside"), pl.len().alias("runs")))
    total = pl.DataFrame({"table": ["all"], "quantity": ["all"], "inside": [int(df["inside"].sum())],
                          "runs": [df.height]}, schema=per.schema)
    return pl.concat([per, total]).with_columns((pl.col("inside") / pl.col("runs")).alias("coverage"))


@dataclass(frozen=True)
class Cell:
    """A fitted interval: log-ratio bounds for one framework, GPU family and quantity."""

    framework: str
    family: str
    quantity: str
    lo: float
    hi: float
    runs: int
    groups: int
    sources: tuple[str, ...]


def fit_intervals(res: pl.DataFrame | None = None) -> list[Cell]:
    """The interval of every (framework, family, quantity) cell with runs, from :func:`residuals`."""
    res = residuals() if res is None else res
    cells = []
    for (fw, fam, q), cell in res.group_by(["framework", "family", "quantity"], maintain_order=True):
        lo, hi = interval(cell["residual"].to_numpy())
        cells.append(Cell(fw, fam, q, lo, hi, cell.height, cell["group"].n_unique(),
                          tuple(sorted(cell["table"].unique()))))
    return sorted(cells, key=lambda c: (c.framework, c.family, c.quantity))


def intervals_toml(cells: list[Cell], cov: pl.DataFrame | None = None) -> str:
    """``data/intervals.toml`` for ``cells`` (and the coverage table, as comments)."""
    lines = ["# 80% intervals of predictions, per framework x GPU family x quantity. GENERATED by",
             "# `python -m toposcan.uncertainty` from `topo validate`'s residuals (toposcan/uncertainty.py says",
             "# how); tests/test_uncertainty.py recomputes it and fails on drift. lo/hi are ln(measured/predicted):",
             "# a prediction p has the interval p*exp(lo) .. p*exp(hi).",
             ""]
    if cov is not None:
        lines.append("# leave-one-group-out coverage of the 80% interval (runs inside / runs):")
        for r in cov.iter_rows(named=True):
            lines.append(f"#   {r['table']:<22} {r['quantity']:<12} {r['inside']:>4} / {r['runs']:<4} {r['coverage']:.3f}")
        lines.append("")
    lines += [f"default = {{ lo = {DEFAULT[0]:.6f}, hi = {DEFAULT[1]:.6f} }}  # no runs: -25% .. +25%", ""]
    for c in cells:
        lines += ["[[cell]]", f'framework = "{c.framework}"', f'family = "{c.family}"', f'quantity = "{c.quantity}"',
                  f"lo = {c.lo:.6f}", f"hi = {c.hi:.6f}", f"runs = {c.runs}", f"groups = {c.groups}",
                  "sources = [" + ", ".join(f'"{s}"' for s in c.sources) + "]", ""]
    return "\n".join(lines)


def stored() -> dict[str, Any]:
    """``data/intervals.toml`` as parsed TOML (``default`` and the ``cell`` list)."""
    text = resources.files("toposcan").joinpath("data", "intervals.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


@cache
def _table() -> dict[tuple[str, str, str], tuple[float, float]]:
    return {(c["framework"], c["family"], c["quantity"]): (float(c["lo"]), float(c["hi"])) for c in stored()["cell"]}


def bounds(framework: str, gpu: str, quantity: str) -> tuple[float, float]:
    """Log-ratio bounds for a prediction of ``quantity`` by ``framework`` on ``gpu`` (the stored
    cell, or :data:`DEFAULT` where no runs exist)."""
    if quantity not in QUANTITIES:
        raise InputError(f"`quantity` must be one of {{{', '.join(QUANTITIES)}}}, got `{quantity}`", code="invalid_value")
    return _table().get((framework, gpu_family(gpu), quantity), DEFAULT)


def add_intervals(frame: pl.DataFrame, framework: str, gpu: str) -> pl.DataFrame:
    """``frame`` with ``step_time_s_lo/hi`` and ``mem_gb_lo/hi``: the 80% interval of each
    prediction for ``framework`` (a profile's ``framework`` field) on ``gpu``. A column the frame
    lacks is skipped."""
    cols = []
    for q in QUANTITIES:
        if q in frame.columns:
            lo, hi = bounds(framework, gpu, q)
            cols += [(pl.col(q) * math.exp(lo)).alias(f"{q}_lo"), (pl.col(q) * math.exp(hi)).alias(f"{q}_hi")]
    return frame.with_columns(cols)


def plus_minus(value: float, lo: float, hi: float) -> str:
    """``+-x%`` for display: the larger relative distance from ``value`` to either bound."""
    if not value or not all(map(math.isfinite, (value, lo, hi))):
        return ""
    return f"+-{max(hi / value - 1, 1 - lo / value) * 100:.0f}%"


def describe(framework: str, gpu: str) -> str:
    """One line for a CLI header: the 80% interval of step time and memory as ``+-x%`` and how
    many measured runs it rests on, e.g. ``80% interval (megatron-deepspeed on ampere): step time
    +-5% (52 runs), memory +-8% (80 runs)``."""
    fam = gpu_family(gpu)
    cells = {c["quantity"]: c for c in stored()["cell"] if (c["framework"], c["family"]) == (framework, fam)}
    parts = []
    for q, name in (("step_time_s", "step time"), ("mem_gb", "memory")):
        lo, hi = bounds(framework, gpu, q)
        runs = f"{cells[q]['runs']} runs" if q in cells else "no runs: the default"
        parts.append(f"{name} {plus_minus(1.0, math.exp(lo), math.exp(hi))} ({runs})")
    return f"80% interval ({framework} on {fam}): {', '.join(parts)}"


VERDICTS = ("fits", "at risk", "does not fit")


def memory_verdict(mem_lo: float, mem_hi: float, capacity: float) -> str:
    """``fits`` when the whole interval is within ``capacity``, ``does not fit`` when all of it is
    above, ``at risk`` when the interval crosses it (same units, e.g. GiB)."""
    if mem_hi <= capacity:
        return "fits"
    if mem_lo > capacity:
        return "does not fit"
    return "at risk"


def memory_check(mem_gb: float, framework: str, gpu: str, capacity: float) -> tuple[str, float, float]:
    """The verdict of :func:`memory_verdict` for a predicted peak ``mem_gb`` on ``gpu`` by
    ``framework``, with the interval it used: ``(verdict, mem_lo, mem_hi)``."""
    lo, hi = bounds(framework, gpu, "mem_gb")
    mem_lo, mem_hi = mem_gb * math.exp(lo), mem_gb * math.exp(hi)
    return memory_verdict(mem_lo, mem_hi, capacity), mem_lo, mem_hi


def main() -> None:
    """Rewrites ``data/intervals.toml`` in the source tree and prints the coverage."""
    from pathlib import Path

    res = residuals()
    cov = coverage(res)
    path = Path(__file__).parent / "data" / "intervals.toml"
    path.write_text(intervals_toml(fit_intervals(res), cov) + "\n", encoding="utf-8")
    print(cov)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
