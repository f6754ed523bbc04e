"""The argument block that Megatron-LM (and Megatron-DeepSpeed) prints at the top of every training log.

``megatron/training/arguments.py`` ends ``validate_args`` with ``_print_args("arguments", args)``, which
prints, on rank 0::

    ------------------------ arguments ------------------------
      accumulate_allreduce_grads_in_fp32 .............. False
      num_layers ...................................... 32
    -------------------- end of arguments ---------------------

one line per argument: two spaces, the argparse destination (the flag with ``_`` for ``-``), a space, dots
padding the name to 48 characters (none when it is longer; older versions pad to 32 and print no end line),
a space and ``str(value)`` (``None``, ``True``, a number, a list such as ``[0.9, 0.95]``, a string). The
values are turned back into Megatron flags and read by :func:`._megatron.read_args`, so a log and the
script that started it give the same configuration. Everything outside the block is ignored.
"""

from __future__ import annotations

import re

from ..errors import ParseError
from ._common import MAX_BANNER_CHARS, Result, banner_lines, short
from . import _megatron

_HEADER = re.compile(r"(.*?)-{4,} ?arguments ?-{4,}[ \t]*")
_END = re.compile(r".*?-{4,} ?end of arguments ?-{4,}[ \t]*")
_LINE = re.compile(r"\s+([A-Za-z_][A-Za-z0-9_]*) (?:\.+ ?| )(.*)")

#: Destinations whose printed value is the inverse of a Megatron switch (``store_false`` arguments).
_INVERTED = {"add_bias_linear": "disable-bias-linear", "add_position_embedding": "no-position-embedding"}
#: Destinations named differently from their flag (``--fp8-format`` stores into ``args.fp8``).
_RENAMED = {"fp8": "fp8-format"}


def looks_like_log(text: str) -> bool:
    """Whether ``text`` holds a printed argument block (a header line followed by ``name ... value`` lines)."""
    if "arguments" not in text:
        return False
    for _, stop, prefix in banner_lines(text):
        following = text[stop + 1 : stop + 400].split("\n", 2)[:2]
        if any(_LINE.fullmatch(_strip(line, prefix)) for line in following):
            return True
    return False


def _banner(line: str, pattern: re.Pattern) -> re.Match | None:
    """``pattern`` matched on a short line only (long lines would make the backtracking quadratic)."""
    line = line.rstrip()
    return pattern.fullmatch(line) if len(line) <= MAX_BANNER_CHARS and "arguments" in line else None


def _strip(line: str, prefix: str) -> str:
    """``line`` without the per-line prefix that the header line carries too (``0: `` from ``srun --label``)."""
    line = line.rstrip()
    if prefix and line.startswith(prefix):
        return line[len(prefix):]
    if prefix.strip() and len(line) > len(prefix) and line[len(prefix)] == " ":
        return line[len(prefix):]  # a prefix of the same width that changes per line, e.g. a timestamp
    return line


def _blocks(text: str) -> list[tuple[int, dict[str, str], int, bool]]:
    """Every argument block: (first line number, {name: printed value}, skipped lines, whether it ended)."""
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        header = _banner(lines[i], _HEADER)
        if header is None or "end of arguments" in lines[i]:
            i += 1
            continue
        prefix = header.group(1)
        start = i + 1
        values: dict[str, str] = {}
        skipped = 0
        ended = False
        i += 1
        while i < len(lines):
            raw = lines[i]
            if _banner(raw, _END):
                ended = True
                i += 1
                break
            if _banner(raw, _HEADER) and "end of arguments" not in raw:
                break  # a new block began before this one ended (a restart)
            match = _LINE.fullmatch(_strip(raw, prefix))
            if match is None:
                if not ended and not values and not raw.strip():
                    i += 1
                    continue
                if any(_LINE.fullmatch(_strip(x, prefix)) for x in lines[i + 1 : i + 3]):
                    skipped += 1  # another rank's output interleaved; the block goes on
                    i += 1
                    continue
                break  # the block ends without an end line (older Megatron) or the log was cut
            values[match.group(1)] = match.group(2).strip()
            i += 1
        if values:
            out.append((start, values, skipped, ended))
    return out


def _items(value: str) -> list[str]:
    """The elements of a printed Python list (``['192', '16', '9765625']`` or ``[0.9, 0.95]``)."""
    inner = value[1:-1].strip()
    if not inner:
        return []
    return [item.strip().strip("'\"") for item in inner.split(",")]


def to_argv(values: dict[str, str], res: Result) -> list[str]:
    """The Megatron flags that give the printed values; arguments toposcan does not read are counted."""
    argv: list[str] = []
    unused = 0
    for name, value in values.items():
        flag = _RENAMED.get(name, name.replace("_", "-"))
        if name in _INVERTED:
            if value == "False":
                argv.append("--" + _INVERTED[name])
            continue
        if flag not in _megatron.KNOWN:
            unused += 1
            continue
        if value == "None":
            continue
        if flag in _megatron.BOOL_ARGS:
            if value == "True":
                argv.append("--" + flag)
            elif value != "False":
                res.note(f"`{name}` is printed as `{short(value)}`, not True or False; not read")
            continue
        if value.startswith("[") and value.endswith("]"):
            items = _items(value)
            if items:
                argv.append("--" + flag)
                argv.extend(items)
            continue
        argv.extend(["--" + flag, value])
    if unused:
        res.note(f"{unused} other arguments in the block are not used by toposcan")
    return argv


def parse(text: str, filename: str | None, base_dir: str | None) -> Result:
    """Read the printed argument block of a Megatron training log (the last one, if the log holds several)."""
    blocks = _blocks(text)
    if not blocks:
        raise ParseError(
            "the log has an `arguments` header but no `name ..... value` lines under it",
            code="no_training_command",
        )
    start, values, skipped, ended = blocks[-1]
    res = Result(kind="megatron")
    if len(blocks) > 1:
        res.note(f"{len(blocks)} argument blocks in the log (restarts); the last, from line {start}, is read")
    res.note(f"Megatron's printed argument block from line {start} ({len(values)} arguments)")
    if skipped:
        res.note(f"{skipped} lines inside the block are not `name ... value` lines and were skipped")
    if not ended:
        res.note("the block has no `end of arguments` line (an older Megatron, or a cut log)")
    argv = to_argv(values, res)
    _megatron.read_args(argv, res, files={}, base_dir=base_dir, note_defaults=False)
    if res.framework != "megatron-deepspeed" and values.get("deepspeed") == "True":
        res.framework = "megatron-deepspeed"
    dp = values.get("data_parallel_size")
    if dp is not None and re.fullmatch(r"[0-9]{1,9}", dp) and int(dp) > 0:
        res.spec["dp"] = int(dp)
        res.note(f"dp {dp} from the log's data_parallel_size")
    world = values.get("world_size")
    if world is not None and re.fullmatch(r"[0-9]{1,9}", world) and int(world) > 0:
        res.world_size = int(world)
        res.note(f"the run used {world} GPUs (world_size); give --nodes, or --gpus-per-node to derive them")
    if "dp" in res.spec and "gbs" not in res.spec and "mbs" in res.spec:
        res.spec["gbs"] = res.spec["mbs"] * res.spec["dp"]
        res.note(f"gbs {res.spec['gbs']} = mbs x dp (the log prints no global_batch_size)")
    return res
