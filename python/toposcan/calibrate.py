"""Calibration: fit a profile's constants to your own measured runs.

Other estimators answer "how do I calibrate it?" with "profile your hardware and derive the tables
yourself". Here a handful of measured runs is enough. Each run is one row: the configuration, in the
keyword names of :func:`toposcan.evaluate` (``model`` or its fields, ``gpu``, ``nodes``, ``tp``,
``pp``, ``mbs``, ``gbs``, ``zero_stage``, ``recompute``, ...), and what was measured: one of
``step_time_s``, ``tokens_per_s_per_gpu`` or ``tflops_per_gpu`` (Megatron-DeepSpeed convention),
and optionally ``mem_gb`` (peak memory, GiB, as the allocator reports it).

The time constants (GEMM, attention and memory-bound efficiency, link efficiencies, per-layer and
per-step overheads, data-parallel and ZeRO-3 overlap) are fitted by the same procedure the shipped profiles
were fitted with (``rust/core/src/fit.rs``: least squares on log step time, bounded, multi-start),
with the ridge term pulling every constant toward the *base* profile: a constant the runs cannot
identify stays where the base had it, so two or three runs already give a usable profile. The fixed
memory overhead (and, with three or more memory values, the allocator's fragmentation of the
activations) is fitted by least squares on ``mem_gb``.

The result reports the fit error, the leave-one-out error (each run predicted by a fit without it:
what to expect on a new run), and every run's prediction before and after; ``save`` writes a
profile file that ``profile=`` / ``--profile`` accept everywhere.
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
               "precision", "flash_attention", "uneven_stages")

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
        for k, v in self.constants.items():
            lines.append(f"{k} = {float(v)!r}")  # full precision: a reload predicts exactly the same
        lines.append(f"fit = {{ mape = {self.mape:.2f}, max_error = {self.max_error:.2f}, "
                     f"loo_mape = {self.loo_mape:.2f} }}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain data (for JSON)."""
        return {"name": self.name, "base": self.base, "source": self.source, "constants": self.constants,
                "base_constants": self.base_constants, "mape": self.mape, "max_error": self.max_error,
                "loo_mape": self.loo_mape, "base_mape": self.base_mape, "memory_mape": self.memory_mape,
                "base_memory_mape": self.base_memory_mape, "ignored": self.ignored, "notes": self.notes,
                "links": self.links, "runs": self.runs.to_dicts()}

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
               f"(max {self.max_error:.1f}%), {self.loo_mape:.1f}% leave-one-out (expect this on a new run)"]
        if self.memory_mape is not None:
            out.append(f"memory error: {self.base_memory_mape:.1f}% with the base profile -> {self.memory_mape:.1f}% fitted")
        for k, v in self.constants.items():
            b = self.base_constants[k]
            out.append(f"  {k:<22} {b:>10.4g} -> {v:<10.4g}" + ("" if math.isclose(b, v, rel_tol=1e-3, abs_tol=1e-12) else " *"))
        if self.ignored:
            out.append(f"ignored columns: {', '.join(self.ignored)}")
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)


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
        return v
    if measure == "tokens_per_s_per_gpu":
        return pred["gbs"] * pred["seq_len"] / (v * pred["gpus"])
    return pred["flops_per_iter_megatron"] / (v * 1e12 * pred["gpus"])


def calibrate(runs: Any, *, base: str | None = None, name: str = "calibrated", free: Any = None) -> Calibration:
    """Fits a profile to measured runs (a frame, a list of dicts, or a .csv/.parquet/.json path).

    ``base`` is the catalog profile to start from (default: the one for the first run's GPU);
    ``free`` the time constants the fit may move (default: all of :data:`TIME_KEYS`). Columns that
    are neither configuration keywords nor measurements are reported in ``ignored``.

    >>> runs = [dict(model="llama-2-7b", gpu="a100-80", nodes=1, tp=1, pp=1, mbs=4, gbs=256, zero_stage=3,
    ...              recompute="none", flash_attention=True, tokens_per_s_per_gpu=3100.0)]
    >>> cal = calibrate(runs, base="llm-foundry-a100")
    >>> cal.mape < 1.0
    True
    """
    if not (isinstance(name, str) and name.strip() and name.isprintable()):
        raise InputError(f"`name` must be a non-empty printable string, got {spec._show(name, quote=True)}",
                         code="invalid_value")
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
    rows = df.to_dicts()
    first_gpu = rows[0].get("gpu") or "a100-80"
    base_name = base if base is not None else spec.default_profile(first_gpu)
    if not isinstance(base_name, str) or base_name.endswith(".toml"):
        raise InputError(f"`base` must be a catalog profile (see `topo profiles`), got {spec._show(base_name, quote=True)}",
                         code="invalid_value")
    base_core, _ = spec.profile_dict(base_name)

    core_runs, steps, mems, notes = [], [], [], []
    opts = spec.options_dict(0.0, 1e12, False, False)
    gpus_seen = {r.get("gpu") or "a100-80" for r in rows}
    if len(gpus_seen) > 1:
        notes.append(f"runs on several GPUs ({', '.join(sorted(map(str, gpus_seen)))}) share one profile, started "
                     f"from `{base_name}`; a profile per GPU fits better")
    links = {k: rows[0].get(k) for k in ("intra_node_gbs", "inter_node_gbs")
             if rows[0].get(k) is not None and all(r.get(k) == rows[0].get(k) for r in rows)}
    for i, r in enumerate(rows):
        kw = {k: v for k, v in r.items() if k in CONFIG_KEYS and v is not None and not _is_nan(v)}
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
        measure = next((m for m in measures if r.get(m) is not None and not _is_nan(r[m])), None)
        if measure is None:
            raise InputError(f"run {i}: no measured value in {', '.join(measures)}", code="missing_field")
        steps.append(_measured_step(measure, r[measure], pred, i))
        core_runs.append((model_d, cluster_d, strat))
        mem = r.get("mem_gb")
        mems.append(None if mem is None or _is_nan(mem) else spec.positive_float(f"runs[{i}].mem_gb", mem))

    fit = fit_time(core_runs, steps, [k in free_keys for k in TIME_KEYS], base_core)
    fitted = {**base_core, **{k: float(fit["profile"][k]) for k in TIME_KEYS}}
    constants = {k: fitted[k] for k in TIME_KEYS}
    base_constants = {k: float(base_core[k]) for k in TIME_KEYS}

    before = [_predict(r, base_core) for r in core_runs]
    mem_idx = [i for i, m in enumerate(mems) if m is not None]
    memory_mape = base_memory_mape = None
    if mem_idx:
        base_gib = [(before[i]["mem_gb"] - before[i]["overhead_gb"]) for i in mem_idx]
        act_gib = [before[i]["activations_gb"] + before[i]["logits_gb"] for i in mem_idx]
        overhead, frag = fit_memory_terms(base_gib, act_gib, [mems[i] for i in mem_idx],
                                          None if len(mem_idx) >= 3 else float(base_core["fragmentation"]))
        fitted["memory_overhead_bytes"] = overhead * GIB
        fitted["fragmentation"] = frag
        constants["memory_overhead_gib"] = overhead
        constants["fragmentation"] = frag
        base_constants["memory_overhead_gib"] = base_core["memory_overhead_bytes"] / GIB
        base_constants["fragmentation"] = float(base_core["fragmentation"])
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
                       mape=fit["mape"], max_error=fit["max_error"], loo_mape=fit["loo_mape"], base_mape=base_mape,
                       runs=table, source=source, memory_mape=memory_mape, base_memory_mape=base_memory_mape,
                       ignored=ignored, notes=notes, links={k: float(v) for k, v in links.items()})


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _predict(run: tuple[dict, dict, dict], prof: dict[str, Any]) -> dict[str, Any]:
    model_d, cluster_d, strat = run
    opts = spec.options_dict(0.0, 1e12, False, False)
    cols, *_ = api._core_call(_core.evaluate, model_d, cluster_d, strat, prof, opts)
    return {k: v[0] for k, v in cols.items()}
