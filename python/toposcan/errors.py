"""Error types of toposcan.

Every error carries a stable ``code`` (a slug such as ``heads_not_divisible_by_tp``), a one-line
message that names the field, the value and what is allowed, and an optional ``hint``. The CLI prints
``error: <message>`` and, after a blank line, ``hint: <hint>``; it never shows a traceback.
"""

from __future__ import annotations

import math
from typing import Any


def show(value: Any, *, quote: bool = False) -> str:
    """``value`` as a message prints it: on one line (line breaks escaped) and at most 120 characters."""
    if isinstance(value, int) and value.bit_length() > 332:  # str() refuses ints over 4300 digits
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    try:
        text = repr(value) if quote else str(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= 120 else text[:119] + "…"


class ToposcanError(Exception):
    """Base class: a user-facing error with a stable code and an optional hint."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.hint = hint

    def __str__(self) -> str:  # one line, no trailing period
        return self.message


class InputError(ToposcanError):
    """A value given by the user (keyword, CLI option or parsed field) is not allowed."""

    code = "invalid_input"


class ParseError(ToposcanError):
    """A launch config (script, JSON or YAML) could not be read or understood."""

    code = "parse_error"


class UnsupportedError(ToposcanError):
    """A feature reserved for a later version was asked for."""

    code = "not_supported"
