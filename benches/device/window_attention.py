"""Sliding-window (local) causal attention against full causal attention on one GPU: the data that
checks toposcan's windowed-attention time model (rust/core/src/score.rs, `LayerBase::new`, where a
layer with window w is priced as causal flash attention over min(2w, seq) keys).

Run on a machine with PyTorch (>= 2.5, for FlexAttention with GQA) and a CUDA GPU:

    python benches/device/window_attention.py --out DIR --budget 270   # DIR/window_attention.csv,
                                                                       # DIR/env.json, DIR/log.txt
    python benches/device/window_attention.py --smoke                  # no GPU: the grid, the batch
                                                                       # sizing and the block counts;
                                                                       # with PyTorch, tiny CPU runs too

What is timed (bf16, q/k/v as [batch, heads, seq, head_dim], random normal inputs):
- `flex`: `torch.nn.attention.flex_attention` compiled with `torch.compile(dynamic=False)`, with a
  block mask from `create_block_mask` (128 x 128 blocks): full causal (`window` 0) or causal sliding
  window, key index in (q - w, q]. The block mask makes the kernel skip blocks that are all masked,
  so a window of w computes about w/128 + 1 key blocks per 128-query block instead of half of all.
  One mask_mod serves every window (it reads the window from a tensor), so a window does not
  recompile; each (head_dim, seq, batch) shape compiles once per pass, under an alarm (`--compile-s`).
- `sdpa_flash`: `scaled_dot_product_attention(is_causal=True)` forced to the flash backend, full
  causal only: a cross-check of FlexAttention's full causal time.
Head shapes: head_dim 64 with 64 query and 8 K/V heads (GPT-OSS), head_dim 128 with 32 query and 8
K/V heads; K/V shared across query heads with `enable_gqa=True` (if SDPA refuses it, K/V are
repeated per head and `status` says so). Batch is sized so that a full causal forward is about
`FWD_FLOPS_TARGET` FLOPs (~5 ms); windowed calls on the same tensors are shorter, so a sample times
enough back-to-back calls for ~2 ms.

Timing: CUDA events around `calls` back-to-back calls, median (and min, max) over `SAMPLES` samples
after warm-up calls; `fwd` is the forward alone (under no_grad), `fwd_bwd` is forward plus
`torch.autograd.grad` of q, k, v. Rows are written and flushed as measured; any failure is a row with
its `status`, and the script goes on with the next shape.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import statistics
import sys
import time
import traceback

# ---------------------------------------------------------------------------------------------------
# The grid (pure Python, so --smoke can check it without PyTorch)

HEADS = ((64, 64, 8), (128, 32, 8))  # (head_dim, query heads, K/V heads): GPT-OSS, Llama-style
SEQS = (4096, 8192, 32768)
WINDOWS = (0, 128, 512, 2048)  # 0 = full causal
BLOCK = 128  # create_block_mask's default block size (queries and keys)
FWD_FLOPS_TARGET = 2e12  # causal forward FLOPs of the full-causal call (~5 ms at ~400 TFLOP/s)
SAMPLES = 7
SAMPLE_TARGET_S = 2e-3  # back-to-back calls per sample: at least this long
COLUMNS = (
    "kernel", "head_dim", "heads", "kv_heads", "seq", "window", "batch", "pass",
    "time_s", "time_min_s", "time_max_s", "samples", "status",
)


def batch_for(seq: int, heads: int, head_dim: int) -> int:
    """Batch such that the full causal forward, 2*b*h*s^2*d FLOPs, is about FWD_FLOPS_TARGET."""
    per_batch = 2.0 * heads * seq * seq * head_dim
    return max(1, round(FWD_FLOPS_TARGET / per_batch))


def kv_blocks(seq: int, window: int, block: int = BLOCK) -> tuple[int, int]:
    """(key blocks a block-sparse kernel computes, query blocks) for the causal mask (window 0) or
    the causal sliding window (key in (q - w, q]): a key block is computed for a query block when
    any of its pairs is unmasked."""
    nq = math.ceil(seq / block)
    total = 0
    for i in range(nq):
        q_lo, q_hi = i * block, min(seq, (i + 1) * block) - 1
        k_lo = 0 if window == 0 else max(0, q_lo - window + 1)
        total += q_hi // block - k_lo // block + 1
    return total, nq


def grid():
    """Every (head_dim, heads, kv_heads, seq, batch) shape, in the order measured (GPT-OSS first)."""
    return [
        (d, h, kvh, s, batch_for(s, h, d))
        for d, h, kvh in HEADS
        for s in SEQS
    ]


# ---------------------------------------------------------------------------------------------------
# Output


class Rows:
    """CSV rows written and flushed as they are measured, echoed to the log."""

    def __init__(self, path: str | None, log):
        self.log = log
        self.f = open(path, "w", newline="") if path else None
        self.w = csv.DictWriter(self.f, fieldnames=COLUMNS) if self.f else None
        if self.w:
            self.w.writeheader()
            self.f.flush()
        self.rows: list[dict] = []

    def add(self, **row):
        row = {k: row.get(k, "") for k in COLUMNS}
        self.rows.append(row)
        if self.w:
            self.w.writerow(row)
            self.f.flush()
        self.log(" ".join(f"{k}={row[k]}" for k in COLUMNS if row[k] != ""))


class CompileTimeout(Exception):
    pass


def _alarm(_signum, _frame):
    raise CompileTimeout()


# ---------------------------------------------------------------------------------------------------
# Measurement (PyTorch imported inside, so --smoke runs without it)


def time_calls(torch, fn, warmup: int = 2):
    """(median, min, max, samples) seconds per call: CUDA events around back-to-back calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    s0, s1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s0.record()
    fn()
    s1.record()
    s1.synchronize()
    one = max(s0.elapsed_time(s1) / 1e3, 1e-6)
    calls = max(1, min(200, math.ceil(SAMPLE_TARGET_S / one)))
    samples = SAMPLES if one * calls < 0.05 else 3
    times = []
    for _ in range(samples):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(calls):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3 / calls)
    return statistics.median(times), min(times), max(times), samples


def make_pass(torch, attn, q, k, v, which: str):
    """A closure running the forward (`fwd`) or forward and backward (`fwd_bwd`)."""
    if which == "fwd":
        def run():
            with torch.no_grad():
                return attn(q, k, v)
        return run
    g = torch.randn_like(q)

    def run():
        out = attn(q, k, v)
        return torch.autograd.grad(out, (q, k, v), g)
    return run


def rel_err(torch, a, b) -> float:
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm())


def measure(args, rows: Rows, log, env: dict):
    import torch
    import torch.nn.functional as F

    dev = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    deadline = time.monotonic() + args.budget
    env.update(torch=torch.__version__, cuda=torch.version.cuda, device=dev)
    if dev == "cuda":
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, sms=p.multi_processor_count, mem_gib=round(p.total_memory / 2**30, 1))
    try:
        import triton
        env["triton"] = triton.__version__
    except Exception as e:  # noqa: BLE001 - recorded, not fatal (flex needs it on CUDA)
        env["triton"] = f"import failed: {e!r}"
    log(json.dumps(env))

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except Exception as e:  # noqa: BLE001
        env["flex_import"] = repr(e)
        create_block_mask = flex_attention = None
        from torch.nn.attention import SDPBackend, sdpa_kernel

    import torch._dynamo

    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                 "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 256)

    # One mask_mod for every window: the window is read from this tensor (a captured buffer), so a
    # new window changes the block mask, not the compiled kernel. Full causal uses window = seq.
    win = torch.zeros((), dtype=torch.int64, device=dev)

    def sliding(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx < win)

    flex = None
    if flex_attention is not None:
        flex = torch.compile(flex_attention, dynamic=False) if dev == "cuda" else flex_attention

    # Correctness first, on a small shape: flex (window 200, GQA) against SDPA's math on a dense
    # boolean mask with K/V repeated per head.
    if flex is not None:
        try:
            b, h, kvh, s, d = 1, 8, 2, 1024, 64
            q = torch.randn(b, h, s, d, device=dev, dtype=dtype)
            k = torch.randn(b, kvh, s, d, device=dev, dtype=dtype)
            v = torch.randn(b, kvh, s, d, device=dev, dtype=dtype)
            win.fill_(200)
            bm = create_block_mask(sliding, None, None, s, s, device=dev)
            out = flex(q, k, v, block_mask=bm, enable_gqa=True)
            i = torch.arange(s, device=dev)
            dense = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < 200)
            ref = F.scaled_dot_product_attention(
                q.double(), k.double().repeat_interleave(h // kvh, 1),
                v.double().repeat_interleave(h // kvh, 1), attn_mask=dense)
            env["flex_window_check_rel_err"] = rel_err(torch, out, ref)
            n_kv = (bm.kv_num_blocks.sum() + bm.full_kv_num_blocks.sum()).item()
            env["flex_window_check_blocks"] = [int(n_kv), kv_blocks(s, 200)[0]]
            log(f"flex window check: rel err {env['flex_window_check_rel_err']:.2e}, "
                f"key blocks {env['flex_window_check_blocks']} (block mask, ours)")
        except Exception as e:  # noqa: BLE001
            env["flex_window_check"] = f"failed: {e!r}"
            log(traceback.format_exc())

    shapes = grid() if not args.smoke else [(64, 8, 2, 512, 1), (128, 4, 2, 1024, 1)]
    windows = WINDOWS if not args.smoke else (0, 128)
    passes = ("fwd", "fwd_bwd") if dev == "cuda" else ("fwd",)  # flex has no CPU backward
    compile_s = args.compile_s

    for d, h, kvh, s, batch in shapes:
        if time.monotonic() > deadline:
            log(f"budget spent: skipping d={d} s={s}")
            for kernel in ("sdpa_flash", "flex"):
                for w in (windows if kernel == "flex" else (0,)):
                    for ps in passes:
                        rows.add(kernel=kernel, head_dim=d, heads=h, kv_heads=kvh, seq=s, window=w,
                                 batch=batch, **{"pass": ps}, status="skipped_budget")
            continue
        base = dict(head_dim=d, heads=h, kv_heads=kvh, seq=s, batch=batch)
        gen = torch.Generator(device=dev).manual_seed(1000 + s + d)
        grad = dev == "cuda"
        q = torch.randn(batch, h, s, d, device=dev, dtype=dtype, generator=gen).requires_grad_(grad)
        k = torch.randn(batch, kvh, s, d, device=dev, dtype=dtype, generator=gen).requires_grad_(grad)
        v = torch.randn(batch, kvh, s, d, device=dev, dtype=dtype, generator=gen).requires_grad_(grad)

        # SDPA flash, full causal: the cross-check.
        sdpa_out = None
        try:
            gqa_status = "ok"
            if dev == "cuda":
                def sdpa(q_, k_, v_):
                    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                        return F.scaled_dot_product_attention(q_, k_, v_, is_causal=True, enable_gqa=True)
                try:
                    with torch.no_grad():
                        sdpa_out = sdpa(q, k, v)
                except Exception as e:  # noqa: BLE001 - fall back to repeated K/V
                    log(f"sdpa flash with enable_gqa refused ({e!r}); repeating K/V")
                    gqa_status = "ok_kv_repeated"

                    def sdpa(q_, k_, v_):
                        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                            return F.scaled_dot_product_attention(
                                q_, k_.repeat_interleave(h // kvh, 1), v_.repeat_interleave(h // kvh, 1),
                                is_causal=True)
                    with torch.no_grad():
                        sdpa_out = sdpa(q, k, v)
            else:
                def sdpa(q_, k_, v_):
                    return F.scaled_dot_product_attention(q_, k_, v_, is_causal=True, enable_gqa=True)
                with torch.no_grad():
                    sdpa_out = sdpa(q, k, v)
            for ps in passes:
                t, lo, hi, n = time_calls(torch, make_pass(torch, sdpa, q, k, v, ps)) if dev == "cuda" \
                    else (float("nan"),) * 3 + (0,)
                rows.add(kernel="sdpa_flash", window=0, **base, **{"pass": ps}, time_s=f"{t:.6g}",
                         time_min_s=f"{lo:.6g}", time_max_s=f"{hi:.6g}", samples=n, status=gqa_status)
        except Exception as e:  # noqa: BLE001
            log(traceback.format_exc())
            for ps in passes:
                rows.add(kernel="sdpa_flash", window=0, **base, **{"pass": ps},
                         status=f"error: {type(e).__name__}")

        if flex is None:
            for w in windows:
                for ps in passes:
                    rows.add(kernel="flex", window=w, **base, **{"pass": ps}, status="flex_unavailable")
            continue

        masks = {}
        for w in windows:
            win.fill_(w if w else s)
            masks[w] = create_block_mask(sliding, None, None, s, s, device=dev)
            n_kv = int((masks[w].kv_num_blocks.sum() + masks[w].full_kv_num_blocks.sum()).item())
            env.setdefault("key_blocks", {})[f"s{s}_w{w}"] = [n_kv, kv_blocks(s, w)[0]]

        def attn_for(w):
            bm = masks[w]

            def attn(q_, k_, v_):
                win.fill_(w if w else s)
                return flex(q_, k_, v_, block_mask=bm, enable_gqa=True)
            return attn

        for ps in passes:
            compiled = dev != "cuda"
            for w in windows:
                row = dict(kernel="flex", window=w, **base, **{"pass": ps})
                if time.monotonic() > deadline:
                    rows.add(**row, status="skipped_budget")
                    continue
                try:
                    fn = make_pass(torch, attn_for(w), q, k, v, ps)
                    if not compiled:  # first call of this shape and pass compiles, under an alarm
                        t0 = time.monotonic()
                        signal.signal(signal.SIGALRM, _alarm)
                        signal.alarm(max(1, int(min(compile_s, deadline - time.monotonic() + 5))))
                        try:
                            fn()
                            torch.cuda.synchronize()
                        finally:
                            signal.alarm(0)
                        compiled = True
                        log(f"compiled flex {ps} d={d} s={s} b={batch} in {time.monotonic() - t0:.1f} s")
                    if w == 0 and ps == "fwd" and sdpa_out is not None:
                        with torch.no_grad():
                            err = rel_err(torch, attn_for(0)(q, k, v), sdpa_out)
                        env.setdefault("flex_vs_sdpa_rel_err", {})[f"d{d}_s{s}"] = err
                    if dev == "cuda":
                        t, lo, hi, n = time_calls(torch, fn)
                    else:
                        fn()
                        t = lo = hi = float("nan")
                        n = 0
                    rows.add(**row, time_s=f"{t:.6g}", time_min_s=f"{lo:.6g}", time_max_s=f"{hi:.6g}",
                             samples=n, status="ok")
                except CompileTimeout:
                    log(f"flex {ps} d={d} s={s}: compile over {compile_s} s")
                    rows.add(**row, status="compile_timeout")
                    break
                except Exception as e:  # noqa: BLE001
                    log(traceback.format_exc())
                    rows.add(**row, status=f"error: {type(e).__name__}")
                    if not compiled:
                        break
        del q, k, v, sdpa_out, masks
        if dev == "cuda":
            torch.cuda.empty_cache()


def smoke_grid(log):
    """Print the grid, the batch sizes and the block-sparse work per window (no PyTorch needed)."""
    for d, h, kvh, s, batch in grid():
        full, nq = kv_blocks(s, 0)
        parts = []
        for w in WINDOWS[1:]:
            nb, _ = kv_blocks(s, w)
            band = min(2 * w, s)
            parts.append(f"w{w}: blocks {nb / full:.4f} band {band / s:.4f}")
        log(f"d={d} h={h}/{kvh} s={s} b={batch} fwd {2 * batch * h * s * s * d:.2e} FLOP; "
            + "; ".join(parts))
    assert kv_blocks(4096, 0) == (32 * 33 // 2, 32)
    assert kv_blocks(4096, 128)[0] == 1 + 31 * 2


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="folder for window_attention.csv, env.json, log.txt")
    ap.add_argument("--budget", type=float, default=270.0, help="seconds of measuring (deadline)")
    ap.add_argument("--compile-s", type=float, default=120.0, help="alarm on one shape's compile")
    ap.add_argument("--smoke", action="store_true", help="no GPU: grid, block counts, tiny CPU runs")
    args = ap.parse_args(argv)
    if not args.smoke and not args.out:
        ap.error("--out is required unless --smoke")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    logf = open(os.path.join(args.out, "log.txt"), "w") if args.out else None

    def log(msg):
        print(msg, flush=True)
        if logf:
            logf.write(msg + "\n")
            logf.flush()

    env = {"argv": sys.argv, "start_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    rows = Rows(os.path.join(args.out, "window_attention.csv") if args.out else None, log)
    try:
        if args.smoke:
            smoke_grid(log)
            try:
                import torch  # noqa: F401
            except ImportError:
                log("smoke: no PyTorch here; grid only")
                return
        measure(args, rows, log, env)
    finally:
        env["end_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if args.out:
            with open(os.path.join(args.out, "env.json"), "w") as f:
                json.dump(env, f, indent=1, default=str)
        # The short table the tool's output tail carries.
        for r in rows.rows:
            if r["time_s"] not in ("", "nan"):
                print(f"{r['kernel']:10s} d{r['head_dim']:>3} s{r['seq']:>6} w{r['window']:>5} "
                      f"{r['pass']:7s} {float(r['time_s']) * 1e3:9.3f} ms")


if __name__ == "__main__":
    main()
