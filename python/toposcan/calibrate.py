"""Calibration: fit a profile's constants to your own measured runs.

Other estimators answer "how do I calibrate it?" with "profile your hardware and derive the tables
yourself". Here a handful of measured runs is enough. Each run is one row: the configuration, in the
keyword names of :func:`toposcan.evaluate` (``model`` or its fields, ``gpu``, ``nodes``, ``tp``,
``pp``, ``mbs``, ``gbs``, ``zero_stage``, ``recompute``, ...), and what was measured: one of
``step_time_s``, ``tokens_per_s_per_gpu`` or ``tflops_per_gpu`` (Megatron-DeepSpeed convention),
and optionally ``mem_gb`` (peak memory, GiB, as the allocator reports it).

The time constants (GEMM, attention and memory-bound efficiency, link efficiencies, per-layer and
per-step overheads, data-parallel and ZeRO-3 overlap) are fitted to the objective the shipped profiles
were fitted with (``rust/core/src/fit.rs``: least squares on log step time, bounded, with a ridge term
pulling every constant toward the *base* profile), minimized in Python by :mod:`toposcan.pointfit`: a
few tens of evaluations per run, so the cost grows linearly with the runs and Ctrl-C stops it. The fixed
memory overhead (and, with three or more memory values, the allocator's fragmentation of the
activations) is fitted by least squares on ``mem_gb``.

Only the constants the runs can identify are fitted. Before fitting, the sensitivity of every run's
log step time to each free constant (in fractions of its allowed range, by finite differences at the
base profile) is computed; a constant whose effect is too small (or, by pivoted Gram-Schmidt, nearly a
combination of the effects of constants already chosen) to be pinned down against 2% run-to-run noise
stays at the base profile's value, and at most ``runs - 1`` constants are fitted so that the residual
variance, hence a standard error per fitted constant, exists. ``warnings`` give the numbers (rank of
the design, condition number, which constants were held and why, which hit a bound).

The result reports the fit error, the leave-one-out error (each run predicted by a fit without it:
what to expect on a new run; by default from the fit's leverages, ``loo="exact"`` refits once per
run), and every run's prediction before and after; ``save`` writes a profile file that ``profile=`` /
``--profile`` accept everywhere, with the standard errors in its ``fit`` table.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from toposcan import _core, api, resolve, spec
from toposcan.errors import InputError, ToposcanError

#: What a run may report as measured, in order of preference when several are given.
MEASURES = ("step_time_s", "tokens_per_s_per_gpu", "tflops_per_gpu")

#: The fitted time constants, in the order of the core's ``Profile::time_vector``.
TIME_KEYS = ("gemm_efficiency", "memory_efficiency", "intra_link_efficiency", "inter_link_efficiency",
             "layer_overhead_s", "dp_overlap", "step_overhead_s", "attention_efficiency", "fsdp_overlap")

#: Configuration columns: the keywords of :func:`toposcan.evaluate` that describe a run.
CONFIG_KEYS = ("model", "gpu", "nodes", "gpus_per_node", "intra_node_gbs", "inter_node_gbs", "layers", "hidden", "heads", "kv_heads", "ffn_hidden",
               "activation", "vocab", "seq_len", "tied_embeddings", "experts", "topk", "position", "norm", "bias",
               "dp", "tp", "pp", "vpp", "cp", "ep", "mbs", "gbs", "zero_stage", "recompute", "sequence_parallel",
               "precision", "flash_attention", "uneven_stages", "mtp_layers", *resolve.KNOBS)

GIB = 1024**3


def core_inputs(kw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The core's (model, cluster, strategy, profile) dicts for one run's keywords, validated."""
    kw = dict(kw)
    fields = {k: kw.pop(k) for k in list(kw) if k in spec.MODEL_FIELDS}
    r = api._resolve(kw.pop("model", None), kw.pop("gpu", "a100-80"), kw.pop("nodes", 1),
                     kw.pop("gpus_per_node", None), kw.pop("profile", None), kw.pop("framework", None),
                     kw.get("precision"), fields, (kw.pop("intra_node_gbs", None), kw.pop("inter_node_gbs", None)))
    strat = resolve.strategy(r, kw)
    model_d, cluster_d, prof_d = r.model, r.cluster, r.profile
    return model_d, cluster_d, strat, prof_d


def fit_time(runs: list[tuple[dict, dict, dict]], steps: list[float], free: list[bool],
             start: dict[str, Any]) -> dict[str, Any]:
    """Fits the time constants of ``start`` (which is also the ridge anchor) so that the runs'
    predicted step times match ``steps``. Returns the constants and the fit and leave-one-out errors."""
    opts = spec.options_dict(0.0, 1e12, False, False)
    prof, mape, max_err, loo = api._core_call(_core.fit_profile, runs, steps, free, start, opts)
    return {"profile": prof, "mape": mape, "max_error": max_err, "loo_mape": loo}


def fit_memory_terms(base_gib: list[float], act_gib: list[float], measured_gib: list[float],
                     fragmentation: float | None = None) -> tuple[float, float]:
    """Least squares for ``measured = base + overhead + fragmentation * activations`` (GiB), both
    terms non-negative; with ``fragmentation`` given, only the overhead is fitted."""
    y = np.array(measured_gib) - np.array(base_gib)
    act = np.array(act_gib)
    if fragmentation is not None:
        return max(0.0, float(np.mean(y - fragmentation * act))), fragmentation
    a = np.column_stack([np.ones_like(act), act])
    (overhead, frag), *_ = np.linalg.lstsq(a, y, rcond=None)
    if frag < 0:  # fragmentation cannot free memory
        return max(0.0, float(np.mean(y))), 0.0
    if overhead < 0:
        return 0.0, float(max(0.0, (act @ y) / (act @ act)))
    return float(overhead), float(frag)


#: Run-to-run noise of a measured step time (log units) that identification is judged against: the
#: best catalog fits reach about 3% MAPE, repeated runs of one job differ by 1-2%.
NOISE = 0.02
#: A constant is fitted only if that noise would leave its standard error below this fraction of its
#: allowed range; otherwise the runs cannot tell where it lies and it stays at the base's value.
MAX_RELATIVE_SE = 0.25
#: Hence the smallest sensitivity (L2 norm over the runs of d ln(step) / d(fraction of range)) fitted.
MIN_SENSITIVITY = NOISE / MAX_RELATIVE_SE
#: Finite-difference step, as a fraction of a constant's allowed range.
FD_STEP = 0.02


def _time_bounds() -> dict[str, tuple[float, float]]:
    from toposcan import pointfit  # pointfit imports this module: import it when used

    return dict(zip(TIME_KEYS, pointfit.TIME_BOUNDS))


def sensitivity(runs: list[tuple[dict, dict, dict]], prof: dict[str, Any], keys: list[str],
                at: np.ndarray | None = None) -> np.ndarray:
    """d ln(step time) of each run / d(constant as a fraction of its allowed range), one column per
    key, by one-sided differences at ``prof`` (``at``: the runs' step times there, if known).
    Fractions of the range rather than logs: several constants (overheads) start at 0."""
    from toposcan import pointfit

    bounds = _time_bounds()
    base = pointfit.step_times(runs, prof) if at is None else at
    out = np.zeros((len(runs), len(keys)))
    for j, k in enumerate(keys):
        lo, hi = bounds[k]
        h = FD_STEP * (hi - lo)
        h = h if prof[k] + h <= hi else -h  # step inward at the upper bound
        moved = pointfit.step_times(runs, {**prof, k: prof[k] + h})
        ok = np.isfinite(moved) & np.isfinite(base) & (moved > 0) & (base > 0)
        out[:, j] = np.where(ok, np.log(np.where(ok, moved, 1.0) / np.where(ok, base, 1.0)), 0.0) / FD_STEP * np.sign(h)
    return out


@dataclass
class Identification:
    """Which free constants a set of runs can pin down (see :func:`identify`)."""

    fitted: list[str]
    held: dict[str, str]
    rank: int
    condition_number: float  # of the whole design (all free constants); inf when rank-deficient
    fitted_condition_number: float  # of the fitted constants' columns


def identify(sens: np.ndarray, keys: list[str], max_fitted: int) -> Identification:
    """Chooses the constants to fit from the sensitivity matrix (runs x ``keys``): greedily the one
    whose effect is least explained by those already chosen (pivoted Gram-Schmidt), while that
    unexplained part is at least :data:`MIN_SENSITIVITY`, at most ``max_fitted`` of them. The others
    are held, each with the reason."""
    sv = np.linalg.svd(sens, compute_uv=False) if sens.size else np.zeros(0)
    rank = int(np.sum(sv >= MIN_SENSITIVITY))
    cond = _condition(sv)
    resid = sens.copy()
    chosen: list[int] = []
    held: dict[str, str] = {}
    remaining = list(range(len(keys)))
    for j in remaining:  # no run moves: nothing to learn, whatever else is fitted
        if np.linalg.norm(sens[:, j]) < MIN_SENSITIVITY:
            held[keys[j]] = (f"insensitive: over its whole allowed range it moves no run's step time by more than "
                             f"{100 * float(np.max(np.abs(sens[:, j]), initial=0.0)):.2g}%")
    remaining = [j for j in remaining if keys[j] not in held]
    while remaining:
        norms = {j: float(np.linalg.norm(resid[:, j])) for j in remaining}
        best = max(remaining, key=lambda j: norms[j])
        if norms[best] < MIN_SENSITIVITY or len(chosen) >= max_fitted:
            break
        chosen.append(best)
        remaining.remove(best)
        q = resid[:, best] / norms[best]
        for j in remaining:
            resid[:, j] -= q * (q @ resid[:, j])
    for j in remaining:
        if len(chosen) >= max_fitted and np.linalg.norm(resid[:, j]) >= MIN_SENSITIVITY:
            held[keys[j]] = (f"too few runs: {sens.shape[0]} run(s) fit at most {max_fitted} constant(s) "
                             "with a residual left to estimate the error")
            continue
        coef, *_ = np.linalg.lstsq(sens[:, chosen], sens[:, j], rcond=None) if chosen else (np.zeros(0),)
        mix = [keys[chosen[i]] for i in np.argsort(-np.abs(coef))[:2]] if chosen else []
        left = 100 * float(np.linalg.norm(resid[:, j]) / max(np.linalg.norm(sens[:, j]), 1e-300))
        held[keys[j]] = (f"confounded with {' and '.join(mix)}: {left:.2g}% of its effect on these runs is not "
                         "theirs, too little to fit it apart")
    sub = np.linalg.svd(sens[:, chosen], compute_uv=False) if chosen else np.zeros(0)
    sub_cond = _condition(sub) if chosen else 1.0
    return Identification([keys[j] for j in sorted(chosen)], held, rank, cond, sub_cond)


def _condition(sv: np.ndarray) -> float:
    """Largest over smallest singular value; inf where the smallest is rounding noise (exact collinearity)."""
    return float(sv[0] / sv[-1]) if sv.size and sv[-1] > 1e-12 * sv[0] else math.inf


def _uncertainty(sens: np.ndarray, log_err: np.ndarray, keys: list[str]) -> tuple[dict[str, float | None], np.ndarray]:
    """Standard error of each fitted constant (in its own units) from the Jacobian at the fit and the
    residual variance (``None`` with no residual degree of freedom), and each run's leverage."""
    from toposcan import pointfit

    bounds = _time_bounds()
    n, p = sens.shape
    if p == 0:
        return {}, np.zeros(n)
    inv = np.linalg.inv(sens.T @ sens + pointfit.RIDGE * np.eye(p))
    lev = np.einsum("ij,jk,ik->i", sens, inv, sens)
    if n <= p:
        return {k: None for k in keys}, lev
    var = float(log_err @ log_err) / (n - p)
    return {k: float(math.sqrt(var * inv[j, j]) * (bounds[k][1] - bounds[k][0])) for j, k in enumerate(keys)}, lev


@dataclass
class Calibration:
    """A profile fitted to measured runs. ``save(path)`` writes it for ``profile=path``."""

    name: str
    base: str
    constants: dict[str, float]
    base_constants: dict[str, float]
    mape: float
    max_error: float
    loo_mape: float
    base_mape: float
    runs: pl.DataFrame
    source: str
    memory_mape: float | None = None
    base_memory_mape: float | None = None
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Link overrides (intra_node_gbs, inter_node_gbs) the runs were measured with, if all share them.
    links: dict[str, float] = field(default_factory=dict)
    #: Standard error of each fitted constant, in its own units (None: no residual degree of freedom).
    std_errors: dict[str, float | None] = field(default_factory=dict)
    #: The constants fitted; those in ``held`` stayed at the base's value, with the reason.
    fitted: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    #: Numerical rank and condition number of the sensitivity of the runs to the free time constants.
    rank: int = 0
    condition_number: float = math.inf
    #: Fitted constants that ended on a bound of their allowed range.
    at_bound: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: How ``loo_mape`` was computed: "approx" (leverages) or "exact" (a refit per run).
    loo: str = "approx"

    def to_toml(self) -> str:
        """The profile as a TOML table over its base profile."""
        today = datetime.date.today().isoformat()
        lines = [f"# toposcan profile calibrated on {self.runs.height} measured run(s), {today}.",
                 f"# Use it with: topo enumerate --profile <this file> (or profile=\"<this file>\" in Python).",
                 f'["{_toml_str(self.name)}"]',
                 f'base = "{_toml_str(self.base)}"',
                 f'description = "{_toml_str(self.base)} calibrated on {self.runs.height} run(s) from {_toml_str(self.source)}"',
                 f'source = "toposcan.calibrate, {today}"']
        if self.links:  # the runs' cluster links are not part of the profile: say which they were
            opts = ", ".join(f"{k} = {v:g}" for k, v in self.links.items())
            lines.insert(2, f"# The runs were measured with {opts}: give the same when using this profile.")
        for k, why in self.held.items():
            lines.append(f"# {k}: held at the base's value, {_toml_comment(why)}")
        for w in self.warnings[1 if self.held else 0:]:  # the first says what `held` lists above
            lines.append(f"# warning: {_toml_comment(w)}")
        for k, v in self.constants.items():
            se = self.std_errors.get(k)
            note = (f"  # +- {se:.3g} (standard error)" if se is not None else "  # held" if k in self.held
                    else "  # at its bound" if k in self.at_bound else "" if k in self.fitted else "  # not free")
            lines.append(f"{k} = {float(v)!r}{note}")  # full precision: a reload predicts exactly the same
        # The uncertainty rides in `fit`, a key every catalog profile has (a profile file may only use those).
        se = ", ".join(f"{k} = {v!r}" for k, v in self.std_errors.items() if v is not None)
        held = ", ".join(f'"{k}"' for k in self.held)
        lines.append(f"fit = {{ mape = {self.mape:.2f}, max_error = {self.max_error:.2f}, "
                     f"loo_mape = {self.loo_mape:.2f}, std_error = {{ {se} }}, held = [{held}] }}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain data (for JSON)."""
        return {"name": self.name, "base": self.base, "source": self.source, "constants": self.constants,
                "base_constants": self.base_constants, "mape": self.mape, "max_error": self.max_error,
                "loo_mape": self.loo_mape, "base_mape": self.base_mape, "memory_mape": self.memory_mape,
                "base_memory_mape": self.base_memory_mape, "ignored": self.ignored, "notes": self.notes,
                "links": self.links, "std_errors": self.std_errors, "fitted": self.fitted, "held": self.held,
                "rank": self.rank,
                "condition_number": self.condition_number if math.isfinite(self.condition_number) else None,
                "at_bound": self.at_bound, "warnings": self.warnings, "loo": self.loo, "runs": self.runs.to_dicts()}

    def save(self, path: str | Path) -> None:
        """Writes :meth:`to_toml` to ``path`` (which must end in ``.toml``, as ``profile=`` expects)."""
        if not str(path).endswith(".toml"):
            raise InputError(f"`output` must end in .toml (as --profile expects), got `{spec._show(str(path))}`",
                             code="invalid_value")
        try:
            Path(path).write_text(self.to_toml(), encoding="utf-8")
        except OSError as e:
            raise InputError(f"cannot write `{spec._show(str(path))}`: {e.strerror or e}", code="io_error") from None

    def _repr_markdown_(self) -> str:
        """A summary and the constants as Markdown (Jupyter shows it)."""
        head, *rest = str(self).splitlines()
        consts = "\n".join(f"| `{k}` | {self.base_constants[k]:.4g} | {v:.4g} |" for k, v in self.constants.items())
        return (f"**{head}**\n\n{rest[0]}\n\n| constant | base | fitted |\n|---|---:|---:|\n{consts}\n")

    def __str__(self) -> str:
        out = [f"profile `{self.name}`: `{self.base}` calibrated on {self.runs.height} run(s) from {self.source}",
               f"step time error: {self.base_mape:.1f}% with the base profile -> {self.mape:.1f}% fitted "
               f"(max {self.max_error:.1f}%), {self.loo_mape:.1f}% leave-one-out{' (approximate)' if self.loo == 'approx' else ''} "
               "(expect this on a new run)"]
        if self.memory_mape is not None:
            out.append(f"memory error: {self.base_memory_mape:.1f}% with the base profile -> {self.memory_mape:.1f}% fitted")
        for k, v in self.constants.items():
            b = self.base_constants[k]
            se = self.std_errors.get(k)
            tail = (f" +- {se:.2g}" if se is not None else "") + (
                "  (held)" if k in self.held else "  (at its bound)" if k in self.at_bound
                else "" if k in self.fitted else "  (not free)")
            out.append(f"  {k:<22} {b:>10.4g} -> {v:<10.4g}{tail}"
                       + ("" if math.isclose(b, v, rel_tol=1e-3, abs_tol=1e-12) else " *"))
        if self.ignored:
            out.append(f"ignored columns: {', '.join(self.ignored)}")
        out += [f"note: {n}" for n in self.notes]
        out += [f"warning: {w}" for w in self.warnings]
        return "\n".join(out)


def _toml_comment(text: str) -> str:
    """``text`` on one comment line (TOML comments end at a newline and refuse control characters)."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _toml_str(text: str) -> str:
    """``text`` as the inside of a TOML basic string: backslash, quote and control characters escaped."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _read(runs: Any) -> tuple[pl.DataFrame, str]:
    if isinstance(runs, pl.DataFrame):
        return runs, "a frame"
    if isinstance(runs, (list, tuple)) and all(isinstance(r, dict) for r in runs):
        nested = next(((i, k) for i, r in enumerate(runs) for k, v in r.items()
                       if k in _SCALAR_COLUMNS and isinstance(v, (list, tuple, dict, set))), None)
        if nested is not None:  # one value per cell; polars would fail on it with a type message
            raise InputError(f"run {nested[0]}: `{spec._show(nested[1])}` holds a "
                             f"{type(runs[nested[0]][nested[1]]).__name__}; give one number or name per run",
                             code="invalid_value")
        try:
            return pl.DataFrame(list(runs), infer_schema_length=None), "a list of runs"
        except Exception as e:  # noqa: BLE001 - polars raises several kinds on ragged input
            raise InputError(f"`runs`: the rows do not form a table ({spec._show(str(e))})", code="invalid_value") from None
    if isinstance(runs, (str, Path)):
        path = Path(runs)
        readers = {".csv": pl.read_csv, ".parquet": pl.read_parquet, ".json": pl.read_json}
        reader = readers.get(path.suffix.lower())
        if reader is None:
            raise InputError(f"`runs`: `{spec._show(str(runs))}` must end in .csv, .parquet or .json", code="invalid_value")
        try:
            return reader(path), path.name
        except FileNotFoundError:
            raise InputError(f"`runs`: no such file `{spec._show(str(runs))}`", code="io_error") from None
        except Exception as e:  # noqa: BLE001 - any reader error is a bad file
            raise InputError(f"`runs`: cannot read `{spec._show(str(runs))}` ({spec._show(str(e).splitlines()[0] if str(e) else type(e).__name__)})",
                             code="parse_error") from None
    raise InputError(f"`runs` must be a frame, a list of dicts or a .csv/.parquet/.json path, got "
                     f"{type(runs).__name__}", code="invalid_value")


def _measured_step(measure: str, value: Any, pred: dict[str, Any], i: int) -> float:
    v = spec.positive_float(f"runs[{i}].{measure}", value)
    if measure == "step_time_s":
        step = v
    elif measure == "tokens_per_s_per_gpu":
        step = pred["gbs"] * pred["seq_len"] / (v * pred["gpus"])
    else:
        step = pred["flops_per_iter_megatron"] / (v * 1e12 * pred["gpus"])
    # The hardware FLOPs the run must have done in that time, against the GPU's peak: above 100% no
    # kernel reaches, below 0.01% is a unit mistake (ms for s, tokens per step for tokens per second).
    hfu = pred.get("hfu", 0.0) * pred.get("step_time_s", 0.0) / step if _finite(pred.get("hfu")) and _finite(pred.get("step_time_s")) else math.nan
    if math.isfinite(hfu) and hfu > 0 and not MIN_HFU <= hfu <= 1.0:
        raise InputError(f"run {i}: `{measure}` {v:.4g} implies {100 * hfu:.3g}% of the GPU's peak; a measured run "
                         f"lies between {100 * MIN_HFU:g}% and 100%", code="invalid_value")
    return step


#: The lowest share of the GPU's peak a measured run is believed at (see :func:`_measured_step`).
MIN_HFU = 1e-4

#: Columns that must not hold lists, structs or objects (one value per run).
_SCALAR_COLUMNS = CONFIG_KEYS + MEASURES + ("mem_gb",)


def _check_columns(df: pl.DataFrame) -> None:
    """One value per cell, and a model per run: the common mistakes of a hand-made table, in one line."""
    for c in df.columns:
        if c in _SCALAR_COLUMNS and (df.schema[c].is_nested() or df.schema[c] == pl.Object):
            raise InputError(f"`runs` column `{c}` holds {df.schema[c]} values; give one number or name per run",
                             code="invalid_value")
    if "model" not in df.columns and not all(f in df.columns for f in ("layers", "hidden", "heads")):
        raise InputError("`runs` needs a `model` column (a catalog name, see `topo models`) or the model's "
                         "fields (layers, hidden, heads, ...)", code="missing_field")


def _check_value(i: int, key: str, v: Any) -> None:
    """NaN and infinity are never a measurement or a setting (an empty cell is how a value is left out)."""
    if isinstance(v, float) and not math.isfinite(v):
        raise InputError(f"run {i}: `{key}` is {v}; give a finite number, or leave the cell empty",
                         code="invalid_value")


def calibrate(runs: Any, *, base: str | None = None, name: str = "calibrated", free: Any = None,
              loo: str = "approx") -> Calibration:
    """Fits a profile to measured runs (a frame, a list of dicts, or a .csv/.parquet/.json path).

    ``base`` is the catalog profile to start from (default: the one for the first run's GPU);
    ``free`` the time constants the fit may move (default: all of :data:`TIME_KEYS`), of which only
    those the runs identify are fitted (see the module docstring). ``loo`` is ``"approx"`` (the
    leave-one-out error from the fit's leverages, no refit) or ``"exact"`` (one refit per run). Columns
    that are neither configuration keywords nor measurements are reported in ``ignored``.

    >>> runs = [dict(model="llama-2-7b", gpu="a100-80", nodes=1, tp=1, pp=1, mbs=4, gbs=256, zero_stage=3,
    ...              recompute="none", flash_attention=True, tokens_per_s_per_gpu=3100.0)]
    >>> cal = calibrate(runs, base="llm-foundry-a100")
    >>> cal.mape < 1.0
    True
    """
    from toposcan import pointfit

    if not (isinstance(name, str) and name.strip() and name.isprintable()):
        raise InputError(f"`name` must be a non-empty printable string, got {spec._show(name, quote=True)}",
                         code="invalid_value")
    if loo not in ("approx", "exact"):
        raise InputError(f"`loo` must be approx or exact, got {spec._show(loo, quote=True)}", code="invalid_value")
    df, source = _read(runs)
    dup = [c for c in df.columns if "_duplicated_" in c]
    if dup:
        raise InputError(f"`runs` has a column twice: {dup[0].split('_duplicated_')[0]}", code="invalid_value")
    if df.height == 0:
        raise InputError("`runs` is empty: give at least one measured run", code="invalid_value")
    if df.height > 10_000:
        raise InputError(f"`runs` has {df.height} rows; at most 10000", code="invalid_value")
    measures = [m for m in MEASURES if m in df.columns]
    if not measures:
        raise InputError(f"`runs` needs a measured column: one of {', '.join(MEASURES)} (mem_gb alone is not "
                         "enough to fit the time constants)", code="missing_field")
    _check_columns(df)
    ignored = [c for c in df.columns if c not in CONFIG_KEYS and c not in MEASURES and c != "mem_gb"]
    if "profile" in df.columns:
        raise InputError("`runs` must not name a profile per run; give `base`", code="invalid_value")
    if free is None:
        free_keys = list(TIME_KEYS)
    else:
        free_keys = [free] if isinstance(free, str) else list(free) if isinstance(free, (list, tuple)) else None
        if free_keys is None or not free_keys or any(k not in TIME_KEYS for k in free_keys):
            raise InputError(f"`free` must be one or more of {{{', '.join(TIME_KEYS)}}}, got "
                             f"{spec._show(free, quote=True)}", code="invalid_value")
    free_keys = [k for k in TIME_KEYS if k in free_keys]
    rows = df.to_dicts()
    first_gpu = rows[0].get("gpu") or "a100-80"
    base_name = base if base is not None else spec.default_profile(first_gpu)
    if not isinstance(base_name, str) or base_name.endswith(".toml"):
        raise InputError(f"`base` must be a catalog profile (see `topo profiles`), got {spec._show(base_name, quote=True)}",
                         code="invalid_value")
    base_core, _ = spec.profile_dict(base_name)

    core_runs, steps, mems, notes, before = [], [], [], [], []
    opts = spec.options_dict(0.0, 1e12, False, False)
    gpus_seen = {r.get("gpu") or "a100-80" for r in rows}
    if len(gpus_seen) > 1:
        notes.append(f"runs on several GPUs ({', '.join(sorted(map(str, gpus_seen)))}) share one profile, started "
                     f"from `{base_name}`; a profile per GPU fits better")
    links = {k: rows[0].get(k) for k in ("intra_node_gbs", "inter_node_gbs")
             if rows[0].get(k) is not None and all(r.get(k) == rows[0].get(k) for r in rows)}
    for i, r in enumerate(rows):
        for k in _SCALAR_COLUMNS:
            _check_value(i, k, r.get(k))
        if r.get("model") is None and not all(r.get(f) is not None for f in ("layers", "hidden", "heads")):
            raise InputError(f"run {i}: no `model` (and not all of layers, hidden, heads): name the model it trained",
                             code="missing_field")
        kw = {k: v for k, v in r.items() if k in CONFIG_KEYS and v is not None}
        kw["profile"] = base_name
        try:
            model_d, cluster_d, strat, _ = core_inputs(kw)
            cols, _, reject, message, _ = api._core_call(_core.evaluate, model_d, cluster_d, strat, base_core, opts)
        except ToposcanError as e:
            raise InputError(f"run {i}: {e.message}", code=e.code) from None
        pred = {k: v[0] for k, v in cols.items()}
        if reject == "oom":  # it ran: the memory model is off for it, the time model is not
            notes.append(f"run {i} is predicted not to fit ({pred['mem_gb']:.1f} GiB) though it ran")
        elif reject is not None:  # a configuration that cannot run as given: its time would be fiction
            raise InputError(f"run {i}: {message}", code=reject)
        measure = next((m for m in measures if r.get(m) is not None), None)
        if measure is None:
            raise InputError(f"run {i}: no measured value in {', '.join(measures)}", code="missing_field")
        steps.append(_measured_step(measure, r[measure], pred, i))
        core_runs.append((model_d, cluster_d, strat))
        before.append(pred)
        mem = r.get("mem_gb")
        cap = cluster_d["memory_bytes"] / GIB
        try:  # a peak no larger than the GPU's memory (the allocator cannot reserve more)
            mems.append(None if mem is None else spec.positive_float("mem_gb", mem, maximum=cap))
        except InputError as e:
            raise InputError(f"run {i}: {e.message} (GiB, the GPU's memory)", code=e.code) from None

    # Which constants the runs identify: sensitivity at the base profile, then pivoted selection.
    base_steps = np.array([p["step_time_s"] for p in before], dtype=float)
    sens = sensitivity(core_runs, base_core, free_keys, at=base_steps)
    ident = identify(sens, free_keys, max_fitted=max(1, len(rows) - 1))
    fit_prof = pointfit.fit(core_runs, steps, [k in ident.fitted for k in TIME_KEYS], base_core)
    fitted = {**base_core, **{k: float(fit_prof[k]) for k in TIME_KEYS}}
    bounds = _time_bounds()
    at_bound = []
    for k in ident.fitted:  # on a bound (up to rounding): exactly on it, and reported
        b = next((b for b in bounds[k] if math.isclose(fitted[k], b, abs_tol=1e-9)), None)
        if b is not None:
            fitted[k] = b
            at_bound.append(k)
    meas = np.asarray(steps, dtype=float)
    fit_steps = pointfit.step_times(core_runs, fitted)
    log_err = np.log(fit_steps / meas)
    # A constant on its bound is held there by the constraint, not by the runs: the error estimate and
    # the leverages are those of the constants inside their range (the bound is reported instead).
    inside = [k for k in ident.fitted if k not in at_bound]
    jac = sensitivity(core_runs, fitted, inside, at=fit_steps)
    std_errors, lev = _uncertainty(jac, log_err, inside)
    std_errors.update({k: None for k in at_bound})
    if loo == "exact":
        loo_pred = []
        for i in range(len(rows)):  # a refit per run, from the fit (a Python loop: Ctrl-C stops it)
            rest = [j for j in range(len(rows)) if j != i]
            p = pointfit.fit([core_runs[j] for j in rest], [steps[j] for j in rest],
                             [k in ident.fitted for k in TIME_KEYS], base_core, init=fitted)
            loo_pred.append(float(pointfit.step_times([core_runs[i]], p)[0]))
        loo_err = np.abs(np.array(loo_pred) / meas - 1) * 100
    else:  # the linearized leave-one-out residual e_i / (1 - h_ii)
        loo_err = np.abs(np.expm1(log_err / np.maximum(1 - lev, 1e-3))) * 100
    errs = np.abs(fit_steps / meas - 1) * 100

    warnings = []
    if ident.held:
        warnings.append(f"the runs identify {len(ident.fitted)} of {len(free_keys)} free constants (sensitivity rank "
                        f"{ident.rank} of {len(free_keys)}, condition number {_fmt_cond(ident.condition_number)}"
                        + (f", {_fmt_cond(ident.fitted_condition_number)} for those fitted" if ident.fitted else "")
                        + f"); held at `{base_name}`'s values: "
                        + "; ".join(f"{k} ({why})" for k, why in ident.held.items()))
    for k in at_bound:
        warnings.append(f"{k} stopped at its bound {fitted[k]:g} (base {base_core[k]:g}, allowed "
                        f"{bounds[k][0]:g}-{bounds[k][1]:g}): the runs pull it further than the model allows, so its "
                        "value is not to be trusted and it has no standard error (another effect is probably missing)")

    constants = {k: fitted[k] for k in TIME_KEYS}
    base_constants = {k: float(base_core[k]) for k in TIME_KEYS}
    mem_idx = [i for i, m in enumerate(mems) if m is not None]
    memory_mape = base_memory_mape = None
    if mem_idx:
        base_gib = [(before[i]["mem_gb"] - before[i]["overhead_gb"]) for i in mem_idx]
        act_gib = [before[i]["activations_gb"] + before[i]["logits_gb"] for i in mem_idx]
        spread = max(act_gib) - min(act_gib)
        # Fragmentation is a share of the activations: only activations that differ by enough for its
        # plausible range (0-0.25) to move memory by 0.5 GiB tell it from the fixed overhead.
        fit_frag = len(mem_idx) >= 3 and 0.25 * spread >= 0.5
        overhead, frag = fit_memory_terms(base_gib, act_gib, [mems[i] for i in mem_idx],
                                          None if fit_frag else float(base_core["fragmentation"]))
        if not fit_frag:
            warnings.append(f"fragmentation held at `{base_name}`'s {base_core['fragmentation']:g}: "
                            + ("fewer than 3 runs give mem_gb" if len(mem_idx) < 3 else
                               f"the runs' activations differ by only {spread:.2g} GiB"))
        fitted["memory_overhead_bytes"] = overhead * GIB
        fitted["fragmentation"] = frag
        constants["memory_overhead_gib"] = overhead
        constants["fragmentation"] = frag
        base_constants["memory_overhead_gib"] = base_core["memory_overhead_bytes"] / GIB
        base_constants["fragmentation"] = float(base_core["fragmentation"])
        std_errors.update(_memory_std_errors(base_gib, act_gib, [mems[i] for i in mem_idx], overhead, frag, fit_frag))
        for k, v in (("memory_overhead_gib", overhead), ("fragmentation", frag)):
            if v == 0.0 and (k == "memory_overhead_gib" or fit_frag):
                warnings.append(f"{k} stopped at its bound 0 (base {base_constants[k]:g}): the measured memory is "
                                "below what the model holds without it; check mem_gb is the peak reserved memory")
    after = [_predict(r, fitted) for r in core_runs]
    table = pl.DataFrame({
        "run": list(range(len(rows))),
        "measured_step_s": steps,
        "base_step_s": [p["step_time_s"] for p in before],
        "fitted_step_s": [p["step_time_s"] for p in after],
        "measured_mem_gb": [m for m in mems],
        "base_mem_gb": [p["mem_gb"] for p in before],
        "fitted_mem_gb": [p["mem_gb"] for p in after],
    }, schema_overrides={"measured_mem_gb": pl.Float64}).with_columns(
        base_error_pct=(pl.col("base_step_s") / pl.col("measured_step_s") - 1) * 100,
        error_pct=(pl.col("fitted_step_s") / pl.col("measured_step_s") - 1) * 100,
    )
    if not mem_idx:  # no memory measured: nothing to compare
        table = table.drop("measured_mem_gb", "base_mem_gb", "fitted_mem_gb")
    base_mape = float(table["base_error_pct"].abs().mean())
    if mem_idx:
        m = table.drop_nulls("measured_mem_gb")
        base_memory_mape = float(((m["base_mem_gb"] / m["measured_mem_gb"] - 1).abs() * 100).mean())
        memory_mape = float(((m["fitted_mem_gb"] / m["measured_mem_gb"] - 1).abs() * 100).mean())
    return Calibration(name=name, base=base_name, constants=constants, base_constants=base_constants,
                       mape=float(errs.mean()), max_error=float(errs.max()), loo_mape=float(loo_err.mean()),
                       base_mape=base_mape, runs=table, source=source, memory_mape=memory_mape,
                       base_memory_mape=base_memory_mape, ignored=ignored, notes=notes,
                       links={k: float(v) for k, v in links.items()}, std_errors=std_errors,
                       fitted=ident.fitted + [k for k in ("memory_overhead_gib", "fragmentation")
                                              if mem_idx and (k == "memory_overhead_gib" or fit_frag)],
                       held=ident.held, rank=ident.rank, condition_number=ident.condition_number,
                       at_bound=at_bound + [k for k in ("memory_overhead_gib", "fragmentation")
                                            if mem_idx and constants[k] == 0.0 and (k == "memory_overhead_gib" or fit_frag)],
                       warnings=warnings, loo=loo)


def _memory_std_errors(base_gib: list[float], act_gib: list[float], measured: list[float], overhead: float,
                       frag: float, fit_frag: bool) -> dict[str, float | None]:
    """Standard errors of the memory terms from the linear least squares (None without a spare run)."""
    y = np.array(measured) - np.array(base_gib)
    act = np.array(act_gib)
    a = np.column_stack([np.ones_like(act), act]) if fit_frag else np.ones((act.size, 1))
    resid = y - overhead - frag * act
    dof = act.size - a.shape[1]
    if dof <= 0:
        return {k: None for k in ("memory_overhead_gib", "fragmentation")[:a.shape[1]]}
    cov = float(resid @ resid) / dof * np.linalg.pinv(a.T @ a)
    keys = ("memory_overhead_gib", "fragmentation")[:a.shape[1]]
    return {k: float(math.sqrt(max(cov[j, j], 0.0))) for j, k in enumerate(keys)}


def _fmt_cond(c: float) -> str:
    return "inf" if not math.isfinite(c) else f"{c:.3g}"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _predict(run: tuple[dict, dict, dict], prof: dict[str, Any]) -> dict[str, Any]:
    model_d, cluster_d, strat = run
    opts = spec.options_dict(0.0, 1e12, False, False)
    cols, *_ = api._core_call(_core.evaluate, model_d, cluster_d, strat, prof, opts)
    return {k: v[0] for k, v in cols.items()}
