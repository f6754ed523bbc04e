"""Rendering frames for the terminal and for files (table, csv, json, parquet, markdown)."""

from __future__ import annotations

import io
import math
import sys
from typing import Any

import polars as pl

from toposcan.errors import InputError

FORMATS = ("table", "csv", "json", "parquet", "markdown")

#: Columns shown on the terminal, in order; shape columns are added when they vary.
TABLE_COLUMNS = ["dp", "tp", "pp", "vpp", "cp", "ep", "mbs", "gbs", "zero_stage", "recompute", "sequence_parallel",
                 "step_time_s", "tflops_per_gpu", "mfu", "tokens_per_s_per_gpu", "mem_gb", "train_days", "usd_per_m_tokens"]
SHORT = {"zero_stage": "zero", "sequence_parallel": "sp", "step_time_s": "step_s", "tflops_per_gpu": "tflops",
         "tokens_per_s_per_gpu": "tok/s/gpu", "recompute": "recomp", "train_days": "days",
         "usd_per_m_tokens": "$/Mtok"}


def _fmt(v: Any, name: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if name == "mfu" or name == "hfu":
            return f"{v * 100:.1f}%"
        if abs(v) >= 1e5:
            return f"{v:.3e}"
        # Below 1, three significant digits: 0.0747 s or 0.0131 J/token, not 0.07 and 0.01.
        if abs(v) >= 1 or v == 0 or name.endswith("_pct"):
            return f"{v:.2f}"  # percents: two decimals
        short = f"{v:.3g}"
        return f"{v:.2f}" if short in ("1", "-1") else short
    return str(v)


def table_columns(df: pl.DataFrame, shape: bool = False) -> list[str]:
    """Terminal columns; ``shape`` forces hidden/layers/heads/params (a shape search)."""
    cols = [c for c in TABLE_COLUMNS if c in df.columns]
    # Hide degrees that never vary from 1 (vpp, cp, ep) to keep the table narrow.
    cols = [c for c in cols if c not in ("vpp", "cp", "ep") or df[c].n_unique() > 1 or (df.height and df[c][0] != 1)]
    shape_cols = [c for c in ("hidden", "layers", "heads", "params") if c in df.columns and (shape or df[c].n_unique() > 1)]
    return shape_cols + cols


def text_table(df: pl.DataFrame, columns: list[str] | None = None, *, rank: bool | None = None) -> str:
    rank = columns is None if rank is None else rank
    cols = columns or table_columns(df)
    head = (["#"] if rank else []) + [SHORT.get(c, c) for c in cols]
    rows = []
    for i, r in enumerate(df.select(cols).iter_rows()):
        rows.append(([str(i + 1)] if rank else []) + [_fmt(v, c) for v, c in zip(r, cols)])
    widths = [max(len(h), *(len(r[j]) for r in rows)) if rows else len(h) for j, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def markdown(df: pl.DataFrame, columns: list[str] | None = None) -> str:
    cols = columns or table_columns(df)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" for _ in cols) + "|"]
    for r in df.select(cols).iter_rows():
        lines.append("| " + " | ".join(_fmt(v, c) for v, c in zip(r, cols)) + " |")
    return "\n".join(lines)


def _plain(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns([pl.col(c).cast(pl.String) for c, t in df.schema.items() if isinstance(t, pl.Enum)])


#: The step-time breakdown columns (they add up to step_time_s), with the labels the CLI prints.
BREAKDOWN = (("compute", "compute_s"), ("recompute", "recompute_s"), ("tp comm", "tp_comm_s"), ("ep comm", "ep_comm_s"),
             ("pp comm", "pp_comm_s"), ("zero-3 gathers", "fsdp_comm_s"), ("dp comm", "dp_comm_exposed_s"),
             ("optimizer", "optimizer_s"), ("overheads", "overhead_s"), ("bubble", "bubble_s"))


def breakdown(row: dict[str, Any]) -> str:
    """One line: where a row's step time goes (the non-zero parts of :data:`BREAKDOWN`)."""
    return ", ".join(f"{label} {row[col]:.3g} s" for label, col in BREAKDOWN if (row.get(col) or 0) > 0)


def mode_line(row: dict[str, Any]) -> str:
    """The training-mode settings of a row (or config) that differ from plain pretraining, in one
    line ("" when none do): task, offload, HSDP shard, expert tensor parallelism, the schedule when
    it is not what vpp implies, Ulysses CP, the FP8 recipe."""
    parts = []
    task = row.get("task")
    if task and task != "pretrain":
        parts.append(f"task {task}" + (f" (rank {row.get('lora_rank')})" if task == "lora" and row.get("lora_rank") else ""))
    if row.get("offload") not in (None, "none"):
        parts.append(f"offload {row['offload']}")
    # The core reports the shard group (dp unless HSDP) and etp (tp unless folded): say only a change.
    if row.get("fsdp_shard") and row.get("dp") and row["fsdp_shard"] < row["dp"]:
        parts.append(f"hsdp: shard over {row['fsdp_shard']}, {row['dp'] // row['fsdp_shard']} replicas")
    if row.get("etp") and row.get("tp") and row["etp"] != row["tp"]:
        parts.append(f"etp {row['etp']}")
    if row.get("schedule") in ("zero-bubble", "dualpipe"):
        parts.append(f"schedule {row['schedule']}")
    if row.get("cp_comm") == "ulysses":
        parts.append("cp ulysses")
    if row.get("precision") == "fp8" and row.get("fp8_recipe"):
        parts.append(f"fp8 {row['fp8_recipe']} scaling")
    return ", ".join(parts)


def json_safe(x: Any) -> Any:
    """``x`` with NaN and infinities as None (JSON has no NaN; strict parsers reject it)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def _flat(df: pl.DataFrame) -> pl.DataFrame:
    """CSV has no nesting: a struct becomes one column per field (`fit` -> `fit_mape`, ...), a list
    its items joined by `;`."""
    for c, t in df.schema.items():
        if isinstance(t, pl.Struct):
            parts = [pl.col(c).struct.field(f.name).alias(f"{c}_{f.name}") for f in t.fields]
            df = df.with_columns(parts).drop(c)
        elif isinstance(t, pl.List):
            df = df.with_columns(pl.col(c).cast(pl.List(pl.String)).list.join(";"))
    return df


def write(df: pl.DataFrame, fmt: str, out: str | None, *, columns: list[str] | None = None) -> None:
    """Writes ``df`` as ``fmt`` to ``out`` (a path) or stdout. Parquet needs a path."""
    if fmt not in FORMATS:
        raise InputError(f"`format` must be one of {{{', '.join(FORMATS)}}}, got `{fmt}`", code="invalid_value")
    if fmt == "parquet":
        if not out:
            raise InputError("`--format parquet` needs `-o FILE`", code="invalid_value")
        try:
            _plain(df).write_parquet(out)
        except OSError as e:
            raise InputError(f"cannot write `{out}`: {e.strerror or e}", code="io_error") from None
        return
    if fmt == "table":
        text = text_table(df, columns)
    elif fmt == "markdown":
        text = markdown(df, columns)
    elif fmt == "csv":
        buf = io.StringIO()
        _flat(_plain(df)).write_csv(buf)
        text = buf.getvalue().rstrip("\n")
    else:
        buf = io.StringIO()
        _plain(df).write_json(buf)
        text = buf.getvalue().rstrip("\n")
    if out:
        try:
            with open(out, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        except OSError as e:
            raise InputError(f"cannot write `{out}`: {e.strerror}", code="io_error") from None
    else:
        sys.stdout.write(text + "\n")
