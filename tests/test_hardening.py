"""Hardening (issue 5): random and hostile values for every keyword of the Python API.

For :func:`toposcan.evaluate`, :func:`toposcan.enumerate` and :func:`toposcan.check` (``args=``;
the launch-config parsers have their own tests), whatever the input:

- either a result comes back (a polars frame, or a report) or a :class:`toposcan.ToposcanError`
  is raised, whose message is one line, without a trailing period, and names a field in
  backticks; never another exception type (TypeError, ValueError, OverflowError, a Rust panic);
- the same input gives the same answer twice.

Spaces stay tiny (1-4 nodes, ``top=5``) so that each example takes milliseconds.
"""

from __future__ import annotations

import math
import re

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import toposcan
from toposcan import ToposcanError
from toposcan.spec import _show

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])

GOOD_ARGS = ("--num-layers 24 --hidden-size 2048 --num-attention-heads 16 --seq-length 2048 "
             "--micro-batch-size 4 --global-batch-size 256 --bf16 --tensor-model-parallel-size 2")


class _Weird:
    """An object whose repr spans lines (as a DataFrame's or an array's does)."""

    def __repr__(self) -> str:
        return "weird\nobject"

    __str__ = __repr__


#: Values that are wrong for (nearly) every keyword, and a few that are right for some.
HOSTILE = [
    0, -1, -3, 1, 2, 3, 4, 8, 10**30, -10**30, 10**5000, 2**31, 2**63,
    0.0, 1.5, -0.5, 1e300, -1e300, 5e-324, float("nan"), float("inf"), float("-inf"),
    True, False, None,
    "", " ", "abc", "0", "1", "4", "-3", "1.5", "nan", "inf", "1e3", "1e400", "10" * 3000, "1_000",
    "5:1", "1:2:0", "1:4", "1:4:2", "1::2", ":", "1:2:3:4", "a:b", "1,2,4", "1,,x", "a,b", "0,1",
    "1\n2", "a\nb", "\x00", "\u2028", "z100", "nope", "bloom-176b", "a100-80", "full", "bf16", "true", "yes",
    [], [1], [1, 2], [0], [-1], [1, None], [1.5], ["x"], [10**30], [True], [[1]], ["1", "2"],
    (1, 2), (1, 2, 3), ("step_time_s", "mem_gb"), ("a", "b"), range(1, 3), range(0), range(1, 10**12),
    {1, 2}, {"a": 1}, b"12", bytearray(b"1"), complex(1, 2), object(), _Weird(),
    np.int64(4), np.float64("nan"), np.array([1, 2]), np.zeros((3, 3)), pl.Series([1, 2]),
    pl.DataFrame({"a": [1, 2]}),
]

hostile = st.sampled_from(HOSTILE)


def _prints_on_one_line(v) -> bool:
    try:
        return str(v).isprintable()
    except ValueError:  # an int over 4300 digits
        return False


def _has_truth_value(v) -> bool:
    try:
        bool(v)
        return True
    except ValueError:  # numpy arrays, polars frames and series
        return False


#: Names with no one-line print or no truth value have their own test below.
check_names = st.sampled_from([v for v in HOSTILE if _prints_on_one_line(v) and _has_truth_value(v)])
names = st.sampled_from(["a100-80", "h100-80", "v100-32", "mi250x", "z100", "", "A100-80", "a100-80 "])
models = st.sampled_from(["gpt3-125m", "llama-2-7b", "bloom-176b", "mixtral-8x7b", "deepseek-v2", "nope", "", None])
profiles = st.sampled_from([None, "megatron-deepspeed-a100", "llm-foundry-h100", "zz", ""])
small_int = st.integers(min_value=-2, max_value=9)
any_int = st.integers()
floats = st.floats(allow_nan=True, allow_infinity=True)
texts = st.text(max_size=8)
int_lists = st.lists(st.integers(min_value=-1, max_value=9), max_size=3)
range_text = st.builds(lambda a, b, c: f"{a}:{b}" if c is None else f"{a}:{b}:{c}",
                       st.integers(-1, 9), st.integers(-1, 9), st.none() | st.integers(-1, 3))


def _value(*extra: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(hostile, *extra)


# Per keyword: plausible values mixed with hostile ones (sizes bounded so each call stays fast).
EVALUATE_KW = {
    "model": models | hostile,
    "gpu": names | hostile,
    "nodes": _value(st.integers(-2, 64), any_int, floats, texts),
    "gpus_per_node": _value(st.integers(-2, 1100), texts),
    "layers": _value(small_int, st.integers(1, 200), any_int),
    "hidden": _value(st.sampled_from([64, 128, 768, 1000, 4096]), any_int),
    "heads": _value(st.sampled_from([1, 2, 8, 12, 16, 7]), any_int),
    "kv_heads": _value(small_int, any_int),
    "ffn_hidden": _value(st.integers(-1, 5000), any_int),
    "activation": _value(st.sampled_from(["gelu", "swiglu", "relu"]), texts),
    "vocab": _value(st.integers(-1, 100_000), any_int),
    "seq_len": _value(st.integers(-1, 8192), any_int),
    "tied_embeddings": hostile,
    "experts": _value(small_int),
    "topk": _value(small_int),
    "position": _value(st.sampled_from(["learned", "rope", "alibi", "sinus"])),
    "norm": _value(st.sampled_from(["layernorm", "rmsnorm", "batchnorm"])),
    "bias": hostile,
    "dp": _value(small_int, any_int),
    "tp": _value(small_int, any_int),
    "pp": _value(small_int, any_int),
    "vpp": _value(small_int),
    "cp": _value(small_int),
    "ep": _value(small_int),
    "mbs": _value(small_int, any_int),
    "gbs": _value(st.integers(-1, 4096), any_int),
    "zero_stage": _value(small_int),
    "recompute": _value(st.sampled_from(["none", "selective", "full", "all"])),
    "sequence_parallel": hostile,
    "precision": _value(st.sampled_from(["fp32", "fp16", "bf16", "fp8", "int8"])),
    "flash_attention": hostile,
    "uneven_stages": hostile,
    "profile": profiles | hostile,
    "headroom": _value(floats, st.floats(0, 1)),
    "train_tokens": _value(floats),
    "allow_cross_node_tp": hostile,
    "rampup": hostile,
    "stages": st.booleans(),
}

ENUMERATE_KW = {
    "model": models | hostile,
    "gpu": names | hostile,
    # 1-4 nodes, or values that must be refused: enumeration cost grows with the GPU count.
    "nodes": st.sampled_from([1, 2, 3, 4, 0, -3, 1.5, float("nan"), "abc", None, 10**30, "2", [1], "1\n2"]),
    "gpus_per_node": st.sampled_from([1, 2, 4, 8, 0, -1, 2048, 10**30, "x", None, 1.5]),
    "layers": _value(small_int, int_lists, range_text),
    "hidden": _value(st.sampled_from([64, 128, 768, 1024, 1000]), range_text,
                     st.lists(st.sampled_from([128, 256, 768, 1000, 0]), max_size=3)),
    "heads": _value(st.sampled_from([1, 2, 8, 12, 7]), int_lists),
    "kv_heads": _value(small_int),
    "ffn_hidden": _value(st.integers(-1, 5000)),
    "activation": _value(st.sampled_from(["gelu", "swiglu", "relu"])),
    "vocab": _value(st.integers(-1, 100_000)),
    "seq_len": _value(st.integers(-1, 8192)),
    "tied_embeddings": hostile,
    "experts": _value(small_int),
    "topk": _value(small_int),
    "position": _value(st.sampled_from(["learned", "rope", "alibi"])),
    "norm": _value(st.sampled_from(["layernorm", "rmsnorm"])),
    "bias": hostile,
    "params": _value(st.sampled_from([125e6, 1e9, 7e9, 1e16, 1e17, -1.0, 0.0])),
    "tolerance": _value(st.sampled_from(["3%", "abc%", "%", "-1%", "200%", "0.05", 0.5, 2.0])),
    "tp": _value(int_lists, range_text),
    "pp": _value(int_lists, range_text),
    "vpp": _value(int_lists),
    "cp": _value(int_lists),
    "ep": _value(int_lists),
    "mbs": _value(int_lists, range_text),
    "gbs": _value(st.lists(st.integers(-1, 4096), max_size=3)),
    "zero_stage": _value(st.lists(st.integers(-1, 4), max_size=3)),
    "recompute": _value(st.lists(st.sampled_from(["none", "selective", "full", "x"]), max_size=3)),
    "sequence_parallel": _value(st.lists(st.sampled_from([True, False, 2, "x"]), max_size=2)),
    "precision": _value(st.sampled_from(["fp32", "fp16", "bf16", "fp8"])),
    "flash_attention": hostile,
    "uneven_stages": hostile,
    "profile": profiles | hostile,
    "headroom": _value(floats),
    "train_tokens": _value(floats),
    "allow_cross_node_tp": hostile,
    "rampup": hostile,
    "top": st.sampled_from([5, 1, 0, -1, 1.5, "5", "x", None, 10**30, float("nan")]),
    "objective": _value(st.sampled_from(["step_time_s", "mem_gb", "mfu", "not_a_column"])),
    "descending": hostile,
    "pareto": _value(st.sampled_from([("step_time_s", "mem_gb"), ["mfu", "mem_gb"], ("x",), ("a", "mem_gb")])),
    "cap": st.sampled_from([1, 5, 0, -1, 1.5, "x", 10**30]),
    "include_infeasible": hostile,
}

CHECK_KW = {
    "nodes": st.sampled_from([1, 2, 4, 0, -3, 1.5, float("nan"), "abc", "2", [1], 10**30, 10**5000, "1\n2"]),
    "gpu": names | check_names,
    "gpus_per_node": st.sampled_from([None, 1, 2, 4, 8, 0, -1, 10**30, "x", 1.5, float("inf")]),
    "model": st.sampled_from([None, "gpt3-1.3b", "llama-2-7b", "nope", 5, ["x"], "a\nb"]),
    "profile": profiles | check_names,
    "max_slowdown": _value(st.floats(-1, 20)),
    "train_tokens": _value(floats),
    "headroom": _value(floats),
}


def _assert_one_line_message(e: ToposcanError) -> None:
    msg = str(e)
    assert msg, "empty message"
    assert len(msg.splitlines()) == 1 and "\n" not in msg, f"message on more than one line: {msg!r}"
    assert not msg.endswith("."), f"message ends with a period: {msg!r}"
    assert re.search(r"`[^`]*`", msg), f"message names no field in backticks: {msg!r}"
    assert msg == e.message
    if e.hint is not None:
        assert len(e.hint.splitlines()) == 1, f"hint on more than one line: {e.hint!r}"
    assert isinstance(e.code, str) and e.code


def _outcome(fn, kw):
    """A comparable outcome: ("ok", value) or ("error", type, message). Any other exception escapes."""
    try:
        return ("ok", fn(**kw))
    except ToposcanError as e:
        _assert_one_line_message(e)
        return ("error", type(e), str(e))


def _same(a, b) -> None:
    assert a[0] == b[0], (a, b)
    if a[0] == "error":
        assert a == b
        return
    x, y = a[1], b[1]
    if isinstance(x, tuple):
        assert isinstance(y, tuple) and len(x) == len(y)
        for u, v in zip(x, y):
            _same(("ok", u), ("ok", v))
    elif isinstance(x, pl.DataFrame):
        assert_frame_equal(x, y)
    elif isinstance(x, dict):  # enumerate's stats: all but the wall time
        assert {k: v for k, v in x.items() if k != "seconds"} == {k: v for k, v in y.items() if k != "seconds"}
    elif isinstance(x, toposcan.CheckReport):
        assert x.to_json() == y.to_json()
        assert x.exit_code() == y.exit_code() and x.exit_code(True) == y.exit_code(True)
    else:
        raise AssertionError(f"unexpected result type {type(x).__name__}")


def _check_twice(fn, kw):
    first = _outcome(fn, kw)
    second = _outcome(fn, kw)
    _same(first, second)
    if first[0] == "ok" and isinstance(first[1], pl.DataFrame):
        assert first[1].width > 0
    return first


def _names(msg: str, key: str) -> bool:
    return re.search(rf"(?<![A-Za-z_]){re.escape(key)}(?![A-Za-z_])", msg) is not None


def _kwargs(table: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional=table)


# ------------------------------------------------------------------------------------------------
# evaluate


@settings(max_examples=400, **SETTINGS)
@given(kw=_kwargs(EVALUATE_KW))
def test_evaluate_random_keywords(kw):
    out = _check_twice(toposcan.evaluate, kw)
    if out[0] == "ok" and not kw.get("stages"):
        assert out[1].height == 1


@settings(max_examples=300, **SETTINGS)
@given(key=st.sampled_from(sorted(k for k in EVALUATE_KW if k != "stages")), value=hostile, data=st.data())
def test_evaluate_one_bad_keyword_names_it(key, value, data):
    kw = {"model": "gpt3-125m", "gpu": "a100-80", "nodes": 1, key: value}
    out = _check_twice(toposcan.evaluate, kw)
    if out[0] == "error":
        assert _names(out[2], key) or (key in ("tp", "pp", "cp") and "give `dp`" in out[2]), out[2]


def test_evaluate_baseline_is_feasible():
    row = toposcan.evaluate("gpt3-125m", gpu="a100-80", nodes=1)
    assert row["feasible"][0]


# ------------------------------------------------------------------------------------------------
# enumerate


@settings(max_examples=300, **SETTINGS)
@given(kw=_kwargs(ENUMERATE_KW), with_stats=st.booleans())
def test_enumerate_random_keywords(kw, with_stats):
    kw = {"nodes": 1, "top": 5, **kw, "with_stats": with_stats}
    if "params" in kw and not any(k in kw for k in ("hidden", "layers", "heads")):
        kw["model"] = "gpt3-125m"  # a shape search around a small base model, not around BLOOM
    _check_twice(toposcan.enumerate, kw)


@settings(max_examples=250, **SETTINGS)
@given(key=st.sampled_from(sorted(k for k in ENUMERATE_KW if k not in ("nodes", "top", "cap"))), value=hostile)
def test_enumerate_one_bad_keyword_names_it(key, value):
    kw = {"model": "gpt3-125m", "gpu": "a100-80", "nodes": 1, "top": 5, key: value}
    out = _check_twice(toposcan.enumerate, kw)
    if out[0] == "error":
        ok = _names(out[2], key) or (key == "tolerance" and "params" in out[2])
        assert ok, out[2]


@pytest.mark.parametrize("key", ["nodes", "top", "cap"])
@pytest.mark.parametrize("value", [0, -3, 1.5, float("nan"), float("inf"), "abc", None, 10**30, 10**5000, [1], "1\n2",
                                   np.array([1, 2]), _Weird()], ids=lambda v: _show(v)[:24])
def test_enumerate_bad_sizes_name_the_field(key, value):
    if key == "top" and value is None:
        pytest.skip("top=None is allowed: every row up to `cap`")
    kw = {"model": "gpt3-125m", "nodes": 1, "top": 5, key: value}
    if key == "cap":
        kw.pop("top")
    out = _check_twice(toposcan.enumerate, kw)
    assert out[0] == "error" and _names(out[2], key), out


def test_enumerate_tiny_space_is_ranked():
    df = toposcan.enumerate("gpt3-125m", gpu="a100-80", nodes=2, top=5)
    assert 0 < df.height <= 5
    assert (df["step_time_s"].diff().drop_nulls() >= 0).all()


# ------------------------------------------------------------------------------------------------
# check(args=...)

ARG_TOKENS = [
    "--num-layers", "--hidden-size", "--num-attention-heads", "--seq-length", "--micro-batch-size",
    "--global-batch-size", "--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--bf16", "--fp16",
    "--num-query-groups", "--ffn-hidden-size", "--swiglu", "--recompute-granularity", "--sequence-parallel",
    "--num-experts", "--vocab-size", "--zero-stage", "--rampup-batch-size", "--bogus",
    "0", "1", "2", "4", "16", "24", "-3", "2048", "1e30", "nan", "x", "full", "selective", "''", '"', "\\", "$X", "${Y}",
]


@settings(max_examples=150, **SETTINGS)
@given(kw=_kwargs(CHECK_KW), compare=st.booleans())
def test_check_random_keywords(kw, compare):
    kw = {"nodes": 1, "gpu": "a100-80", **kw, "args": GOOD_ARGS, "compare": compare}
    out = _check_twice(toposcan.check, kw)
    if out[0] == "ok":
        assert out[1].exit_code() in (0, 1) and out[1].exit_code(True) in (0, 1, 3)
        assert out[1].to_dict()["verdict"] in ("pass", "warn", "fail")


@settings(max_examples=150, **SETTINGS)
@given(tokens=st.lists(st.sampled_from(ARG_TOKENS) | st.text(max_size=6), max_size=14),
       model=st.sampled_from([None, "gpt3-1.3b"]))
def test_check_random_args(tokens, model):
    kw = {"args": " ".join(tokens), "nodes": 1, "gpu": "a100-80", "model": model, "compare": False}
    _check_twice(toposcan.check, kw)


@pytest.mark.parametrize("key", sorted(CHECK_KW))
@pytest.mark.parametrize("value", [0, -3, 1.5, float("nan"), "abc", 10**30, "1\n2", _Weird()], ids=lambda v: _show(v)[:24])
def test_check_one_bad_keyword_names_it(key, value):
    if key in ("gpu", "profile") and not (_prints_on_one_line(value) and _has_truth_value(value)):
        pytest.skip("covered by test_check_names_without_a_one_line_str_or_a_truth_value")
    kw = {"args": GOOD_ARGS, "nodes": 1, "gpu": "a100-80", "compare": False, key: value}
    out = _check_twice(toposcan.check, kw)
    if out[0] == "error":
        assert _names(out[2], key), out[2]


@pytest.mark.parametrize("key,value", [("gpu", "a\nb"), ("gpu", _Weird()), ("gpu", 10**5000),
                                       ("gpu", np.array([1, 2])), ("profile", np.array([1, 2]))],
                         ids=["gpu-newline", "gpu-weird", "gpu-huge", "gpu-array", "profile-array"])
def test_check_names_without_a_one_line_str_or_a_truth_value(key, value):
    with pytest.raises(ToposcanError) as e:
        toposcan.check(args=GOOD_ARGS, nodes=1, **{"gpu": "a100-80", key: value})
    _assert_one_line_message(e.value)


# ------------------------------------------------------------------------------------------------
# Regressions: each of these raised something other than ToposcanError, or a message that did not
# stay on one line or name its field.

REGRESSIONS = [
    (toposcan.enumerate, {"recompute": 5}, "recompute"),
    (toposcan.enumerate, {"recompute": None}, "recompute"),
    (toposcan.enumerate, {"pareto": 5}, "pareto"),
    (toposcan.enumerate, {"pareto": ("a", "mem_gb")}, "pareto"),
    (toposcan.enumerate, {"objective": "not_a_column"}, "objective"),
    (toposcan.enumerate, {"objective": "1\n2"}, "objective"),  # found by hypothesis
    (toposcan.enumerate, {"sequence_parallel": 1.5}, "sequence_parallel"),
    (toposcan.enumerate, {"params": 1e9, "tolerance": "abc%"}, "tolerance"),
    (toposcan.enumerate, {"params": 1e9, "tolerance": "%"}, "tolerance"),
    (toposcan.enumerate, {"mbs": b"12"}, "mbs"),
    (toposcan.enumerate, {"tp": {"a": 1}}, "tp"),
    (toposcan.enumerate, {"progress": "x"}, "progress"),
    (toposcan.enumerate, {"objective": np.zeros((3, 3))}, "objective"),
    (toposcan.enumerate, {"pareto": (5, "mem_gb")}, "pareto"),
    (toposcan.enumerate, {"allow_cross_node_tp": np.array([1, 2])}, "allow_cross_node_tp"),
    (toposcan.evaluate, {"nodes": 10**5000}, "nodes"),
    (toposcan.evaluate, {"nodes": -10**5000}, "nodes"),
    (toposcan.evaluate, {"headroom": 10**5000}, "headroom"),
    (toposcan.evaluate, {"headroom": np.zeros((3, 3))}, "headroom"),
    (toposcan.evaluate, {"headroom": pl.DataFrame({"a": [1, 2]})}, "headroom"),
    (toposcan.evaluate, {"precision": np.zeros((30, 30))}, "precision"),
    (toposcan.evaluate, {"nodes": "1\n2"}, "nodes"),
    (toposcan.evaluate, {"gpu": "a\nb"}, "gpu"),
    (toposcan.evaluate, {"model": "x\u2028"}, "model"),
    (toposcan.evaluate, {"profile": "\r"}, "profile"),
    (toposcan.evaluate, {"profile": np.array([1, 2])}, "profile"),
    (toposcan.evaluate, {"layers": 2, "hidden": 128, "heads": 2, "activation": np.array([1, 2])}, "activation"),
    (toposcan.evaluate, {"recompute": _Weird()}, "recompute"),
]


@pytest.mark.parametrize("fn,kw,field", REGRESSIONS, ids=[f"{f.__name__}-{'-'.join(k)}-{i}" for i, (f, k, _) in enumerate(REGRESSIONS)])
def test_regression_clean_error(fn, kw, field):
    kw = {"nodes": 1, **kw}
    if fn is toposcan.enumerate:
        kw.setdefault("model", "gpt3-125m")
        kw.setdefault("top", 5)
    with pytest.raises(ToposcanError) as e:
        fn(**kw)
    _assert_one_line_message(e.value)
    assert _names(str(e.value), field), str(e.value)


def test_progress_callback_and_flags_still_work():
    seen = []
    df = toposcan.enumerate("gpt3-125m", nodes=1, top=5, progress=lambda v, t: seen.append((v, t)))
    assert df.height > 0
    assert toposcan.enumerate("gpt3-125m", nodes=1, top=5, progress=False).height == df.height
    assert toposcan.enumerate("gpt3-125m", nodes=1, top=5, progress=None).height == df.height
    # A catalog default is used for an empty profile name, as before.
    assert toposcan.evaluate("gpt3-125m", nodes=1, profile="")["feasible"][0]
    assert math.isfinite(toposcan.evaluate("gpt3-125m", nodes=1, headroom=0.5)["step_time_s"][0])
