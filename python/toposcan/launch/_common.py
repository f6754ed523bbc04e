"""Shared pieces of the launch-config parsers: limits, the result builder, value converters.

Every converter raises :class:`~toposcan.errors.ParseError` with a one-line message that names the field,
the value and what is allowed; nothing here raises any other exception type on user input.
"""

from __future__ import annotations

import io
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any

from ..errors import ParseError

#: Largest launch file (or argument string) read, in characters. Real launch scripts and configs are a few KiB.
MAX_INPUT_CHARS = 1_000_000
#: Largest total number of characters that shell variable expansion may produce for one script.
MAX_EXPANSION_CHARS = 4_000_000
#: Deepest nesting of ``${...}`` / ``$(...)`` / quotes, ``bash -c`` / ``eval`` levels and interpolation chains.
MAX_DEPTH = 32
#: Deepest ``bash -c`` / ``eval`` re-parse of a command string.
MAX_SHELL_LEVELS = 4
#: Largest integer accepted for a size or count (it must fit a signed 64-bit integer in the Rust core).
MAX_INT = 2**62
#: Most digits accepted in an integer literal (Python refuses to convert very long digit strings).
MAX_INT_DIGITS = 19

_INT_RE = re.compile(r"\+?[0-9]+(?:_[0-9]+)*")


def short(value: Any, limit: int = 60) -> str:
    """``value`` as text for a one-line message: newlines escaped, cut to ``limit`` characters.

    Containers are named, never printed: a YAML alias bomb must not be expanded into a message.
    """
    if isinstance(value, str):
        text = value[: limit * 4]
    elif isinstance(value, dict):
        text = "a mapping"
    elif isinstance(value, (list, tuple, set)):
        text = "a list"
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        text = "a very large integer"
    else:
        text = repr(value)[: limit * 4]
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    text = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256 else "?" for ch in text)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def unresolved_name(text: str) -> str | None:
    """The first shell variable or substitution left unexpanded in ``text`` (``$NAME``, ``${..}``, ``$(..)``), if any."""
    match = re.search(
        r"\$\(\(|\$\{[A-Za-z_][A-Za-z0-9_]*(?:\[[^\]]*\])?[^}A-Za-z0-9_\[]|\$\{?([A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-])|\$\(|`",
        text,
    )
    if match is None:
        return None
    if match.group(1) is not None:
        return "$" + match.group(1)
    if match.group(0).startswith("${"):
        return "${...}"
    return {"$((": "$((...))", "$(": "$(...)"}.get(match.group(0), "`...`")


def parse_int(text: str, field_name: str, *, minimum: int = 1, maximum: int = MAX_INT) -> int:
    """Read a decimal integer the way Python's ``int()`` (and so Megatron's argparse) does, ASCII digits only.

    ``field_name`` names the field in the error message, for example ``--num-layers``.
    """
    raw = text.strip()
    name = unresolved_name(raw)
    if name is not None:
        if name == "$((...))":
            raise ParseError(
                f"`{field_name}` is `{short(raw)}`, arithmetic that cannot be evaluated "
                "(division by zero, overflow or unsupported syntax)",
                code="unknown_variable",
                hint="give the value literally",
            )
        if name == "${...}":
            raise ParseError(
                f"`{field_name}` is `{short(raw)}`, a shell expansion toposcan does not evaluate",
                code="unknown_variable",
                hint="give the value literally",
            )
        if name in ("$(...)", "`...`"):
            raise ParseError(
                f"`{field_name}` is `{short(raw)}`, the output of a command, which toposcan does not run",
                code="unknown_variable",
                hint="give the value literally",
            )
        uses = "" if raw in (name, "${" + name[1:] + "}") else f", which uses `{name}`"
        raise ParseError(
            f"`{field_name}` is `{short(raw)}`{uses}, a variable the file never sets",
            code="unknown_variable",
            hint=f"set `{name.lstrip('$')}` in the script, or give the value literally",
        )
    digits = raw.replace("_", "").lstrip("+")
    if not _INT_RE.fullmatch(raw) or len(digits) > MAX_INT_DIGITS:
        allowed = "a non-negative integer" if minimum == 0 else "a positive integer"
        if minimum > 1 or maximum < MAX_INT:
            allowed = f"an integer from {minimum} to {maximum}"
        raise ParseError(f"`{field_name}` must be {allowed}, got `{short(raw)}`", code="invalid_value")
    value = int(digits)
    return check_int(value, field_name, minimum=minimum, maximum=maximum)


def check_int(value: int, field_name: str, *, minimum: int = 1, maximum: int = MAX_INT) -> int:
    """``value`` if ``minimum <= value <= maximum``, else a ParseError naming ``field_name``."""
    if value < minimum or value > maximum:
        if maximum < MAX_INT:
            allowed = f"an integer from {minimum} to {maximum}"
        elif minimum == 0:
            allowed = "a non-negative integer"
        elif minimum == 1:
            allowed = "a positive integer"
        else:
            allowed = f"an integer of at least {minimum}"
        if value > MAX_INT:
            allowed += f" no larger than {MAX_INT}"
        raise ParseError(f"`{field_name}` must be {allowed}, got `{short(str(value))}`", code="invalid_value")
    return value


def typed_int(value: Any, field_name: str, *, minimum: int = 1, maximum: int = MAX_INT) -> int:
    """An integer from a JSON/YAML value: a real int (not a bool), or a string holding one."""
    if isinstance(value, bool) or value is None:
        raise ParseError(
            f"`{field_name}` must be an integer, got `{short(value if value is not None else 'null')}`",
            code="invalid_value",
        )
    if isinstance(value, int):
        return check_int(value, field_name, minimum=minimum, maximum=maximum)
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_INT:
        return check_int(int(value), field_name, minimum=minimum, maximum=maximum)
    if isinstance(value, str):
        return parse_int(value, field_name, minimum=minimum, maximum=maximum)
    raise ParseError(f"`{field_name}` must be an integer, got `{short(value)}`", code="invalid_value")


def typed_bool(value: Any, field_name: str) -> bool:
    """A boolean from a JSON/YAML value (``true``/``false``; YAML's other spellings are already bools)."""
    if isinstance(value, bool):
        return value
    raise ParseError(f"`{field_name}` must be `true` or `false`, got `{short(value)}`", code="invalid_value")


def choice(value: Any, field_name: str, allowed: dict[str, Any]) -> Any:
    """``allowed[value]``; a ParseError listing the allowed spellings otherwise."""
    if isinstance(value, str) and value in allowed:
        return allowed[value]
    listed = ", ".join(f"`{k}`" for k in allowed)
    raise ParseError(f"`{field_name}` must be one of {{{listed}}}, got `{short(value)}`", code="invalid_value")


@dataclass
class Result:
    """What a parser found; :func:`toposcan.launch.parse_launch` turns it into a ``LaunchConfig``."""

    kind: str
    spec: dict = field(default_factory=dict)
    cluster: dict = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    framework: str = ""  # "megatron-lm" or "megatron-deepspeed" for Megatron scripts, else empty
    model: str | None = None  # a catalog model the file names (torchtitan flavor, NeMo recipe), if obvious
    max_position_embeddings: int | None = None
    world_size: int | None = None  # GPUs in the run, where the file states the total but not nodes x GPUs
    findings: list[dict] = field(default_factory=list)  # gate findings: code, status, message, fix
    #: spec keys the parser filled with the framework's defaults (the file is silent on them)
    defaulted: set[str] = field(default_factory=set)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def finding(self, code: str, status: str, message: str, fix: str = "") -> None:
        """A problem the launch would hit that the gate should report (``status`` "fail" or "warn")."""
        self.findings.append({"code": code, "status": status, "message": message, "fix": fix})


def check_text(text: Any, what: str) -> str:
    """``text`` as a ``str`` fit to parse: not empty, not binary, not over :data:`MAX_INPUT_CHARS`."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        if b"\x00" in raw[:65536]:
            raise ParseError(f"{what} is binary data, not text", code="binary")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ParseError(
                f"{what} is not UTF-8 text (bad byte at offset {exc.start})", code="binary"
            ) from None
    if not isinstance(text, str):
        raise ParseError(f"{what} must be text, got a `{type(text).__name__}`", code="invalid_input")
    if len(text) > MAX_INPUT_CHARS:
        raise ParseError(
            f"{what} has {len(text)} characters; at most {MAX_INPUT_CHARS} are read",
            code="too_large",
            hint="a launch script or config is a few KiB; check that the right file was given",
        )
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise ParseError(f"{what} is empty", code="empty")
    sample = text[:8192]
    if "\x00" in sample:
        raise ParseError(f"{what} is binary data, not text (it holds NUL bytes)", code="binary")
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f\v\x1b")
    if controls * 10 > len(sample):
        raise ParseError(f"{what} is binary data, not text", code="binary")
    return text.replace("\r\n", "\n")


#: Longest line taken for a header or end line of a printed argument block (Megatron's are about 60
#: characters plus a rank or time prefix); longer lines are not examined, which keeps the matching linear.
MAX_BANNER_CHARS = 300
_BANNER = {
    False: (re.compile(r"-{4} ?arguments ?-{4}"), re.compile(r"(.*?)-{4,} ?arguments ?-{4,}[ \t]*")),
    True: (re.compile(r"-{4} ?end of arguments ?-{4}"), re.compile(r"(.*?)-{4,} ?end of arguments ?-{4,}[ \t]*")),
}


def banner_lines(text: str, *, end: bool = False, start: int = 0):
    """The header lines (``end=True``: end lines) of Megatron's printed argument block in ``text`` from
    offset ``start``, as (line start, line end, the prefix before the dashes), in order."""
    seek, whole = _BANNER[end]
    pos = start
    while True:
        match = seek.search(text, pos)
        if match is None:
            return
        begin = text.rfind("\n", 0, match.start()) + 1
        stop = text.find("\n", match.end())
        stop = len(text) if stop < 0 else stop
        pos = stop + 1
        line = text[begin:stop].rstrip("\r")
        if len(line) <= MAX_BANNER_CHARS:
            found = whole.fullmatch(line)
            if found is not None:
                yield begin, stop, found.group(1)


def _file_type(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_launch_file(path: Any) -> str:
    """The text of the launch file at ``path``, read with a bound before anything else looks at it.

    Only a regular file is opened for reading (a FIFO, device, socket or directory is refused with a
    one-line :class:`ParseError` naming the path, before any byte is read: ``/dev/zero`` would stream
    forever and a FIFO would block), and at most ``MAX_INPUT_CHARS + 1`` characters are read. A training
    log longer than that is cut after Megatron's printed argument block when the block ends within the
    limit (logs run to gigabytes; the block is at the top); any other file over the limit is refused.
    """
    try:
        name = os.fspath(path)
    except TypeError:
        raise ParseError(f"a launch file path must be a string, got a `{type(path).__name__}`",
                         code="invalid_input") from None
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    shown = short(name, 120)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        # O_NONBLOCK: opening a FIFO that has no writer would block here; the type check comes after
        fd = os.open(name, flags)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else short(str(exc))
        raise ParseError(f"cannot read `{shown}`: {reason}", code="unreadable") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ParseError(f"`{shown}` is {_file_type(mode)}, not a regular file; give a launch script or config file",
                             code="not_a_file")
        raw = io.FileIO(fd, "rb", closefd=True)
        fd = -1
        with io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8", errors="strict", newline="") as handle:
            text = handle.read(MAX_INPUT_CHARS + 1)
    except UnicodeDecodeError:
        raise ParseError(f"`{shown}` is not UTF-8 text", code="binary") from None
    except OSError as exc:
        raise ParseError(f"cannot read `{shown}`: {exc.strerror or short(str(exc))}", code="unreadable") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(text) > MAX_INPUT_CHARS:
        head = text[:MAX_INPUT_CHARS]
        first = next(banner_lines(head), None)
        end = next(banner_lines(head, end=True, start=first[1]), None) if first else None
        if end is None:
            raise ParseError(
                f"`{shown}` has more than {MAX_INPUT_CHARS} characters; at most {MAX_INPUT_CHARS} are read",
                code="too_large",
                hint="a launch script or config is a few KiB; check that the right file was given",
            )
        text = head[: end[1]]
    return text
