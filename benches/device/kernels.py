"""Kernel-level hardware data on one GPU, for issue 15 item 1: GEMM rates by precision (bf16, fp8 with
per-tensor, row-wise and 1x128/128x128 block scales) and the cast/quantize traffic fp8 adds, grouped
GEMMs for MoE experts, and scaled_dot_product_attention per backend, head dimension, causal mask and
sequence length.

Run on a machine with PyTorch and a CUDA GPU:

    python benches/device/kernels.py --out DIR --budget 400    # DIR/env.json, ceiling.csv, gemm_fp8.csv,
                                                               # quantize.csv, grouped_gemm.csv,
                                                               # attention_sweep.csv, log.txt
    python benches/device/kernels.py --smoke                   # CPU only: shape grids and FLOP counts;
                                                               # with PyTorch installed, tiny shapes too

Every section is time-boxed (absolute deadlines scaled to --budget, so a section that finishes early
leaves its time to the next) and wrapped so that one failure does not lose the others; rows are
written and flushed as they are measured.

Timing: CUDA events around `calls` back-to-back launches (enough for ~2 ms per sample, so host launch
latency is amortized), median over `samples` samples after two warm-up calls; inputs are random
normal (never zeros), and rotated among several copies where one set would sit in the 60 MB L2.

FLOP conventions (what the TFLOP/s columns divide):
- GEMM m x n x k: 2mnk.
- Attention forward: 2*b*h*s^2*(d_qk + d_v) (QK^T and PV), halved when causal (the masked half is
  counted once, not as work); backward 2*b*h*s^2*(3*d_qk + 2*d_v) (S recomputed, dV, dP, dQ, dK),
  likewise halved. With d_qk = d_v = d the forward is 4*b*h*s^2*d and forward+backward 3.5x that.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
import traceback

# ---------------------------------------------------------------------------------------------------
# Shape grids (pure Python, so --smoke can check them without PyTorch)

TOKENS = (4096, 8192, 16384)
HIDDENS = (4096, 5120, 8192, 12288, 16384)
TPS = (1, 2, 4, 8)
FFN_RATIO = 3.5  # SwiGLU FFN width as Llama-style models size it (14336 = 3.5 x 4096)

# (hidden, moe ffn): Qwen3-30B-A3B (2048, 768), Qwen3-235B-A22B (4096, 1536), DeepSeek-V3 (7168, 2048)
MOE_SHAPES = ((2048, 768), (4096, 1536), (7168, 2048))
MOE_EXPERTS = (8, 32, 64, 128, 256)
MOE_TOKENS_PER_EXPERT = (64, 128, 256, 512, 1024, 2048, 4096)
MOE_MAX_TOKENS = 1 << 19  # cap on experts x tokens per expert (memory and time)

# (d_qk, d_v, nominal heads): head dims 64..256, and MLA's 192/128 split (DeepSeek-V3)
ATTN_HEADS = ((64, 64, 32), (128, 128, 16), (192, 128, 16), (192, 192, 16), (256, 256, 8))
ATTN_SEQS = (2048, 8192, 32768, 131072)
ATTN_FWD_FLOPS_TARGET = 3e12  # non-causal forward FLOPs per call: sizes batch x heads (~6 ms)

CEILING_SIZES = (8192, 16384)
QUANT_SIZES = (1 << 22, 1 << 24, 1 << 26, 1 << 28)  # elements (bf16: 8 MB .. 512 MB)
QUANT_COLS = 8192


def ffn_width(hidden: int) -> int:
    """SwiGLU FFN width for a hidden size, rounded to a multiple of 256."""
    return int(round(FFN_RATIO * hidden / 256)) * 256


def layer_gemms(hidden: int, tp: int):
    """The four forward GEMMs of one transformer layer on one tensor-parallel rank, as (name, n, k)
    with y[m, n] = x[m, k] W[n, k]^T: fused QKV (MHA), output projection, fused gate+up, down."""
    f = ffn_width(hidden)
    return (
        ("qkv", 3 * hidden // tp, hidden),
        ("proj", hidden, hidden // tp),
        ("fc1", 2 * f // tp, hidden),
        ("fc2", hidden, f // tp),
    )


def gemm_grid():
    """Every (m, hidden, tp, gemm, n, k) of section a."""
    return [
        (m, h, tp, name, n, k)
        for m in TOKENS
        for h in HIDDENS
        for tp in TPS
        for name, n, k in layer_gemms(h, tp)
    ]


def moe_grid():
    """Every (hidden, ffn, experts, tokens per expert) of section b, under MOE_MAX_TOKENS."""
    return [
        (h, f, e, t)
        for h, f in MOE_SHAPES
        for e in MOE_EXPERTS
        for t in MOE_TOKENS_PER_EXPERT
        if e * t <= MOE_MAX_TOKENS
    ]


def attention_sizes(seq: int, d_qk: int, heads: int):
    """(batch, heads) so that one non-causal forward does about ATTN_FWD_FLOPS_TARGET FLOPs."""
    bh = max(1, round(ATTN_FWD_FLOPS_TARGET / (4.0 * seq * seq * d_qk)))
    h = min(heads, bh)
    return max(1, bh // h), h


def attention_flops(b: int, h: int, s: int, d_qk: int, d_v: int, causal: bool, backward: bool) -> float:
    """FLOPs of attention (see the module docstring); causal counts the unmasked half only."""
    fwd = 2.0 * b * h * s * s * (d_qk + d_v)
    total = fwd + (2.0 * b * h * s * s * (3 * d_qk + 2 * d_v) if backward else 0.0)
    return total / 2 if causal else total


def smoke_grids() -> dict:
    """Counts and a FLOP check that need no GPU (what --smoke prints)."""
    g = gemm_grid()
    assert all(n % 16 == 0 and k % 16 == 0 for _, _, _, _, n, k in g), "fp8 GEMMs need dims % 16"
    assert ffn_width(4096) == 14336 and ffn_width(8192) == 28672
    assert attention_flops(1, 1, 4, 8, 8, False, False) == 4 * 16 * 8
    assert attention_flops(1, 1, 4, 8, 8, True, True) == 3.5 * 4 * 16 * 8 / 2
    flops = sum(2.0 * m * n * k for m, _, _, _, n, k in g)
    return {
        "gemm_shapes": len(g),
        "gemm_pflop_per_pass": flops / 1e15,
        "moe_points": len(moe_grid()),
        "attention_points": len(ATTN_HEADS) * len(ATTN_SEQS) * 2,
        "attention_sizes": {s: attention_sizes(s, 128, 16) for s in ATTN_SEQS},
    }


# ---------------------------------------------------------------------------------------------------
# Output: CSVs written row by row, a log, env.json

class Out:
    """Incremental CSV writers under one folder, and a log that also goes to stdout."""

    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self._files = {}
        self._log = open(os.path.join(folder, "log.txt"), "a")

    def row(self, name: str, row: dict):
        if name not in self._files:
            f = open(os.path.join(self.folder, name), "w", newline="")
            w = csv.DictWriter(f, fieldnames=list(row))
            w.writeheader()
            self._files[name] = (f, w)
        f, w = self._files[name]
        w.writerow(row)
        f.flush()

    def log(self, msg: str):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        self._log.write(line + "\n")
        self._log.flush()


def g(x: float, digits: int = 5) -> str:
    return f"{x:.{digits}g}"


# ---------------------------------------------------------------------------------------------------
# Timing

class Timer:
    """CUDA-event timing: `calls` back-to-back launches per sample, median over samples."""

    def __init__(self, torch, sample_s: float = 2e-3, samples: int = 7, max_calls: int = 50):
        self.torch = torch
        self.sample_s, self.samples, self.max_calls = sample_s, samples, max_calls

    def __call__(self, fn):
        """fn(i) runs the i-th call (i lets it rotate inputs). Returns (median s, min, max, calls, samples)."""
        cuda = self.torch.cuda
        fn(0)
        fn(1)
        cuda.synchronize()
        e0, e1 = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
        e0.record()
        fn(2)
        e1.record()
        e1.synchronize()
        once = e0.elapsed_time(e1) / 1e3
        calls = max(1, min(self.max_calls, math.ceil(self.sample_s / max(once, 1e-7))))
        samples = self.samples if once < 0.05 else 3
        times, i = [], 3
        for _ in range(samples):
            e0.record()
            for _ in range(calls):
                fn(i)
                i += 1
            e1.record()
            e1.synchronize()
            times.append(e0.elapsed_time(e1) / 1e3 / calls)
        return statistics.median(times), min(times), max(times), calls, samples


def copies_for(nbytes: int, l2_bytes: int = 60 << 20) -> int:
    """How many input sets to rotate among so that consecutive calls do not hit in L2."""
    if nbytes >= 2 * l2_bytes:
        return 1
    return min(8, math.ceil(4 * l2_bytes / max(nbytes, 1)))


# ---------------------------------------------------------------------------------------------------
# Environment

def env_check(torch, out: Out) -> dict:
    """What this machine and this PyTorch offer; also checks each fp8 scaling mode's numbers."""
    import torch.nn.functional as F

    info = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "has_scaled_mm": hasattr(torch, "_scaled_mm"),
        "has_grouped_mm": hasattr(torch, "_grouped_mm"),
        "has_scaled_grouped_mm": hasattr(torch, "_scaled_grouped_mm"),
        "has_F_grouped_mm": hasattr(F, "grouped_mm"),
        "has_F_scaled_mm": hasattr(F, "scaled_mm"),
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(
            device=p.name,
            sms=p.multi_processor_count,
            memory_gib=round(p.total_memory / 2**30, 2),
            capability=f"{p.major}.{p.minor}",
            l2_mb=round(getattr(p, "L2_cache_size", 0) / 2**20, 1),
        )
    try:
        import torch.nn.attention as A

        info["sdpa_backends"] = sorted(A.SDPBackend.__members__)  # a pybind enum: not iterable
        info["flash_sdp_enabled"] = torch.backends.cuda.flash_sdp_enabled()
        info["cudnn_sdp_enabled"] = torch.backends.cuda.cudnn_sdp_enabled()
        info["mem_efficient_sdp_enabled"] = torch.backends.cuda.mem_efficient_sdp_enabled()
    except Exception as e:  # noqa: BLE001 -- report, do not stop
        info["sdpa_backends"] = f"error: {e}"
    for mod in ("flash_attn", "flash_attn_interface", "transformer_engine"):
        try:
            __import__(mod)
            info[f"import_{mod}"] = True
        except Exception:  # noqa: BLE001
            info[f"import_{mod}"] = False
    info["nvidia_smi"] = smi()
    return info


def smi() -> str:
    q = "name,driver_version,power.limit,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw"
    try:
        r = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20)
        return r.stdout.strip() or r.stderr.strip()
    except Exception as e:  # noqa: BLE001
        return f"error: {e}"


# ---------------------------------------------------------------------------------------------------
# fp8 operands

E4M3_MAX = 448.0


class Fp8:
    """Builds the operands and scales of torch._scaled_mm for y = x W^T in each scaling mode."""

    MODES = ("fp8_tensor", "fp8_tensor_fastacc", "fp8_rowwise", "fp8_block")

    def __init__(self, torch):
        self.torch = torch
        self.dtype = torch.float8_e4m3fn
        # use_fast_accum per mode (block scales refuse it); check() flips a mode that errors one way
        self.fast = {m: m == "fp8_tensor_fastacc" for m in self.MODES}

    def quant(self, x):
        """Per-tensor current scaling: (x * 448/amax) cast to e4m3, and the inverse scale."""
        t = self.torch
        amax = x.abs().amax().float().clamp(min=1e-12)
        s = E4M3_MAX / amax
        return (x.float() * s).clamp(-E4M3_MAX, E4M3_MAX).to(self.dtype), (1.0 / s).reshape(())

    def scales(self, mode: str, m: int, n: int, k: int, dev):
        """Inverse scales (a, b) for a [m, k] x [k, n] product in `mode` (values near 1, not 1)."""
        t = self.torch
        r = lambda *shape: (1.0 + 0.01 * t.rand(*shape, device=dev, dtype=t.float32))  # noqa: E731
        if mode.startswith("fp8_tensor"):
            return r(()), r(())
        if mode == "fp8_rowwise":
            return r(m, 1), r(1, n)
        if mode == "fp8_block":
            # A: 1x128 blocks along k, outer-dim-major; B ([k, n] view of W[n, k]): 128x128 blocks
            sa = r(m, k // 128).t().contiguous().t()
            sb = r(n // 128, k // 128).t()
            return sa, sb
        raise ValueError(mode)

    def mm(self, mode: str, a, bt, sa, sb):
        return self.torch._scaled_mm(a, bt, sa, sb, out_dtype=self.torch.bfloat16,
                                     use_fast_accum=self.fast[mode])

    def check(self, dev) -> dict:
        """Relative error of each mode against an fp32 product of the dequantized operands."""
        m, n, k = 512, 768, 1024
        res = {}
        for mode in self.MODES:
            first = self._check_one(mode, m, n, k, dev)
            if isinstance(first, str) and mode in ("fp8_rowwise",):
                self.fast[mode] = not self.fast[mode]
                second = self._check_one(mode, m, n, k, dev)
                if isinstance(second, str):
                    self.fast[mode] = not self.fast[mode]
                first = {"first": first, "flipped_fast_accum": second}
            res[mode] = first
        res["use_fast_accum"] = dict(self.fast)
        return res

    def _check_one(self, mode, m, n, k, dev):
        """Relative error of one mode, or the error message."""
        t = self.torch
        try:
            a = t.randn(m, k, device=dev).to(self.dtype)
            w = t.randn(n, k, device=dev).to(self.dtype)
            sa, sb = self.scales(mode, m, n, k, dev)
            y = self.mm(mode, a, w.t(), sa, sb).float()
            af, wf = a.float(), w.float()
            if mode == "fp8_block":
                af = af * sa.repeat_interleave(128, dim=1)
                wf = wf * sb.t().repeat_interleave(128, dim=0).repeat_interleave(128, dim=1)
                ref = af @ wf.t()
            else:
                ref = (af @ wf.t()) * sa * sb
            return float((y - ref).norm() / ref.norm())
        except Exception as e:  # noqa: BLE001
            return f"error: {type(e).__name__}: {str(e)[:200]}"


# ---------------------------------------------------------------------------------------------------
# Sections

def gemm_case(torch, fp8, timer, prec: str, m: int, n: int, k: int, dev):
    """Time y = x W^T in one precision; returns the Timer tuple."""
    bf16 = torch.bfloat16
    per_set = (m * k + n * k) * (2 if prec == "bf16" else 1)
    nset = copies_for(per_set)
    xs = [torch.randn(m, k, device=dev, dtype=bf16) for _ in range(nset)]
    ws = [torch.randn(n, k, device=dev, dtype=bf16) for _ in range(nset)]
    if prec == "bf16":
        out = torch.empty(m, n, device=dev, dtype=bf16)

        def fn(i):
            j = i % nset
            torch.mm(xs[j], ws[j].t(), out=out)
    else:
        xs = [x.to(fp8.dtype) for x in xs]
        ws = [w.to(fp8.dtype) for w in ws]
        sa, sb = fp8.scales(prec, m, n, k, dev)

        def fn(i):
            j = i % nset
            fp8.mm(prec, xs[j], ws[j].t(), sa, sb)
    return timer(fn)


def section_ceiling(torch, fp8, timer, out: Out, dev, deadline: float):
    for size in CEILING_SIZES:
        for prec in ("bf16",) + Fp8.MODES:
            if time.time() > deadline:
                out.log("ceiling: time box reached")
                return
            try:
                med, lo, hi, calls, samples = gemm_case(torch, fp8, timer, prec, size, size, size, dev)
                tf = 2.0 * size**3 / med / 1e12
                out.row("ceiling.csv", dict(precision=prec, m=size, n=size, k=size, time_s=g(med),
                                            tflops=g(tf, 4), time_min_s=g(lo), time_max_s=g(hi),
                                            calls=calls, samples=samples))
                out.log(f"ceiling {prec} {size}^3: {tf:.0f} TFLOP/s")
            except Exception as e:  # noqa: BLE001
                out.log(f"ceiling {prec} {size}: {type(e).__name__}: {str(e)[:200]}")
            torch.cuda.empty_cache()
    out.log(f"ceiling after: {smi()}")


def section_gemm(torch, fp8, timer, out: Out, dev, deadline: float):
    fails = {}  # failures per precision: a mode that fails three times is dropped
    done = 0
    for m, h, tp, name, n, k in gemm_grid():
        for prec in ("bf16",) + Fp8.MODES:
            if time.time() > deadline:
                out.log(f"gemm: time box reached after {done} rows")
                return
            if fails.get(prec, 0) >= 3 or (prec == "fp8_block" and (n % 128 or k % 128)):
                continue
            try:
                med, lo, hi, calls, samples = gemm_case(torch, fp8, timer, prec, m, n, k, dev)
                out.row("gemm_fp8.csv", dict(
                    precision=prec, gemm=name, hidden=h, tp=tp, m=m, n=n, k=k, time_s=g(med),
                    tflops=g(2.0 * m * n * k / med / 1e12, 4), time_min_s=g(lo), time_max_s=g(hi),
                    calls=calls, samples=samples))
                done += 1
            except torch.cuda.OutOfMemoryError:
                out.log(f"gemm {prec} {m}x{n}x{k}: out of memory")
            except Exception as e:  # noqa: BLE001
                out.log(f"gemm {prec} {m}x{n}x{k}: {type(e).__name__}: {str(e)[:200]}")
                fails[prec] = fails.get(prec, 0) + 1
        torch.cuda.empty_cache()
    out.log(f"gemm: {done} rows")


def section_quantize(torch, fp8, timer, out: Out, dev, deadline: float):
    """Eager cost of the casts fp8 training adds, for a [rows, QUANT_COLS] bf16 tensor. `ideal_bytes`
    is what one fused kernel must move; gbs = ideal_bytes / time (eager runs several kernels)."""
    f8 = fp8.dtype
    for numel in QUANT_SIZES:
        rows = numel // QUANT_COLS
        x = torch.randn(rows, QUANT_COLS, device=dev, dtype=torch.bfloat16)
        scale = torch.tensor(100.0, device=dev)
        ops = {
            # delayed scaling: the scale is known, one scaled cast (read 2 B, write 1 B)
            "cast_scaled": (lambda: (x * scale).to(f8), 3 * numel),
            # the amax reduction current scaling adds before the cast (read 2 B)
            "amax": (lambda: torch.linalg.vector_norm(x, ord=math.inf), 2 * numel),
            # current per-tensor scaling: amax, then the scaled cast (two passes over x)
            "quant_tensor": (lambda: fp8.quant(x), 5 * numel),
            # row-wise: one amax per row, then the cast
            "quant_rowwise": (lambda: (x * (E4M3_MAX / x.abs().amax(dim=1, keepdim=True)
                                            .clamp(min=1e-12))).to(f8), 5 * numel),
            # 1x128 blocks (DeepSeek-V3 activations)
            "quant_block1x128": (lambda: (x.view(rows, -1, 128) * (E4M3_MAX / x.view(rows, -1, 128)
                                          .abs().amax(dim=2, keepdim=True).clamp(min=1e-12)))
                                 .to(f8), 5 * numel),
        }
        for op, (fn, nbytes) in ops.items():
            if time.time() > deadline:
                out.log("quantize: time box reached")
                return
            try:
                med, lo, hi, calls, samples = timer(lambda i, fn=fn: fn())
                out.row("quantize.csv", dict(op=op, kernels="eager", elements=numel, rows=rows,
                                             cols=QUANT_COLS, time_s=g(med), ideal_bytes=nbytes,
                                             gbs=g(nbytes / med / 1e9, 4), calls=calls, samples=samples))
            except Exception as e:  # noqa: BLE001
                out.log(f"quantize {op} {numel}: {type(e).__name__}: {str(e)[:200]}")
        del x
        torch.cuda.empty_cache()
    out.log("quantize: done")


def section_grouped(torch, timer, out: Out, dev, deadline: float):
    """MoE expert GEMMs: torch._grouped_mm over all experts in one launch, a loop of per-expert
    torch.mm, one dense GEMM of the same total tokens (the ceiling), and fp8 row-wise grouped."""
    bf16 = torch.bfloat16
    grouped = getattr(torch, "_grouped_mm", None) or getattr(torch.nn.functional, "grouped_mm", None)
    scaled_grouped = getattr(torch, "_scaled_grouped_mm", None)
    methods = ["grouped_mm", "loop_mm", "dense_equiv", "fp8_rowwise_grouped"]
    if grouped is None:
        methods.remove("grouped_mm")
        out.log("grouped: torch._grouped_mm absent; loop of per-expert torch.mm only")
    if scaled_grouped is None:
        methods.remove("fp8_rowwise_grouped")
    broken = set()
    for h, f, e, tpe in moe_grid():
        tokens = e * tpe
        offs = torch.arange(1, e + 1, device=dev, dtype=torch.int32) * tpe
        for gemm, n, k in (("fc1", 2 * f, h), ("fc2", h, f)):
            x = torch.randn(tokens, k, device=dev, dtype=bf16)
            w = torch.randn(e, n, k, device=dev, dtype=bf16)  # W_e[n, k], as a Linear stores it
            y = torch.empty(tokens, n, device=dev, dtype=bf16)
            for method in methods:
                if time.time() > deadline:
                    out.log("grouped: time box reached")
                    return
                if method in broken or (method == "loop_mm" and e > 64):
                    continue  # the loop is launch-bound at many experts: 64 show the trend
                try:
                    if method == "grouped_mm":
                        wt = w.transpose(-2, -1)

                        def fn(i):
                            grouped(x, wt, offs=offs, out_dtype=bf16)
                    elif method == "loop_mm":
                        def fn(i):
                            for j in range(e):
                                torch.mm(x[j * tpe:(j + 1) * tpe], w[j].t(), out=y[j * tpe:(j + 1) * tpe])
                    elif method == "dense_equiv":
                        w0t = w[0].t()

                        def fn(i):
                            torch.mm(x, w0t, out=y)
                    else:
                        xq = x.to(torch.float8_e4m3fn)
                        wq = w.to(torch.float8_e4m3fn).transpose(-2, -1)
                        sa = torch.ones(tokens, device=dev, dtype=torch.float32)
                        sb = torch.ones(e, n, device=dev, dtype=torch.float32)

                        def fn(i):
                            scaled_grouped(xq, wq, sa, sb, offs=offs, out_dtype=bf16, use_fast_accum=True)
                    med, lo, hi, calls, samples = timer(fn)
                    out.row("grouped_gemm.csv", dict(
                        method=method, gemm=gemm, hidden=h, ffn=f, experts=e, tokens_per_expert=tpe,
                        m_total=tokens, n=n, k=k, time_s=g(med),
                        tflops=g(2.0 * tokens * n * k / med / 1e12, 4), time_min_s=g(lo),
                        time_max_s=g(hi), calls=calls, samples=samples))
                except torch.cuda.OutOfMemoryError:
                    out.log(f"grouped {method} {e}x{tpe} {gemm}: out of memory")
                except Exception as ex:  # noqa: BLE001
                    out.log(f"grouped {method}: {type(ex).__name__}: {str(ex)[:200]} (method dropped)")
                    broken.add(method)
            del x, w, y
            torch.cuda.empty_cache()
    out.log("grouped: done")


def section_attention(torch, timer, out: Out, dev, deadline: float):
    """scaled_dot_product_attention forced to one backend at a time; q, k, v as [b, h, s, d]."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                ("efficient", SDPBackend.EFFICIENT_ATTENTION)]
    bf16 = torch.bfloat16
    # short sequences first, so a cut-off loses the 131072 rows, not a whole head dim
    for s in ATTN_SEQS:
        for d_qk, d_v, heads in ATTN_HEADS:
            b, h = attention_sizes(s, d_qk, heads)
            q = torch.randn(b, h, s, d_qk, device=dev, dtype=bf16, requires_grad=True)
            kk = torch.randn(b, h, s, d_qk, device=dev, dtype=bf16, requires_grad=True)
            v = torch.randn(b, h, s, d_v, device=dev, dtype=bf16, requires_grad=True)
            do = torch.randn(b, h, s, d_v, device=dev, dtype=bf16)
            for causal in (True, False):
                for bname, backend in backends:
                    for pss in ("fwd", "fwd_bwd"):
                        if time.time() > deadline:
                            out.log("attention: time box reached")
                            return
                        row = {"backend": bname, "head_dim_qk": d_qk, "head_dim_v": d_v,
                               "causal": int(causal), "seq": s, "batch": b, "heads": h, "pass": pss}
                        try:
                            with sdpa_kernel([backend]):
                                if pss == "fwd":
                                    def fn(i):
                                        with torch.no_grad():
                                            F.scaled_dot_product_attention(q, kk, v, is_causal=causal)
                                else:
                                    def fn(i):
                                        o = F.scaled_dot_product_attention(q, kk, v, is_causal=causal)
                                        torch.autograd.grad(o, (q, kk, v), do)
                                med, lo, hi, calls, samples = timer(fn)
                            fl = attention_flops(b, h, s, d_qk, d_v, causal, pss == "fwd_bwd")
                            row.update(status="ok", time_s=g(med), flops=g(fl), tflops=g(fl / med / 1e12, 4),
                                       time_min_s=g(lo), time_max_s=g(hi), calls=calls, samples=samples)
                        except torch.cuda.OutOfMemoryError:
                            row.update(status="out of memory")
                        except Exception as e:  # noqa: BLE001
                            msg = str(e).strip().splitlines()
                            row.update(status=f"unsupported: {type(e).__name__}: "
                                              f"{(msg[0] if msg else '')[:120]}".replace(",", ";"))
                        row.setdefault("time_s", "")
                        for key in ("flops", "tflops", "time_min_s", "time_max_s", "calls", "samples"):
                            row.setdefault(key, "")
                        out.row("attention_sweep.csv", row)
                        if row["status"] == "ok" and s in (8192, 32768):
                            out.log(f"attn {bname} d{d_qk}/{d_v} causal={int(causal)} s={s} {pss}: "
                                    f"{row['tflops']} TFLOP/s")
            del q, kk, v, do
            torch.cuda.empty_cache()
    out.log("attention: done")


# ---------------------------------------------------------------------------------------------------

SECTIONS = (  # (name, end of its time box as a fraction of the budget)
    ("ceiling", 0.08),
    ("gemm", 0.40),
    ("quantize", 0.45),
    ("attention", 0.75),
    ("grouped", 0.98),
)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="kernels_out")
    ap.add_argument("--budget", type=float, default=400.0, help="seconds for all sections")
    ap.add_argument("--only", default="", help="comma-separated sections to run (default all)")
    ap.add_argument("--smoke", action="store_true", help="CPU check of grids (and tiny shapes with torch)")
    a = ap.parse_args(argv)
    t0 = time.time()

    if a.smoke:
        print(json.dumps(smoke_grids(), indent=1))
        try:
            import torch  # noqa: F401
        except ImportError:
            print("smoke: torch not installed; grids checked only")
            return 0
        return smoke_torch(a.out)

    import torch

    out = Out(a.out)
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    info = env_check(torch, out)
    fp8 = Fp8(torch)
    info["fp8_check_rel_err"] = fp8.check(dev)
    with open(os.path.join(a.out, "env.json"), "w") as f:
        json.dump(info, f, indent=1)
    out.log(json.dumps(info))
    timer = Timer(torch)
    only = set(filter(None, a.only.split(",")))
    for name, frac in SECTIONS:
        if only and name not in only:
            continue
        deadline = t0 + frac * a.budget
        if time.time() > deadline:
            out.log(f"{name}: skipped, no time left in its box")
            continue
        out.log(f"{name}: start ({deadline - time.time():.0f} s to its deadline)")
        try:
            if name == "ceiling":
                section_ceiling(torch, fp8, timer, out, dev, deadline)
            elif name == "gemm":
                section_gemm(torch, fp8, timer, out, dev, deadline)
            elif name == "quantize":
                section_quantize(torch, fp8, timer, out, dev, deadline)
            elif name == "attention":
                section_attention(torch, timer, out, dev, deadline)
            elif name == "grouped":
                section_grouped(torch, timer, out, dev, deadline)
        except Exception:  # noqa: BLE001 -- one section's failure must not lose the others
            out.log(f"{name}: failed\n{traceback.format_exc()}")
        torch.cuda.empty_cache()
    out.log(f"all done in {time.time() - t0:.0f} s; {smi()}")
    return 0


def smoke_torch(folder: str) -> int:
    """With PyTorch but no GPU: run each section's calls once on tiny shapes on the CPU, where
    PyTorch has CPU kernels for them, to catch API mistakes before a device run."""
    import torch
    import torch.nn.functional as F

    dev = torch.device("cpu")
    bf16 = torch.bfloat16
    res = {"torch": torch.__version__}
    x = torch.randn(64, 128, dtype=bf16)
    w = torch.randn(96, 128, dtype=bf16)
    res["mm"] = list(torch.mm(x, w.t()).shape)
    fp8 = Fp8(torch)
    for mode in Fp8.MODES:
        try:
            sa, sb = fp8.scales(mode, 64, 128, 128, dev)
            ww = torch.randn(128, 128).to(fp8.dtype)
            res[mode] = list(fp8.mm(mode, x.to(fp8.dtype), ww.t(), sa, sb).shape)
        except Exception as e:  # noqa: BLE001
            res[mode] = f"{type(e).__name__}: {str(e)[:120]}"
    xq, s = fp8.quant(x)
    res["quant"] = [str(xq.dtype), float(s) > 0]
    try:
        e, tpe = 4, 16
        xg = torch.randn(e * tpe, 128, dtype=bf16)
        wg = torch.randn(e, 96, 128, dtype=bf16)
        offs = torch.arange(1, e + 1, dtype=torch.int32) * tpe
        yg = torch._grouped_mm(xg, wg.transpose(-2, -1), offs=offs, out_dtype=bf16)
        ref = torch.cat([xg[i * tpe:(i + 1) * tpe].float() @ wg[i].float().t() for i in range(e)])
        res["grouped_mm_rel_err"] = float((yg.float() - ref).norm() / ref.norm())
    except Exception as ex:  # noqa: BLE001
        res["grouped_mm"] = f"{type(ex).__name__}: {str(ex)[:120]}"
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(1, 2, 64, 192, dtype=bf16, requires_grad=True)
    k = torch.randn(1, 2, 64, 192, dtype=bf16, requires_grad=True)
    v = torch.randn(1, 2, 64, 128, dtype=bf16, requires_grad=True)
    with sdpa_kernel([SDPBackend.MATH]):
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        torch.autograd.grad(o, (q, k, v), torch.randn_like(o))
    res["sdpa_mla_math"] = list(o.shape)
    res["vector_norm_inf"] = float(torch.linalg.vector_norm(x, ord=math.inf)) > 0
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
