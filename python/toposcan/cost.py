"""What a training run costs: GPU-hours times a price per GPU-hour.

The default price per GPU comes from ``data/prices.toml`` (one provider's on-demand list price,
with its source and the date it was read); a real quote is passed as ``usd_per_gpu_hour`` (CLI
``--gpu-hour-usd``). Two columns are added:

* ``cost_usd``: the whole run, ``gpu_hours`` (GPU-hours for the token budget) x price;
* ``usd_per_m_tokens``: price / (tokens/s/GPU x 3600) x 1e6, dollars per million training tokens.

For one GPU type both rank exactly like ``gpu_hours`` (the price is a constant factor), so a search
ranked by cost is a search ranked by ``gpu_hours`` (:data:`OBJECTIVE_COLUMN`).
"""

from __future__ import annotations

import math
import tomllib
from functools import cache
from importlib import resources
from typing import Any

import polars as pl

from toposcan.errors import InputError

#: The core column that ranks like cost (``--objective cost``).
OBJECTIVE_COLUMN = {"cost": "gpu_hours", "cost_usd": "gpu_hours", "usd_per_m_tokens": "gpu_hours"}


@cache
def _prices() -> dict[str, dict[str, Any]]:
    text = resources.files("toposcan").joinpath("data", "prices.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def prices() -> pl.DataFrame:
    """The default price table: gpu, usd_per_gpu_hour, provider, offer, date, source."""
    return pl.DataFrame([{"gpu": g, **{k: e[k] for k in ("usd_per_gpu_hour", "provider", "offer", "date", "source")}}
                         for g, e in _prices().items()])


def price(gpu: str, usd_per_gpu_hour: float | None = None) -> float:
    """The price per GPU-hour: ``usd_per_gpu_hour`` when given (a positive number), else the
    default of ``gpu``; a GPU with no default is a one-line error naming the option."""
    if usd_per_gpu_hour is not None:
        try:
            v = float(usd_per_gpu_hour)
        except (TypeError, ValueError):
            v = math.nan
        if isinstance(usd_per_gpu_hour, bool) or not (math.isfinite(v) and v > 0):
            raise InputError(f"`gpu_hour_usd` must be a positive number of US dollars, got `{usd_per_gpu_hour}`",
                             code="invalid_value")
        return v
    entry = _prices().get(gpu)
    if entry is None:
        raise InputError(f"no default price for gpu `{gpu}` (data/prices.toml has {', '.join(sorted(_prices()))}); "
                         "give one with --gpu-hour-usd (Python: usd_per_gpu_hour=)", code="missing_price")
    return float(entry["usd_per_gpu_hour"])


def add_cost(frame: pl.DataFrame, gpu: str, usd_per_gpu_hour: float | None = None) -> pl.DataFrame:
    """``frame`` with ``cost_usd`` (the training run: ``gpu_hours`` x price) and
    ``usd_per_m_tokens`` (from ``tokens_per_s_per_gpu``), and ``usd_per_gpu_hour``, the price used."""
    usd = price(gpu, usd_per_gpu_hour)
    missing = [c for c in ("gpu_hours", "tokens_per_s_per_gpu") if c not in frame.columns]
    if missing:
        raise InputError(f"frame lacks column `{missing[0]}`; cost needs gpu_hours and tokens_per_s_per_gpu",
                         code="invalid_value")
    return frame.with_columns(
        (pl.col("gpu_hours") * usd).alias("cost_usd"),
        (usd / (pl.col("tokens_per_s_per_gpu") * 3600.0) * 1e6).alias("usd_per_m_tokens"),
        pl.lit(usd).alias("usd_per_gpu_hour"),
    )
