"""Columns from the core (numpy buffers) -> Polars frames, without a Python object per row."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl


def to_frame(cols: dict[str, Any], labels: dict[str, list[str]]) -> pl.DataFrame:
    """Builds the frame; categorical columns (u8 codes) become ``pl.Enum`` with their labels."""
    series = []
    for name, arr in cols.items():
        if name in labels:
            lab = labels[name]
            series.append(pl.Series(name, np.asarray(lab, dtype=object)[arr] if len(arr) else [], dtype=pl.Enum(lab)))
        else:
            series.append(pl.Series(name, arr))
    return pl.DataFrame(series)
