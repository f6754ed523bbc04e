"""A small, safe reader for the bash that launch scripts are written in.

It does not run anything. It lexes the script into statements (quotes, escapes, line continuations,
comments, ``$VAR``/``${VAR}``/``${VAR:-default}``/``$((A*B))``/``$(...)``, arrays, here-documents,
redirections), then walks the statements in order, keeping a table of variables, so that each command line
can be expanded to the argument vector bash would build. ``bash -c "..."`` and ``eval`` strings are read
the same way, a few levels deep. Control flow is not followed: every assignment is taken in file order,
which is how launch scripts are written in practice.

What cannot be known without running the script (command substitution, variables from the environment,
positional parameters) expands to a marker such as ``$SLURM_JOB_ID`` or ``$(...)``; a parser that needs
the value of such a field raises ``ParseError(code="unknown_variable")``.

Guards: input size (see ``_common``), total expansion size, nesting depth and the number of commands.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Union

from ..errors import ParseError
from ._common import MAX_DEPTH, MAX_EXPANSION_CHARS, MAX_SHELL_LEVELS

#: Most command lines kept from one script (and its ``bash -c`` strings).
MAX_COMMANDS = 20_000

_META = frozenset(" \t\n;&|<>()")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\[[^\]]*\])?(\+?)=")
_PARAM_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-]")
_RESERVED_PREFIX = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!", "{", "}", "fi", "done", "esac", "time", "coproc"})
_SKIP_STATEMENT = frozenset({"for", "case", "select", "function", "]]"})
_DECLARE = frozenset({"export", "declare", "typeset", "local", "readonly"})
SHELLS = frozenset({"bash", "sh", "zsh", "dash", "ksh"})
_ANSI_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "v": "\v"}


# --------------------------------------------------------------------------------------------- syntax tree


@dataclass
class Lit:
    text: str
    quoted: bool


@dataclass
class Param:
    """``$NAME``, ``${NAME}``, ``${NAME[i]}``, ``${NAME:-word}``, ``${#NAME}`` and the like."""

    name: str
    raw: str  # the marker left when the value is unknown, e.g. ``$NAME`` or ``${NAME}``
    quoted: bool
    index: str | None = None
    # ':-', '-', ':=', '=', ':+', '+', ':?', '?' (word in ``arg``), 'len', '#', '##', '%', '%%' (pattern in
    # ``arg``), '/', '//' (pattern in ``arg``, replacement in ``arg2``), ',,', ',', '^^', '^', ':' (substring,
    # offset and length text in ``text``), 'other' (not evaluated)
    op: str | None = None
    arg: list | None = None
    arg2: list | None = None
    text: str = ""


@dataclass
class Arith:
    parts: list
    quoted: bool


@dataclass
class Sub:
    """Command substitution; never run."""

    quoted: bool


@dataclass
class ArrayLit:
    words: list


Part = Union[Lit, Param, Arith, Sub, ArrayLit]


@dataclass
class HereDoc:
    delimiter: str
    quoted: bool
    strip_tabs: bool
    body: list = field(default_factory=list)  # parts


@dataclass
class Stmt:
    line: int
    sep: str = ";"  # what came before: ";", "&&", "||", "|", "&"
    words: list = field(default_factory=list)
    redirects: list = field(default_factory=list)  # (op, word)
    heredocs: list = field(default_factory=list)


# --------------------------------------------------------------------------------------------- lexer


class _Lexer:
    def __init__(self, text: str, *, line: int = 1, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise ParseError(
                f"line {line}: shell syntax nested more than {MAX_DEPTH} levels deep", code="too_deep"
            )
        self.s = text
        self.n = len(text)
        self.i = 0
        self.base_line = line
        self.depth = depth
        self._line_pos = 0  # line_at() counts newlines from here on: statements come in order
        self._line_count = 0

    # -- helpers
    def line_at(self, pos: int) -> int:
        pos = min(pos, self.n)
        if pos < self._line_pos:
            return self.base_line + self.s.count("\n", 0, pos)
        self._line_count += self.s.count("\n", self._line_pos, pos)
        self._line_pos = pos
        return self.base_line + self._line_count

    def fail(self, message: str, pos: int, code: str = "unbalanced_quotes") -> ParseError:
        return ParseError(f"line {self.line_at(pos)}: {message}", code=code)

    def sub(self, text: str, pos: int) -> _Lexer:
        return _Lexer(text, line=self.line_at(pos), depth=self.depth + 1)

    # -- statements
    def statements(self) -> list[Stmt]:
        s, n = self.s, self.n
        out: list[Stmt] = []
        cur = Stmt(line=self.line_at(self.i))
        pending: list[HereDoc] = []

        def finish(sep: str = ";") -> Stmt:
            if cur.words or cur.redirects:
                out.append(cur)
            return Stmt(line=self.line_at(self.i), sep=sep)

        while self.i < n:
            c = s[self.i]
            if c in " \t":
                self.i += 1
            elif c == "\\" and s.startswith("\\\n", self.i):
                self.i += 2
            elif c == "#":
                j = s.find("\n", self.i)
                self.i = n if j < 0 else j
            elif c == "\n":
                self.i += 1
                cur = finish()
                for doc in pending:
                    self._read_heredoc_body(doc)
                pending = []
                cur.line = self.line_at(self.i)
            elif c == "&" and s.startswith("&>", self.i):
                op = "&>>" if s.startswith("&>>", self.i) else "&>"
                self.i += len(op)
                cur.redirects.append((">", self._read_target()))
            elif c in ";&|":
                op = s[self.i : self.i + 2] if s[self.i : self.i + 2] in (";;", "&&", "||", "|&", ";&") else c
                self.i += len(op)
                cur = finish(op if op in ("&&", "||") else ";")
            elif c in "()":
                self.i += 1
                cur = finish()
            elif c in "<>":
                self._redirect(cur, pending)
            elif c.isdigit() and self._fd_redirect_ahead():
                while s[self.i].isdigit():
                    self.i += 1
                self._redirect(cur, pending)
            else:
                start = self.i
                word = self._read_word()
                if (
                    self.i < n
                    and s[self.i] == "("
                    and len(word) == 1
                    and isinstance(word[0], Lit)
                    and not word[0].quoted
                    and _ASSIGN_RE.fullmatch(word[0].text)
                ):
                    word = [word[0], self._read_array(start)]
                if word:
                    cur.words.append(word)
                elif self.i == start:  # cannot happen, but never loop forever
                    self.i += 1
        finish()
        for doc in pending:  # here-document at end of file: bash reads to EOF
            doc.body = []
        return out

    def _fd_redirect_ahead(self) -> bool:
        j = self.i
        while j < self.n and self.s[j].isdigit():
            j += 1
        return j < self.n and self.s[j] in "<>"

    def _redirect(self, cur: Stmt, pending: list[HereDoc]) -> None:
        s = self.s
        for op in ("<<<", "<<-", "<<", "<>", "<&", "<", ">>", ">&", ">|", ">"):
            if s.startswith(op, self.i):
                break
        self.i += len(op)
        if op in ("<<", "<<-"):
            while self.i < self.n and s[self.i] in " \t":
                self.i += 1
            start = self.i
            word = self._read_word()
            raw = s[start : self.i]
            quoted = any(ch in raw for ch in "'\"\\")
            delimiter = "".join(p.text if isinstance(p, Lit) else "" for p in word) if quoted else raw
            if not delimiter:
                raise self.fail("here-document `<<` has no delimiter word", start, code="syntax_error")
            doc = HereDoc(delimiter=delimiter, quoted=quoted, strip_tabs=(op == "<<-"))
            pending.append(doc)
            cur.heredocs.append(doc)
            return
        target = self._read_target()
        if op in (">", ">>", ">|", "&>"):
            cur.redirects.append((">", target))

    def _read_target(self) -> list:
        while self.i < self.n and self.s[self.i] in " \t":
            self.i += 1
        return self._read_word()

    def _read_heredoc_body(self, doc: HereDoc) -> None:
        s, n = self.s, self.n
        start = self.i
        lines: list[str] = []
        while self.i < n:
            j = s.find("\n", self.i)
            end = n if j < 0 else j
            line = s[self.i : end]
            self.i = n if j < 0 else j + 1
            check = line.lstrip("\t") if doc.strip_tabs else line
            if check == doc.delimiter:
                break
            lines.append(check)
        body = "\n".join(lines) + ("\n" if lines else "")
        if doc.quoted:
            doc.body = [Lit(body, True)]
        else:
            doc.body = self.sub(body, start)._read_until_end(mode="heredoc")

    def _read_array(self, start: int) -> ArrayLit:
        s, n = self.s, self.n
        self.i += 1  # '('
        words = []
        while True:
            if self.i >= n:
                raise self.fail("array `(` is never closed with `)`", start)
            c = s[self.i]
            if c in " \t\n":
                self.i += 1
            elif s.startswith("\\\n", self.i):
                self.i += 2
            elif c == "#":
                j = s.find("\n", self.i)
                self.i = n if j < 0 else j
            elif c == ")":
                self.i += 1
                return ArrayLit(words)
            elif c in ";&|<>(":
                raise self.fail(f"unexpected `{c}` inside an array", self.i, code="syntax_error")
            else:
                word = self._read_word()
                if word:
                    words.append(word)

    # -- words
    def _read_word(self) -> list:
        s, n = self.s, self.n
        parts: list = []
        lit: list[str] = []

        def flush() -> None:
            if lit:
                parts.append(Lit("".join(lit), False))
                lit.clear()

        while self.i < n:
            c = s[self.i]
            if c in _META:
                break
            if c == "\\":
                if self.i + 1 >= n:
                    lit.append("\\")
                    self.i += 1
                elif s[self.i + 1] == "\n":
                    self.i += 2
                else:
                    flush()
                    parts.append(Lit(s[self.i + 1], True))
                    self.i += 2
            elif c == "'":
                j = s.find("'", self.i + 1)
                if j < 0:
                    raise self.fail("the `'` opened here is never closed", self.i)
                flush()
                parts.append(Lit(s[self.i + 1 : j], True))
                self.i = j + 1
            elif c == '"':
                flush()
                self.i += 1
                parts.extend(self._read_dq())
            elif c == "`":
                flush()
                parts.append(self._read_backtick(quoted=False))
            elif c == "$":
                flush()
                parts.append(self._read_dollar(quoted=False))
            else:
                lit.append(c)
                self.i += 1
        flush()
        return parts

    def _read_dq(self) -> list:
        """Parts of a double-quoted string; ``self.i`` is just past the opening quote."""
        s, n = self.s, self.n
        start = self.i - 1
        parts: list = []
        lit: list[str] = []
        while self.i < n:
            c = s[self.i]
            if c == '"':
                self.i += 1
                if lit or not parts:
                    parts.append(Lit("".join(lit), True))
                return parts
            if c == "\\" and self.i + 1 < n and s[self.i + 1] in '$`"\\\n':
                if s[self.i + 1] != "\n":
                    lit.append(s[self.i + 1])
                self.i += 2
            elif c == "$" or c == "`":
                if lit:
                    parts.append(Lit("".join(lit), True))
                    lit = []
                parts.append(self._read_dollar(quoted=True) if c == "$" else self._read_backtick(quoted=True))
            else:
                lit.append(c)
                self.i += 1
        raise self.fail('the `"` opened here is never closed', start)

    def _read_until_end(self, mode: str) -> list:
        """Parts of a whole string read as a here-document body (``mode="heredoc"``: quotes are literal)
        or as the word of ``${VAR:-word}`` (``mode="arg"``: quotes work, blanks are literal)."""
        s, n = self.s, self.n
        parts: list = []
        lit: list[str] = []
        quoted = mode == "heredoc"

        def flush() -> None:
            if lit:
                parts.append(Lit("".join(lit), quoted))
                lit.clear()

        while self.i < n:
            c = s[self.i]
            if c == "\\" and self.i + 1 < n:
                nxt = s[self.i + 1]
                if nxt == "\n":
                    self.i += 2
                elif mode == "arg" or nxt in "$`\\":
                    flush()
                    parts.append(Lit(nxt, True))
                    self.i += 2
                else:
                    lit.append(c)
                    self.i += 1
            elif c == "$":
                flush()
                parts.append(self._read_dollar(quoted=quoted))
            elif c == "`":
                flush()
                parts.append(self._read_backtick(quoted=quoted))
            elif mode == "arg" and c == "'":
                j = s.find("'", self.i + 1)
                if j < 0:
                    raise self.fail("the `'` opened here is never closed", self.i)
                flush()
                parts.append(Lit(s[self.i + 1 : j], True))
                self.i = j + 1
            elif mode == "arg" and c == '"':
                flush()
                self.i += 1
                parts.extend(self._read_dq())
            else:
                lit.append(c)
                self.i += 1
        flush()
        return parts

    def _read_backtick(self, quoted: bool) -> Sub:
        s, n = self.s, self.n
        start = self.i
        j = self.i + 1
        while j < n and s[j] != "`":
            j += 2 if s[j] == "\\" else 1
        if j >= n:
            raise self.fail("the backquote opened here is never closed", start)
        self.i = j + 1
        return Sub(quoted)

    def _scan_close(self, start: int, open_ch: str, close_ch: str, what: str) -> int:
        """Index of the ``close_ch`` that closes the ``open_ch`` at ``start`` (quotes and escapes skipped)."""
        s, n = self.s, self.n
        depth = 0
        j = start
        while j < n:
            c = s[j]
            if c == "\\":
                j += 2
                continue
            if c == "'" and open_ch == "(":
                k = s.find("'", j + 1)
                if k < 0:
                    break
                j = k + 1
                continue
            if c == '"':
                k = j + 1
                while k < n and s[k] != '"':
                    k += 2 if s[k] == "\\" else 1
                if k >= n:
                    break
                j = k + 1
                continue
            if c == open_ch:
                depth += 1
            elif c == close_ch:
                depth -= 1
                if depth == 0:
                    return j
            j += 1
        raise self.fail(f"the `{what}` opened here is never closed", start)

    def _read_dollar(self, quoted: bool) -> Part:
        s, n = self.s, self.n
        start = self.i
        nxt = s[self.i + 1] if self.i + 1 < n else ""
        if s.startswith("$((", self.i):
            end = self._scan_close(self.i + 1, "(", ")", "$((")
            if s[end - 1] == ")" and end - 1 > self.i + 2:
                inner = s[self.i + 3 : end - 1]
                self.i = end + 1
                return Arith(self.sub(inner, start)._read_until_end(mode="heredoc"), quoted)
            self.i = end + 1
            return Sub(quoted)
        if nxt == "(":
            end = self._scan_close(self.i + 1, "(", ")", "$(")
            self.i = end + 1
            return Sub(quoted)
        if nxt == "{":
            end = self._scan_close(self.i + 1, "{", "}", "${")
            inner = s[self.i + 2 : end]
            self.i = end + 1
            return self._param(inner, quoted, start)
        if nxt == "'" and not quoted:
            return Lit(self._read_ansi_c(), True)
        if nxt == '"' and not quoted:  # $"..." (locale string): the quote is read next, as a plain "..."
            self.i += 1
            return Lit("", False)
        if nxt and (nxt.isalpha() or nxt == "_") and nxt.isascii():
            m = _NAME_RE.match(s, self.i + 1)
            assert m is not None
            self.i = m.end()
            return Param(m.group(0), "$" + m.group(0), quoted)
        if nxt and nxt in "0123456789@*#?$!-":
            self.i += 2
            return Param(nxt, "$" + nxt, quoted)
        self.i += 1
        return Lit("$", quoted)

    def _read_ansi_c(self) -> str:
        s, n = self.s, self.n
        start = self.i
        j = self.i + 2
        out: list[str] = []
        while j < n:
            c = s[j]
            if c == "'":
                self.i = j + 1
                return "".join(out)
            if c == "\\" and j + 1 < n:
                e = s[j + 1]
                if e in _ANSI_ESCAPES:
                    out.append(_ANSI_ESCAPES[e])
                    j += 2
                    continue
                if e == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", s[j + 2 : j + 4]):
                    out.append(chr(int(s[j + 2 : j + 4], 16)))
                    j += 4
                    continue
                out.append(c)
                out.append(e)
                j += 2
                continue
            out.append(c)
            j += 1
        raise self.fail("the `$'` opened here is never closed", start)

    def _param(self, inner: str, quoted: bool, pos: int) -> Param:
        if inner.startswith("#") and len(inner) > 1:
            m = _PARAM_NAME_RE.fullmatch(inner[1:].removesuffix("[@]").removesuffix("[*]"))
            if m:
                return Param(m.group(0), "${" + m.group(0) + "}", quoted, op="len")
        m = _PARAM_NAME_RE.match(inner)
        if m is None:
            return Param("", "${?}", quoted, op="other")
        name = m.group(0)
        rest = inner[m.end() :]
        index = None
        if rest.startswith("["):
            close = rest.find("]")
            if close > 0:
                index = rest[1:close]
                rest = rest[close + 1 :]
        raw = "${" + name + "}"
        if not rest:
            return Param(name, raw, quoted, index=index)
        full = "${" + inner + "}"
        for op in (":-", ":=", ":+", ":?", "-", "=", "+", "?"):
            if rest.startswith(op):
                arg = self.sub(rest[len(op) :], pos)._read_until_end(mode="arg")
                return Param(name, raw, quoted, index=index, op=op, arg=arg)
        for op in ("##", "#", "%%", "%"):
            if rest.startswith(op):
                arg = self.sub(rest[len(op) :], pos)._read_until_end(mode="arg")
                return Param(name, full, quoted, index=index, op=op, arg=arg)
        for op in ("//", "/"):
            if rest.startswith(op):
                body = rest[len(op) :]
                cut = re.search(r"(?<!\\)/", body)
                pattern, replacement = (body[: cut.start()], body[cut.end() :]) if cut else (body, "")
                arg = self.sub(pattern, pos)._read_until_end(mode="arg")
                arg2 = self.sub(replacement, pos)._read_until_end(mode="arg")
                return Param(name, full, quoted, index=index, op=op, arg=arg, arg2=arg2)
        for op in (",,", "^^", ",", "^"):
            if rest.startswith(op):
                return Param(name, full, quoted, index=index, op=op)
        if rest.startswith(":"):
            return Param(name, full, quoted, index=index, op=":", text=rest[1:])
        return Param(name, full, quoted, index=index, op="other")


def lex(text: str, *, line: int = 1, depth: int = 0) -> list[Stmt]:
    """The statements of ``text``; ``ParseError`` on unbalanced quotes or substitutions."""
    return _Lexer(text, line=line, depth=depth).statements()


# --------------------------------------------------------------------------------------------- interpreter


@dataclass
class Command:
    argv: list[str]
    line: int
    prefix: list[str] = field(default_factory=list)  # argv of the launcher around a ``bash -c`` string


@dataclass
class Budget:
    chars: int = 0
    commands: int = 0

    def spend(self, n: int) -> None:
        self.chars += n
        if self.chars > MAX_EXPANSION_CHARS:
            raise ParseError(
                f"variable expansion produces more than {MAX_EXPANSION_CHARS} characters",
                code="too_large",
                hint="a variable that doubles itself (`A=$A$A`) is the usual cause",
            )


def _literal(word: list) -> str | None:
    """The text of a word made only of unquoted literal parts, else None."""
    if len(word) == 1 and isinstance(word[0], Lit) and not word[0].quoted:
        return word[0].text
    return None


def is_marker(text: str) -> bool:
    return "$" in text or "`" in text


class Shell:
    """Walks statements in order and records variables, command lines and files written by here-documents."""

    def __init__(self, env: dict | None = None, *, budget: Budget | None = None, level: int = 0) -> None:
        self.env: dict[str, str | list[str]] = dict(env or {})
        self.budget = budget or Budget()
        self.level = level
        self.commands: list[Command] = []
        self.files: dict[str, str] = {}
        self.sourced: list[str] = []
        self.frames: list[list] = []  # open if-blocks: [branch taken (True/False/None), some branch taken, some unknown]
        self.status: bool | None = True  # outcome of the last statement, for `&&` and `||`
        self.notes: list[str] = []
        self._line = 0

    # -- public
    def run_text(self, text: str, *, line: int = 1) -> None:
        self.run(lex(text, line=line, depth=self.level))

    def run(self, stmts: list[Stmt]) -> None:
        for stmt in stmts:
            self._statement(stmt)

    # -- statements
    def _active(self) -> bool:
        return all(frame[0] is not False for frame in self.frames)

    def _control(self, words: list) -> list:
        """Apply the reserved words at the head of a statement (if/elif/else/fi and friends); return the rest."""
        while words:
            kw = _literal(words[0])
            if kw == "if":
                words = words[1:]
                cond = self._test(words) if self._active() else False
                self.frames.append([cond, cond is True, cond is None])
                return []
            if kw == "elif":
                words = words[1:]
                if self.frames:
                    frame = self.frames[-1]
                    outer = all(f[0] is not False for f in self.frames[:-1])
                    cond = False if frame[1] or not outer else self._test(words)
                    frame[0] = cond
                    frame[1] = frame[1] or cond is True
                    frame[2] = frame[2] or cond is None
                return []
            if kw == "else":
                if self.frames:
                    frame = self.frames[-1]
                    frame[0] = False if frame[1] else (None if frame[2] else True)
                words = words[1:]
            elif kw == "fi":
                if self.frames:
                    self.frames.pop()
                words = words[1:]
            elif kw in _RESERVED_PREFIX:
                words = words[1:]
            else:
                break
        return words

    def _test(self, words: list) -> bool | None:
        """The truth of a ``[ ... ]`` / ``[[ ... ]]`` / ``test`` / ``true`` / ``false`` condition, None if unknown."""
        argv = self.expand_fields(words)
        negate = False
        while argv and argv[0] == "!":
            negate = not negate
            argv = argv[1:]
        if not argv:
            return None
        head = argv[0]
        if head in ("true", ":"):
            result: bool | None = True
        elif head == "false":
            result = False
        elif head in ("[", "[[", "test"):
            args = argv[1:]
            if head != "test" and args and args[-1] == ("]" if head == "[" else "]]"):
                args = args[:-1]
            while args and args[0] == "!":
                negate = not negate
                args = args[1:]
            result = _test_args(args)
        else:
            return None
        if result is None:
            if len(self.notes) < 3:
                unknown = next((a for a in args if is_marker(a)), None)
                why = f"depends on `{unknown}`, which the file does not set" if unknown else "cannot be decided"
                self.notes.append(f"line {self._line}: the condition {why}; the lines it guards were read")
            return None
        return not result if negate else result

    def _statement(self, stmt: Stmt) -> None:
        self._line = stmt.line
        if stmt.sep == "&&" and self.status is False:
            return
        if stmt.sep == "||" and self.status is True:
            return
        words = self._control(list(stmt.words))
        if not self._active() or not words:
            return
        first = _literal(words[0])
        if first in ("[", "[[", "test"):
            self.status = self._test(words)
            return
        self.status = True
        if first in _SKIP_STATEMENT:
            return
        if first in _DECLARE:
            for word in words[1:]:
                lit = _literal(word)
                if lit is not None and lit.startswith("-"):
                    continue
                if _assignment(word):
                    self._assign(word, self.env)
            return
        assigns = []
        while words and _assignment(words[0]):
            assigns.append(words.pop(0))
        if not words:
            for word in assigns:
                self._assign(word, self.env)
            if stmt.heredocs or stmt.redirects:
                self._files(stmt, [])
            return
        argv = self.expand_fields(words)
        if not argv:
            return
        head = argv[0].rsplit("/", 1)[-1]
        if head == "unset":
            for name in argv[1:]:
                self.env.pop(name, None)
            return
        if head in ("source", "."):
            self.sourced.extend(argv[1:2])
            return
        if head in ("true", ":", "false"):
            self.status = head != "false"
            return
        child_env = dict(self.env)
        for word in assigns:
            self._assign(word, child_env)
        self._files(stmt, argv)
        self.budget.commands += 1
        if self.budget.commands > MAX_COMMANDS:
            raise ParseError(f"the script has more than {MAX_COMMANDS} commands", code="too_large")
        self.commands.append(Command(argv, stmt.line))
        self._nested(argv, child_env, stmt.line)

    def _files(self, stmt: Stmt, argv: list[str]) -> None:
        targets = [self.expand_string(w) for op, w in stmt.redirects if op == ">"]
        if not targets:
            return
        if stmt.heredocs:
            body = self.expand_string(stmt.heredocs[-1].body)
        elif argv and argv[0] in ("echo", "printf"):
            body = " ".join(a for a in argv[1:] if not (argv[0] == "echo" and a in ("-e", "-n", "-E")))
        else:
            return
        for target in targets:
            self.files[target] = body

    def _nested(self, argv: list[str], env: dict, line: int) -> None:
        script = None
        prefix: list[str] = []
        if argv[0] == "eval":
            script = " ".join(argv[1:])
        else:
            for k, tok in enumerate(argv[:-1]):
                if tok.rsplit("/", 1)[-1] in SHELLS:
                    j = k + 1
                    while j < len(argv) - 1 and argv[j].startswith("-") and argv[j] != "-c":
                        j += 1
                    if argv[j] == "-c" and j + 1 < len(argv):
                        script = argv[j + 1]
                        prefix = argv[:k]
                    break
        if script is None or not script.strip():
            return
        if self.level + 1 > MAX_SHELL_LEVELS:
            raise ParseError(
                f"line {line}: `bash -c`/`eval` strings nested more than {MAX_SHELL_LEVELS} levels deep",
                code="too_deep",
            )
        child = Shell(env, budget=self.budget, level=self.level + 1)
        child.run_text(script, line=line)
        for cmd in child.commands:
            cmd.prefix = prefix + cmd.prefix
            cmd.line = line
        self.commands.extend(child.commands)
        self.files.update(child.files)
        self.notes.extend(n for n in child.notes if n not in self.notes)

    def _assign(self, word: list, env: dict) -> None:
        head = word[0]
        assert isinstance(head, Lit)
        m = _ASSIGN_RE.match(head.text)
        assert m is not None
        name, index, append = m.group(1), m.group(2), m.group(3) == "+"
        rest = [Lit(head.text[m.end() :], False)] + word[1:] if head.text[m.end() :] else word[1:]
        if len(rest) == 1 and isinstance(rest[0], ArrayLit):
            values: list[str] = []
            for element in rest[0].words:
                values.extend(self.expand_fields([element]))
            old = env.get(name)
            if append:
                base = old if isinstance(old, list) else ([old] if isinstance(old, str) else [])
                values = base + values
            env[name] = values
            return
        value = self.expand_string(rest)
        if index is not None:
            old = env.get(name)
            arr = list(old) if isinstance(old, list) else ([old] if isinstance(old, str) else [])
            key = index[1:-1]
            if key.isdigit() and int(key) < 10_000:
                pos = int(key)
                arr.extend([""] * (pos + 1 - len(arr)))
                arr[pos] = arr[pos] + value if append else value
                env[name] = arr
            return
        if append:
            old = env.get(name)
            value = (old if isinstance(old, str) else " ".join(old) if isinstance(old, list) else "") + value
        self.budget.spend(len(value))
        env[name] = value

    # -- expansion
    def _lookup(self, p: Param) -> str | list[str] | None:
        value = self.env.get(p.name)
        if value is None:
            return None
        if p.index is None:
            return value[0] if isinstance(value, list) and value else ("" if isinstance(value, list) else value)
        if p.index in ("@", "*"):
            return list(value) if isinstance(value, list) else [value]
        if p.index.isdigit() and len(p.index) < 6:
            pos = int(p.index)
            if isinstance(value, list):
                return value[pos] if pos < len(value) else None
            return value if pos == 0 else None
        return None

    def _param(self, p: Param) -> str | list[str]:
        if p.op == "other" or not p.name:
            return p.raw
        value = self._lookup(p)
        if p.op == "len":
            if value is None:
                return p.raw
            return str(len(value))
        if p.op is None:
            return p.raw if value is None else value
        empty = value is None or value == "" or value == []
        unset = value is None
        op = p.op
        use_arg = (op in (":-", ":=") and empty) or (op in ("-", "=") and unset)
        if use_arg:
            arg = self.expand_string(p.arg or [])
            if op in (":=", "=") and _NAME_RE.fullmatch(p.name) and p.index is None:
                self.env[p.name] = arg
            return arg
        if op in (":-", ":=", "-", "="):
            return value
        if op in (":+", "+"):
            if (op == ":+" and not empty) or (op == "+" and not unset):
                return self.expand_string(p.arg or [])
            return ""
        if op in (":?", "?"):
            if (op == ":?" and empty) or (op == "?" and unset):
                return p.raw
            return p.raw if value is None else value
        if value is None:
            return p.raw
        if isinstance(value, list):
            out = [self._transform(p, item) for item in value]
            return p.raw if any(item is None for item in out) else [item for item in out if item is not None]
        result = self._transform(p, value)
        return p.raw if result is None else result

    def _transform(self, p: Param, value: str) -> str | None:
        """``value`` under a pattern, case or substring operator; None when it cannot be evaluated."""
        op = p.op
        if op in (",,", ","):
            return value.lower() if op == ",," else value[:1].lower() + value[1:]
        if op in ("^^", "^"):
            return value.upper() if op == "^^" else value[:1].upper() + value[1:]
        if op == ":":
            offset_text, _, length_text = p.text.partition(":")
            offset = arith(offset_text, self.env) if offset_text.strip() else "0"
            length = arith(length_text, self.env) if length_text.strip() else str(len(value))
            if is_marker(offset) or is_marker(length):
                return None
            start, count = int(offset), int(length)
            start = max(0, len(value) + start) if start < 0 else start
            end = len(value) + count if count < 0 else start + count
            return value[start:end] if end >= start else None
        if len(value) > _PATTERN_LIMIT:
            return None
        regex = _glob(self.expand_string(p.arg or []))
        if regex is None:
            return None
        n = len(value)
        if op in ("#", "##"):
            cuts = range(n + 1) if op == "#" else range(n, -1, -1)
            return next((value[i:] for i in cuts if regex.fullmatch(value, 0, i)), value)
        if op in ("%", "%%"):
            cuts = range(n, -1, -1) if op == "%" else range(n + 1)
            return next((value[:i] for i in cuts if regex.fullmatch(value, i)), value)
        if op in ("/", "//"):
            replacement = self.expand_string(p.arg2 or [])
            out, i, done = [], 0, False
            while i <= n:
                match = None if done else next(
                    (j for j in range(n, i, -1) if regex.fullmatch(value, i, j)), None)
                if match is not None:
                    out.append(replacement)
                    i = match
                    done = op == "/"
                    continue
                if i < n:
                    out.append(value[i])
                i += 1
            return "".join(out)
        return None

    def _part_value(self, part: Part) -> str | list[str]:
        if isinstance(part, Lit):
            return part.text
        if isinstance(part, Param):
            return self._param(part)
        if isinstance(part, Arith):
            return arith(self.expand_string(part.parts), self.env)
        if isinstance(part, Sub):
            return "$(...)"
        return ""

    def expand_string(self, parts: list) -> str:
        """A word expanded without field splitting (assignment values, redirect targets, bodies)."""
        out: list[str] = []
        for part in parts:
            value = self._part_value(part)
            out.append(" ".join(value) if isinstance(value, list) else value)
        text = "".join(out)
        self.budget.spend(len(text))
        return text

    def expand_fields(self, words: list) -> list[str]:
        """Words expanded to an argument vector: unquoted expansions are split into fields."""
        fields: list[str] = []
        for word in words:
            cur: str | None = None
            for part in word:
                value = self._part_value(part)
                # unquoted literal text holds no blanks (the lexer split there), so it is never split again
                quoted = True if isinstance(part, Lit) else bool(getattr(part, "quoted", True))
                if isinstance(value, list):
                    items = value
                    if not items:
                        continue
                    for k, item in enumerate(items):
                        if quoted:
                            if k == 0:
                                cur = (cur or "") + item
                            else:
                                fields.append(cur or "")
                                cur = item
                        else:
                            if k > 0 and cur is not None:
                                fields.append(cur)
                                cur = None
                            cur = _split_into(fields, cur, item)
                    continue
                if quoted:
                    cur = (cur or "") + value
                else:
                    cur = _split_into(fields, cur, value)
            if cur is not None:
                fields.append(cur)
        self.budget.spend(sum(len(f) for f in fields))
        return fields


def _split_into(fields: list[str], cur: str | None, text: str) -> str | None:
    """Append the fields of an unquoted expansion ``text`` to ``fields``; return the field left open."""
    if not text:
        return cur
    try:
        pieces = shlex.split(text)
    except ValueError:
        pieces = text.split()
    if not pieces:
        if cur is not None:
            fields.append(cur)
        return None
    if text[0] in " \t\n" and cur is not None:
        fields.append(cur)
        cur = None
    cur = (cur or "") + pieces[0]
    for piece in pieces[1:]:
        fields.append(cur)
        cur = piece
    if text[-1] in " \t\n":
        fields.append(cur)
        cur = None
    return cur


#: Longest value that a ``${VAR#pattern}``-style operator is evaluated on (the matching is quadratic).
_PATTERN_LIMIT = 1024


def _glob(pattern: str) -> re.Pattern | None:
    """A regex for a shell pattern with at most one ``*`` (plus ``?`` and literals); None for others."""
    if pattern.count("*") > 1 or "[" in pattern or len(pattern) > 256:
        return None
    return re.compile("".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern), re.S)


def _test_args(args: list[str]) -> bool | None:
    """``test`` with one to three operands; None when unknown (a marker) or unsupported."""
    if any(is_marker(a) for a in args):
        return None
    if not args:
        return False
    if len(args) == 1:
        return args[0] != ""
    if len(args) == 2:
        if args[0] == "-n":
            return args[1] != ""
        if args[0] == "-z":
            return args[1] == ""
        return None
    if len(args) == 3:
        a, op, b = args
        if op in ("=", "=="):
            return a == b
        if op == "!=":
            return a != b
        if op in ("-eq", "-ne", "-lt", "-le", "-gt", "-ge"):
            if not (re.fullmatch(r"-?[0-9]{1,18}", a) and re.fullmatch(r"-?[0-9]{1,18}", b)):
                return None
            x, y = int(a), int(b)
            return {"-eq": x == y, "-ne": x != y, "-lt": x < y, "-le": x <= y, "-gt": x > y, "-ge": x >= y}[op]
    return None


def _assignment(word: list) -> bool:
    if not word or not isinstance(word[0], Lit) or word[0].quoted:
        return False
    return _ASSIGN_RE.match(word[0].text) is not None


# --------------------------------------------------------------------------------------------- arithmetic

_ARITH_TOKEN = re.compile(r"\s*(?:(0[xX][0-9A-Fa-f]+|[0-9]+)|([A-Za-z_][A-Za-z0-9_]*)|(\*\*|<<|>>|[-+*/%()&|^~]))")
_ARITH_LIMIT = 2**63


class _ArithError(Exception):
    """Internal: the expression cannot be evaluated; the caller leaves a marker."""

    def __init__(self, marker: str = "$((...))") -> None:
        super().__init__(marker)
        self.marker = marker


def arith(expr: str, env: dict, depth: int = 0) -> str:
    """Evaluate bash integer arithmetic ``expr`` (``+ - * / % **``, shifts, bit operators, parentheses).

    Unknown variables or unsupported syntax give a marker instead of a number.
    """
    try:
        return str(_eval_arith(expr, env, depth))
    except _ArithError as exc:
        return exc.marker
    except RecursionError:
        return "$((...))"


def _eval_arith(expr: str, env: dict, depth: int) -> int:
    if depth > 8:
        raise _ArithError()
    marker = re.search(r"\$\{?[A-Za-z_][A-Za-z0-9_]*|\$\(|\$[0-9@*#?$!-]", expr)
    if marker:
        raise _ArithError(marker.group(0).replace("${", "$"))
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = expr.strip()
    while pos < len(text):
        m = _ARITH_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _ArithError()
        pos = m.end()
        if m.group(1) is not None:
            tokens.append(("num", m.group(1)))
        elif m.group(2) is not None:
            tokens.append(("name", m.group(2)))
        else:
            tokens.append(("op", m.group(3)))
    if not tokens:
        return 0
    if len(tokens) > 2000:
        raise _ArithError()
    parser = _ArithParser(tokens, env, depth)
    value = parser.expr(0)
    if parser.k != len(tokens):
        raise _ArithError()
    return value


class _ArithParser:
    _BINARY = {"|": 1, "^": 2, "&": 3, "<<": 4, ">>": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6, "**": 7}

    def __init__(self, tokens: list[tuple[str, str]], env: dict, depth: int) -> None:
        self.t = tokens
        self.k = 0
        self.env = env
        self.depth = depth
        self.nest = 0

    def _check(self, value: int) -> int:
        if not -_ARITH_LIMIT <= value < _ARITH_LIMIT:
            raise _ArithError()
        return value

    def expr(self, min_prec: int) -> int:
        left = self.unary()
        while self.k < len(self.t):
            kind, tok = self.t[self.k]
            if kind != "op" or tok not in self._BINARY or self._BINARY[tok] < min_prec:
                break
            prec = self._BINARY[tok]
            self.k += 1
            right = self.expr(prec if tok == "**" else prec + 1)
            left = self._check(self._apply(tok, left, right))
        return left

    def _apply(self, op: str, a: int, b: int) -> int:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op in ("/", "%"):
            if b == 0:
                raise _ArithError()
            q = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
            return q if op == "/" else a - q * b
        if op == "**":
            if b < 0 or b > 64 and abs(a) > 1:
                raise _ArithError()
            return a**b
        if op in ("<<", ">>"):
            if b < 0 or b > 63:
                raise _ArithError()
            return a << b if op == "<<" else a >> b
        if op == "&":
            return a & b
        if op == "|":
            return a | b
        return a ^ b

    def unary(self) -> int:
        if self.k >= len(self.t):
            raise _ArithError()
        kind, tok = self.t[self.k]
        self.k += 1
        if kind == "op" and tok in ("-", "+", "~"):
            self.nest += 1
            if self.nest > 64:
                raise _ArithError()
            value = self.unary()
            self.nest -= 1
            return self._check(-value if tok == "-" else ~value if tok == "~" else value)
        if kind == "op" and tok == "(":
            self.nest += 1
            if self.nest > 64:
                raise _ArithError()
            value = self.expr(0)
            self.nest -= 1
            if self.k >= len(self.t) or self.t[self.k] != ("op", ")"):
                raise _ArithError()
            self.k += 1
            return value
        if kind == "num":
            if tok[:2] in ("0x", "0X"):
                return self._check(int(tok, 16)) if len(tok) <= 18 else self._fail()
            if len(tok) > 19:
                raise _ArithError()
            if len(tok) > 1 and tok[0] == "0":
                if any(ch in "89" for ch in tok):
                    raise _ArithError()
                return self._check(int(tok, 8))
            return self._check(int(tok))
        if kind == "name":
            value = self.env.get(tok)
            if value is None:
                raise _ArithError("$" + tok)
            if isinstance(value, list):
                value = value[0] if value else "0"
            return self._check(_eval_arith(value, self.env, self.depth + 1)) if value.strip() else 0
        raise _ArithError()

    def _fail(self) -> int:
        raise _ArithError()
