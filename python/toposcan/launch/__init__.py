"""Launch-config parsers for ``topo check``: Megatron launch scripts, argument lists (one line or several)
and the argument block printed at the top of a Megatron training log, DeepSpeed JSON configs, llm-foundry
YAMLs, NeMo 2 / Megatron-Bridge recipe overrides and torchtitan TOML job configs, each read into the
keyword arguments of ``toposcan.evaluate``.

>>> cfg = parse_args("--num-layers 24 --hidden-size 1024 --num-attention-heads 16 --micro-batch-size 8 --lr 1e-4")
>>> cfg.kind, cfg.spec["layers"], cfg.spec["mbs"], cfg.ignored
('megatron', 24, 8, ['--lr 1e-4'])

Every failure on bad input is a :class:`toposcan.errors.ParseError` with a one-line message and a stable
``code``; no other exception type leaves these functions.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from ..errors import ParseError
from . import _deepspeed, _foundry, _megatron, _megatron_log, _nemo, _torchtitan
from ._common import MAX_INPUT_CHARS, Result, check_text, read_launch_file, short

__all__ = ["LaunchConfig", "detect_kind", "parse_args", "parse_file", "parse_launch", "read_launch_file"]

KINDS = ("megatron", "deepspeed", "foundry", "nemo", "torchtitan")


@dataclass
class LaunchConfig:
    kind: str                      # one of KINDS ("megatron" also for a log's printed argument block)
    spec: dict                     # keyword arguments for toposcan.evaluate (names below)
    cluster: dict                  # any of: nodes, gpus_per_node, gpu (only when the file states them)
    ignored: list[str] = field(default_factory=list)   # arguments/keys seen but not used, e.g. "--lr 6e-5"
    notes: list[str] = field(default_factory=list)     # what was inferred, e.g. "gbs from train_batch_size"
    framework: str = ""            # "megatron-lm" / "megatron-deepspeed" / "nemo-2" / "megatron-bridge" / "torchtitan"
    #: Catalog model the file names (a torchtitan flavor such as llama3 8B, a NeMo recipe such as llama3_8b);
    #: None when it names none or one the catalog lacks. ``topo check`` uses it when ``--model`` is not given.
    model: str | None = None
    #: ``--max-position-embeddings`` (or the override of the same name), when the file gives it.
    max_position_embeddings: int | None = None
    #: GPUs in the run where the file states only the total (a log's ``world_size``).
    world_size: int | None = None
    #: Gate findings the file alone shows, each a dict with ``code``, ``status`` ("fail" / "warn"),
    #: ``message`` and ``fix`` (the fields of ``toposcan.check.Check``), e.g. ``seq_len_exceeds_max_positions``.
    findings: list[dict] = field(default_factory=list)
    #: spec keys filled with the framework's defaults because the file is silent on them (with
    #: ``--model`` the catalog's architecture replaces these without a finding)
    defaulted: set[str] = field(default_factory=set)


_MEGATRON_MARKERS = re.compile(
    r"--(?:num-layers|tensor-model-parallel-size|pipeline-model-parallel-size|num-attention-heads|hidden-size|"
    r"micro-batch-size|global-batch-size)\b|\bpretrain_\w+\.py\b"
)
_FOUNDRY_MARKERS = re.compile(r"(?:^|[\s{,])(?:d_model|n_layers|n_heads|global_train_batch_size|fsdp_config)\s*:", re.M)
_TOML_MARKERS = re.compile(r"^[ \t]*\[(?:parallelism|training|activation_checkpoint)\][ \t]*(?:#.*)?$", re.M)
_SHELL_SUFFIXES = (".sh", ".bash", ".slurm", ".sbatch", ".job")


def _what(filename: str | None) -> str:
    return f"`{short(filename)}`" if filename else "the launch config"


def _kind(text: str, filename: str | None) -> str:
    """The parser for ``text``: a public kind, or "megatron-log" for a log's printed argument block."""
    what = _what(filename)
    name = (filename or "").lower()
    head = text.lstrip()
    if _megatron_log.looks_like_log(text):
        return "megatron-log"
    if name.endswith(".toml") or (_TOML_MARKERS.search(text) and not name.endswith((".yaml", ".yml", ".json"))):
        try:
            doc = _torchtitan.load_toml(text, what)
        except ParseError:
            if name.endswith(".toml"):
                raise
            doc = None
        if doc is not None and _torchtitan.looks_like_torchtitan(doc):
            return "torchtitan"
        if name.endswith(".toml"):
            raise ParseError(
                f"{what} is TOML but not a torchtitan job config (no `[parallelism]` or `[training]` table)",
                code="unknown_format",
            )
    if head.startswith(("{", "[")) or name.endswith(".json"):
        json_error: ParseError | None = None
        try:
            doc, _ = _deepspeed.load_json(text, what)
        except ParseError as exc:
            doc, json_error = None, exc
        if doc is not None:
            if _deepspeed.looks_like_deepspeed(doc):
                return "deepspeed"
            if name.endswith(".json") or not _FOUNDRY_MARKERS.search(text):
                raise ParseError(
                    f"{what} is JSON but not a DeepSpeed config (none of zero_optimization, train_batch_size, "
                    "train_micro_batch_size_per_gpu, gradient_accumulation_steps)",
                    code="unknown_format",
                )
        elif json_error is not None and (
            name.endswith(".json") or re.search(r'"(?:zero_optimization|train_batch_size|train_micro_batch_size_per_gpu)"', text)
        ):
            raise json_error
    yaml_named = name.endswith((".yaml", ".yml"))
    yaml_error: ParseError | None = None
    if yaml_named or (_FOUNDRY_MARKERS.search(text) and not name.endswith(_SHELL_SUFFIXES)):
        try:
            doc = _foundry.load_yaml(text, what)
        except ParseError as exc:
            if yaml_named:
                raise
            doc, yaml_error = None, exc
        if doc is not None and _foundry.looks_like_foundry(doc):
            return "foundry"
        if yaml_named:
            raise ParseError(
                f"{what} is YAML but not an llm-foundry config (no `model:` with d_model or n_layers)",
                code="unknown_format",
            )
    shell = name.endswith(_SHELL_SUFFIXES) or text.startswith("#!")
    if not shell and not _MEGATRON_MARKERS.search(text) and _nemo.looks_like_overrides(text):
        return "nemo"
    if _MEGATRON_MARKERS.search(text) or shell:
        return "megatron"
    if yaml_error is not None:  # it has llm-foundry keys: the YAML problem is the useful message
        raise yaml_error
    raise ParseError(
        f"cannot tell what {what} is: not a Megatron launch script, a DeepSpeed JSON config or an llm-foundry YAML",
        code="unknown_format",
        hint="a Megatron script names pretrain_gpt.py or --num-layers; a NeMo recipe override looks like "
             "`trainer.strategy.tensor_model_parallel_size=8`; a torchtitan config has a `[parallelism]` table",
    )


def _guard(func, *args):
    """Run a parser; any exception other than ParseError becomes one (``code="internal_error"``)."""
    try:
        return func(*args)
    except ParseError:
        raise
    except RecursionError:
        raise ParseError("the input is nested too deeply to read", code="too_deep") from None
    except MemoryError:
        raise ParseError("the input is too large to read", code="too_large") from None
    except Exception as exc:  # noqa: BLE001 - the contract is "ParseError or a result", never a traceback
        raise ParseError(
            f"could not read the launch config ({type(exc).__name__}: {short(str(exc), 80)})",
            code="internal_error",
            hint="this is a toposcan bug; please report it with the file",
        ) from exc


def detect_kind(text: str, filename: str | None = None) -> str:
    """The kind of launch config ``text`` holds: one of :data:`KINDS` (a training log whose top holds
    Megatron's printed argument block is ``"megatron"``).

    Told from the content (the file name only breaks ties). Raises ``ParseError(code="unknown_format")``
    when it is none of them, and the matching parse error when it is a malformed JSON, YAML or TOML file.
    """
    text = _guard(check_text, text, _what(filename))
    kind = _guard(_kind, text, filename)
    return "megatron" if kind == "megatron-log" else kind


def _to_config(res: Result) -> LaunchConfig:
    return LaunchConfig(kind=res.kind, spec=res.spec, cluster=res.cluster, ignored=res.ignored, notes=res.notes,
                        framework=res.framework, model=res.model, max_position_embeddings=res.max_position_embeddings,
                        world_size=res.world_size, findings=res.findings, defaulted=set(res.defaulted))


def _parse(text: str, filename: str | None, base_dir: str | None) -> Result:
    text = check_text(text, _what(filename))
    kind = _kind(text, filename)
    try:
        if kind == "deepspeed":
            return _deepspeed.parse(text, filename)
        if kind == "foundry":
            return _foundry.parse(text, filename)
        if kind == "megatron-log":
            return _megatron_log.parse(text, filename, base_dir)
        if kind == "torchtitan":
            return _torchtitan.parse(text, filename)
        if kind == "nemo":
            return _nemo.parse_text(text)
        return _megatron.parse_script(text, filename, base_dir)
    except ParseError as exc:
        what = _what(filename)
        if filename is None or exc.message.startswith(what):
            raise
        joiner = " " if exc.message.startswith("line ") else ": "
        raise ParseError(f"{what}{joiner}{exc.message}", code=exc.code, hint=exc.hint) from None


def parse_launch(text: str, filename: str | None = None, *, base_dir: str | None = None) -> LaunchConfig:
    """Read a launch config: a Megatron launch script or argument file, a training log with Megatron's
    printed argument block, a DeepSpeed JSON config, an llm-foundry YAML, NeMo 2 / Megatron-Bridge recipe
    overrides or a torchtitan TOML job config. To read a file from disk, use :func:`parse_file` (or
    :func:`read_launch_file` first): it refuses devices and FIFOs and reads with a bound.

    ``filename`` only names the file in messages and breaks ties in :func:`detect_kind`. ``base_dir`` is
    where a ``--deepspeed_config PATH`` named by a script is looked for (unless the script writes it).
    """
    if base_dir is not None and not isinstance(base_dir, str):
        raise ParseError(f"`base_dir` must be a path string, got a `{type(base_dir).__name__}`", code="invalid_input")
    if filename is not None and not isinstance(filename, str):
        raise ParseError(f"`filename` must be a string, got a `{type(filename).__name__}`", code="invalid_input")
    return _to_config(_guard(_parse, text, filename, base_dir))


def parse_file(path, *, filename: str | None = None) -> LaunchConfig:
    """Read the launch file at ``path`` with :func:`read_launch_file` (bounded; regular files only) and
    parse it with :func:`parse_launch`, looking for files it names next to it."""
    import os

    text = _guard(read_launch_file, path)
    name = filename if filename is not None else os.fspath(path)
    return parse_launch(text, name, base_dir=os.path.dirname(os.fspath(path)) or ".")


def _argv(argv: str | list[str]) -> list[str]:
    if isinstance(argv, str):
        text = check_text(argv, "`--args`")
        try:
            # comments=True: `--args "$(cat args.txt)"` brings the file's `# ...` comments along
            tokens = shlex.split(text.replace("\\\n", " "), comments=True)
        except ValueError as exc:
            raise ParseError(f"`--args` has unbalanced quotes ({short(str(exc))})", code="unbalanced_quotes") from None
    elif isinstance(argv, (list, tuple)):
        tokens = list(argv)
        bad = next((t for t in tokens if not isinstance(t, str)), None)
        if bad is not None:
            raise ParseError(f"argument list items must be strings, got a `{type(bad).__name__}`", code="invalid_input")
        if sum(len(t) for t in tokens) > MAX_INPUT_CHARS:
            raise ParseError(f"the argument list is longer than {MAX_INPUT_CHARS} characters", code="too_large")
    else:
        raise ParseError(f"arguments must be a string or a list of strings, got a `{type(argv).__name__}`", code="invalid_input")
    if not tokens:
        raise ParseError("the argument list is empty", code="empty")
    return tokens


def parse_args(argv: str | list[str]) -> LaunchConfig:
    """Read a plain Megatron argument list, as given to ``topo check --args "..."``, or NeMo 2 /
    Megatron-Bridge recipe overrides (``trainer.strategy.tensor_model_parallel_size=8 ...``; read as such
    when no Megatron flag is among the arguments).

    A string is split like a shell would (quotes work, ``#`` starts a comment, nothing is expanded); a
    launcher and script in front (``torchrun --nproc_per_node 8 pretrain_gpt.py ...``) are allowed.
    """
    return _to_config(_guard(_parse_argv, argv))


def _parse_argv(argv: str | list[str]) -> Result:
    tokens = _argv(argv)
    k = _megatron._script_index(tokens)
    rest = tokens[k + 1:] if k is not None else tokens
    if not (_megatron._seen(rest) & _megatron.KNOWN) and any(_nemo.is_known(t) for t in rest):
        return _nemo.parse_tokens(rest, script=tokens[k] if k is not None else "",
                                  launcher=tokens[:k] if k is not None else [])
    return _megatron.parse_argv(tokens)
