"""toposcan: enumerate and score LLM-training configurations before you launch them.

The engine is a Rust core (``toposcan._core``); this package gives it catalogs, keyword
validation and Polars frames. Every function here returns a ``polars.DataFrame`` (or a report
object for :func:`check`).

>>> import toposcan
>>> row = toposcan.evaluate(model="llama-2-7b", gpu="a100-80", nodes=1, dp=8, tp=1, pp=1, mbs=1, gbs=64)
>>> int(row["params"][0])
6738415616
"""

from __future__ import annotations

from toposcan.api import enumerate, evaluate
from toposcan.calibrate import Calibration, calibrate
from toposcan.check import CheckReport, check
from toposcan.catalog import gpus, models, profiles
from toposcan.errors import InputError, ParseError, ToposcanError, UnsupportedError
from toposcan.rules import REJECTS, WARNINGS, explain_warnings

__version__ = "0.1.0"


__all__ = [
    "Calibration",
    "CheckReport",
    "InputError",
    "ParseError",
    "REJECTS",
    "ToposcanError",
    "UnsupportedError",
    "WARNINGS",
    "__version__",
    "calibrate",
    "check",
    "enumerate",
    "evaluate",
    "explain_warnings",
    "gpus",
    "models",
    "profiles",
]
