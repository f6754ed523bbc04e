"""Type stubs of the Rust extension ``toposcan._core`` (rust/py/lib.rs). Private: use the
functions of :mod:`toposcan` instead, which validate their keywords and return Polars frames."""

from collections.abc import Callable
from typing import Any

import numpy as np

class CoreError(ValueError):
    """An input the core rejects; ``args`` is ``(code, field, message)``."""

Columns = dict[str, np.ndarray]
Labels = dict[str, list[str]]

def evaluate(
    model_d: dict[str, Any],
    cluster_d: dict[str, Any],
    strategy_d: dict[str, Any],
    profile_d: dict[str, Any],
    options_d: dict[str, Any],
) -> tuple[Columns, Labels, str | None, str | None, list[dict[str, float]]]: ...
def enumerate(
    space_d: dict[str, Any],
    model_d: dict[str, Any],
    cluster_d: dict[str, Any],
    profile_d: dict[str, Any],
    options_d: dict[str, Any],
    reducer_d: dict[str, Any],
    progress: Callable[[int, int], bool] | None = None,
) -> tuple[Columns, Labels, dict[str, Any]]: ...
def fit_profile(
    rows: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]],
    measured: list[float],
    free: list[bool],
    start_d: dict[str, Any],
    options_d: dict[str, Any],
) -> tuple[dict[str, Any], float, float, float]: ...
def column_info() -> list[tuple[str, str, str]]: ...
def reject_codes() -> list[str]: ...
def warning_codes() -> list[tuple[int, str]]: ...
def gemm_time(cluster_d: dict[str, Any], precision: str, m: int, n: int, k: int, batch: int) -> float: ...
def attention_time(cluster_d: dict[str, Any], precision: str, s_q: int, s_k: int, head_dim: int, batch_heads: int,
                   window: int = 0) -> float: ...
