"""Host-side and fine-tuning numbers for issue 16 (CPU optimizer offload and LoRA), on one GPU machine:

1. `link`: host <-> device copy bandwidth, pinned and pageable host memory, H2D and D2H, 64 MiB - 1 GiB,
   and H2D + D2H at once on two streams (pinned).
2. `membw`: host memory bandwidth with PyTorch's CPU kernels (copy, triad, read-only sum) at 16/8/4/1
   threads, and one NumPy copy (single thread) for reference.
3. `adam`: torch.optim.AdamW stepped on the CPU over fp32 parameters (1e7, 5e7, 2e8 elements), fused=True
   and foreach=True, 16 threads (and 8 and 4 at 5e7); then `roundtrip`: the ZeRO-Offload step for N
   parameters: bf16 gradients D2H into pinned memory, upcast to the fp32 gradient, CPU AdamW, downcast
   to pinned bf16, H2D.
4. `steps`: training steps of a Llama-style decoder on the GPU, full fine-tuning against LoRA adapters
   (rank 16 and 64) on all seven linear layers of every block.

Run on a machine with PyTorch and a CUDA GPU:

    python benches/device/host_lora.py --out DIR --budget 290   # DIR/host.csv, lora_steps.csv, env.json, log.txt
    python benches/device/host_lora.py --smoke                  # tiny sizes: without PyTorch, the grids,
                                                                # parameter counts and CSV writing; with
                                                                # PyTorch, every section on the CPU too

Every section is time-boxed (absolute deadlines as fractions of --budget, so a section that finishes early
leaves its time to the next) and wrapped so that one failure does not lose the others; rows are written
and flushed as they are measured.

Conventions (what the GB/s columns divide; decimal GB):
- copies over the link: the bytes copied; bidirectional: the bytes of both directions together.
- host `copy`: bytes read + bytes written (2 x size), as STREAM counts (write-allocate traffic not
  counted); `triad` a = b + s*c: 3 x size; `sum`: the bytes read.
- CPU AdamW: `bytes_counted` = 28 B per parameter, the least one fused pass must stream in fp32: read
  param, grad, exp_avg, exp_avg_sq (16 B), write param, exp_avg, exp_avg_sq (12 B). The foreach path
  makes several passes, so it moves more than it is credited with.
- Times: median of the samples after one warm-up (perf_counter around a synchronized region: the sizes
  make a sample at least ~1 ms, so the ~10-20 us of synchronization is under 2%). Training steps: CUDA
  events around forward, backward and optimizer of each step, median of the timed steps after warm-up.

The model in `steps` (built here, not imported, so this script stands alone): RMSNorm, rotary positions
(rotate-half), grouped-query attention with K/V repeated per head (as Hugging Face's `repeat_kv`), flash
attention through `scaled_dot_product_attention(is_causal=True)`, SwiGLU, no biases, untied LM head, loss
on an fp32 copy of the logits; fused QKV and fused gate+up GEMMs as `measure.py` builds them. Precision as
`measure.py` trains it (Megatron-LM style): bf16 weights and gradients, fp32 master copies of the
trainable parameters with AdamW's two fp32 moments (fused AdamW on the GPU, stepped block by block so
only one block's fp32 gradients exist at once). LoRA: adapters A (r x in) and B (out x r) per projection
(q, k, v, o, gate, up, down), bf16 like the base weights, trained through the same fp32 masters; the
three A's of q, k, v (and the two of gate, up) read the same input and are stored stacked as one
(3r x in) parameter, which is the same parameters and FLOPs as separate ones in one GEMM; B starts small
and random (not zero, so no GEMM sees zeros); scale alpha / r with alpha = 2r; no adapter dropout. Base
weights, embedding, norms and LM head frozen (requires_grad False).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback

MIB = 1 << 20
GIB = 1 << 30

LINK_SIZES = (64 * MIB, 256 * MIB, GIB)
BIDIR_SIZES = (256 * MIB, GIB)
MEMBW_BYTES = GIB  # per array, fp32
MEMBW_THREADS = (16, 8, 4, 1)
ADAM_SIZES = (10_000_000, 50_000_000, 200_000_000)
ADAM_THREADS = (16,)
ADAM_SCALING_SIZE = 50_000_000  # also stepped at these thread counts
ADAM_SCALING_THREADS = (8, 4)
ADAM_CHUNK = 1 << 24  # parameters held as tensors of at most 16M elements, as a model's are
ADAM_BYTES_PER_PARAM = 28
ROUNDTRIP_SIZES = (50_000_000, 200_000_000)

# Llama-3-8B's block (hidden 4096, 32 heads, 8 K/V heads, SwiGLU 14336) at 16 layers, so that full
# fine-tuning with fp32 masters and moments (16 B per parameter, ~60 GB) plus activations fits in 141 GB.
MODEL = dict(layers=16, hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=32000, seq=4096)
# (name, mode, lora rank, recompute, micro batch), in order of priority: the time box may cut the tail.
STEP_CONFIGS = (
    ("full", "full", 0, "none", 1),
    ("lora-r16", "lora", 16, "none", 1),
    ("lora-r64", "lora", 64, "none", 1),
    ("lora-r16-recompute", "lora", 16, "full", 1),
    ("full-recompute", "full", 0, "full", 1),
    ("full-mbs2", "full", 0, "none", 2),
    ("lora-r16-mbs2", "lora", 16, "none", 2),
)
WARMUP_STEPS = 2
TIMED_STEPS = 5

SMOKE = dict(
    link=(4 * MIB,), bidir=(4 * MIB,), membw=16 * MIB, membw_threads=(2, 1), adam=(100_000, 300_000),
    adam_threads=(2,), adam_scaling_size=100_000, adam_scaling_threads=(1,), roundtrip=(100_000,),
    model=dict(layers=2, hidden=128, heads=4, kv_heads=2, ffn=352, vocab=512, seq=64),
)

# end of each section's time box, as a fraction of --budget
SECTIONS = (("link", 0.10), ("membw", 0.17), ("adam", 0.40), ("roundtrip", 0.50), ("steps", 1.0))

HOST_FIELDS = ("section", "name", "memory", "size_bytes", "n_params", "threads", "samples", "time_s",
               "time_min_s", "time_max_s", "bytes_counted", "gbs", "params_per_s", "note")
STEP_FIELDS = ("name", "mode", "lora_rank", "recompute", "layers", "hidden", "heads", "kv_heads", "ffn_hidden",
               "vocab", "seq_len", "mbs", "params_total", "params_trainable", "adapter_params_expected",
               "steps", "step_time_s", "step_time_min_s", "step_time_max_s", "fwd_s", "bwd_s", "opt_s",
               "tokens_per_s", "peak_allocated_gib", "peak_reserved_gib", "device_used_gib", "loss", "oom", "note")


# ---------------------------------------------------------------------------------------------------
# Parameter counts (pure Python, so --smoke checks them without PyTorch)

def base_params(layers, hidden, heads, kv_heads, ffn, vocab, **_) -> int:
    """Parameters of the Llama-style model: per block QKV, output, gate+up, down and two RMSNorms;
    embedding, final norm, untied head."""
    kv = kv_heads * (hidden // heads)
    block = hidden * (hidden + 2 * kv) + hidden * hidden + hidden * 2 * ffn + ffn * hidden + 2 * hidden
    return layers * block + 2 * vocab * hidden + hidden


def adapter_params(rank, layers, hidden, heads, kv_heads, ffn, **_) -> int:
    """LoRA parameters r x (in + out) for each of q, k, v, o, gate, up, down in every block."""
    kv = kv_heads * (hidden // heads)
    shapes = ((hidden, hidden), (hidden, kv), (hidden, kv), (hidden, hidden), (hidden, ffn), (hidden, ffn),
              (ffn, hidden))
    return layers * sum(rank * (i + o) for i, o in shapes)


# ---------------------------------------------------------------------------------------------------
# Output

class Out:
    """CSV files written row by row (flushed), and a log echoed to stdout."""

    def __init__(self, folder: str):
        os.makedirs(folder, exist_ok=True)
        self.folder = folder
        self.files = {}
        self.logf = open(os.path.join(folder, "log.txt"), "a")

    def row(self, name: str, fields: tuple, row: dict):
        unknown = set(row) - set(fields)
        if unknown:
            raise KeyError(f"{name}: unknown columns {sorted(unknown)}")
        if name not in self.files:
            f = open(os.path.join(self.folder, name), "w", newline="")
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            self.files[name] = (f, w)
        f, w = self.files[name]
        w.writerow({k: fmt(row.get(k, "")) for k in fields})
        f.flush()

    def log(self, msg: str):
        line = f"[{time.strftime('%H:%M:%S', time.gmtime())}] {msg}"
        print(line, flush=True)
        self.logf.write(line + "\n")
        self.logf.flush()


def fmt(x):
    if isinstance(x, float):
        return "" if not math.isfinite(x) else f"{x:.6g}"
    return x


def stats(times: list) -> dict:
    return {"samples": len(times), "time_s": statistics.median(times), "time_min_s": min(times),
            "time_max_s": max(times)}


def sample(fn, sync, samples: int, deadline: float, warmup: int = 1) -> list:
    """Times of `fn()` (synchronized before and after), after `warmup` untimed calls; stops early (at
    least 2 samples) when the next one would pass the deadline."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    while len(times) < samples:
        if len(times) >= 2 and time.monotonic() + max(times) > deadline:
            break
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def sh(cmd: list) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as e:  # noqa: BLE001 - a missing tool is recorded, not fatal
        return f"unavailable: {e}"


# ---------------------------------------------------------------------------------------------------
# Environment

def env_info(torch, cuda: bool) -> dict:
    info = {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "python": sys.version.split()[0],
            "platform": platform.platform(), "os_cpu_count": os.cpu_count(),
            "sched_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
    try:
        with open("/proc/cpuinfo") as f:
            cpu = f.read()
        models = sorted({ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("model name")})
        flags = next((ln.split(":", 1)[1].split() for ln in cpu.splitlines() if ln.startswith("flags")), [])
        info["cpu_model"] = models
        info["cpu_flags_simd"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4")))
    except OSError as e:
        info["cpu_model"] = f"unavailable: {e}"
    try:
        with open("/proc/meminfo") as f:
            info["meminfo"] = {ln.split(":")[0]: ln.split(":")[1].strip() for ln in f.read().splitlines()[:4]}
    except OSError:
        pass
    info["lscpu"] = sh(["lscpu"])
    if torch is None:
        return info
    info["torch"] = torch.__version__
    info["torch_num_threads_default"] = torch.get_num_threads()
    try:
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001
        pass
    info["torch_parallel_info"] = torch.__config__.parallel_info()
    if cuda:
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, sms=p.multi_processor_count, gpu_mem_gib=p.total_memory / GIB,
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
        info["nvidia_smi"] = sh(["nvidia-smi", "--query-gpu=name,driver_version,power.limit,clocks.max.sm,"
                                 "pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,"
                                 "pcie.link.width.max", "--format=csv"])
        info["nvidia_smi_topo"] = sh(["nvidia-smi", "topo", "-m"])
    return info


# ---------------------------------------------------------------------------------------------------
# 1. Host link

def section_link(torch, out: Out, dev, cuda: bool, deadline: float, sizes: tuple, bidir_sizes: tuple, env: dict):
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    kinds = ("pinned", "pageable") if cuda else ("pageable",)
    for size in sizes:
        if time.monotonic() > deadline:
            out.log(f"link: out of time before {size} B")
            return
        gpu = torch.empty(size, dtype=torch.uint8, device=dev).random_()
        for mem in kinds:
            t0 = time.perf_counter()
            host = torch.empty(size, dtype=torch.uint8, pin_memory=(mem == "pinned"))
            host.fill_(7)  # touch every page before timing
            alloc_s = time.perf_counter() - t0
            reps = max(1, (256 * MIB) // size)  # back-to-back copies per sample, so a sample moves >= 256 MiB
            for direction in ("h2d", "d2h"):
                if time.monotonic() > deadline:
                    break
                if direction == "h2d":
                    def fn():
                        for _ in range(reps):
                            gpu.copy_(host, non_blocking=True)
                else:
                    def fn():
                        for _ in range(reps):
                            host.copy_(gpu, non_blocking=True)
                times = [t / reps for t in sample(fn, sync, 7, deadline)]
                s = stats(times)
                out.row("host.csv", HOST_FIELDS, dict(
                    section="link", name=direction, memory=mem, size_bytes=size, bytes_counted=size,
                    gbs=size / s["time_s"] / 1e9, note=f"{reps} copies per sample; alloc+touch {alloc_s:.3f}s",
                    **s))
                out.log(f"link {direction} {mem} {size // MIB} MiB: {size / s['time_s'] / 1e9:.1f} GB/s")
            del host
        del gpu
    if not cuda:
        return
    for size in bidir_sizes:
        if time.monotonic() > deadline:
            out.log("link: out of time before bidirectional")
            return
        h_src = torch.empty(size, dtype=torch.uint8, pin_memory=True).fill_(3)
        h_dst = torch.empty(size, dtype=torch.uint8, pin_memory=True).fill_(0)
        g_src = torch.empty(size, dtype=torch.uint8, device=dev).random_()
        g_dst = torch.empty(size, dtype=torch.uint8, device=dev)
        s1, s2 = torch.cuda.Stream(), torch.cuda.Stream()
        reps = max(1, (256 * MIB) // size)

        def fn():
            for _ in range(reps):
                with torch.cuda.stream(s1):
                    g_dst.copy_(h_src, non_blocking=True)
                with torch.cuda.stream(s2):
                    h_dst.copy_(g_src, non_blocking=True)
        times = [t / reps for t in sample(fn, sync, 7, deadline)]
        s = stats(times)
        out.row("host.csv", HOST_FIELDS, dict(
            section="link", name="bidir", memory="pinned", size_bytes=size, bytes_counted=2 * size,
            gbs=2 * size / s["time_s"] / 1e9, note="H2D and D2H of size_bytes each, two streams", **s))
        out.log(f"link bidir pinned {size // MIB} MiB each way: {2 * size / s['time_s'] / 1e9:.1f} GB/s total")
        del h_src, h_dst, g_src, g_dst
    env["pcie_after_copies"] = sh(["nvidia-smi", "--query-gpu=pcie.link.gen.current,pcie.link.width.current",
                                   "--format=csv"])


# ---------------------------------------------------------------------------------------------------
# 2. Host memory bandwidth

def section_membw(torch, out: Out, deadline: float, nbytes: int, threads: tuple):
    n = nbytes // 4
    a = torch.empty(n, dtype=torch.float32)
    b = torch.rand(n, dtype=torch.float32)
    c = torch.rand(n, dtype=torch.float32)
    a.fill_(1.0)
    nothing = lambda: None  # noqa: E731 - CPU work is synchronous
    ops = (("copy", 2, lambda: a.copy_(b)),
           ("triad", 3, lambda: torch.add(b, c, alpha=3.0, out=a)),
           ("sum", 1, lambda: b.sum()))
    before = torch.get_num_threads()
    try:
        for t in threads:
            torch.set_num_threads(t)
            for name, arrays, fn in ops:
                if time.monotonic() > deadline:
                    out.log(f"membw: out of time before {name} at {t} threads")
                    return
                s = stats(sample(fn, nothing, 7, deadline))
                counted = arrays * n * 4
                out.row("host.csv", HOST_FIELDS, dict(
                    section="membw", name=name, memory="pageable", size_bytes=n * 4, threads=t,
                    bytes_counted=counted, gbs=counted / s["time_s"] / 1e9, note="torch fp32", **s))
                out.log(f"membw {name} {t} threads: {counted / s['time_s'] / 1e9:.1f} GB/s")
        try:
            import numpy as np
            x, y = np.ones(n, dtype=np.float32), np.empty(n, dtype=np.float32)
            s = stats(sample(lambda: np.copyto(y, x), nothing, 5, deadline))
            out.row("host.csv", HOST_FIELDS, dict(
                section="membw", name="copy", memory="pageable", size_bytes=n * 4, threads=1,
                bytes_counted=2 * n * 4, gbs=2 * n * 4 / s["time_s"] / 1e9, note="numpy copyto fp32", **s))
        except ImportError:
            out.log("membw: numpy absent, numpy copy skipped")
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------
# 3. CPU AdamW, and the ZeRO-Offload round trip

def cpu_params(torch, n: int, chunk: int) -> list:
    """fp32 parameters with random gradients, n elements split into tensors of at most `chunk`."""
    params = []
    left = n
    while left > 0:
        k = min(chunk, left)
        p = torch.randn(k, dtype=torch.float32).requires_grad_(True)
        p.grad = torch.randn(k, dtype=torch.float32)
        params.append(p)
        left -= k
    return params


def adam_step_row(torch, out: Out, params: list, n: int, impl: str, threads: int, deadline: float):
    kw = {"fused": True} if impl == "fused" else {"foreach": True}
    torch.set_num_threads(threads)
    try:
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1, **kw)
        s = stats(sample(opt.step, lambda: None, 5, deadline, warmup=1))  # warm-up allocates the moments
    except Exception as e:  # noqa: BLE001 - e.g. fused CPU AdamW missing in this build
        out.row("host.csv", HOST_FIELDS, dict(section="adam", name=impl, n_params=n, threads=threads,
                                              note=f"failed: {type(e).__name__}: {e}"[:300]))
        out.log(f"adam {impl} {n}: failed {e}")
        return
    counted = ADAM_BYTES_PER_PARAM * n
    out.row("host.csv", HOST_FIELDS, dict(
        section="adam", name=impl, memory="pageable", n_params=n, threads=threads, bytes_counted=counted,
        gbs=counted / s["time_s"] / 1e9, params_per_s=n / s["time_s"],
        note="torch.optim.AdamW fp32 on CPU; bytes_counted = 28 B/param", **s))
    out.log(f"adam {impl} {n:.0e} params {threads} threads: {s['time_s'] * 1e3:.1f} ms/step, "
            f"{n / s['time_s'] / 1e9:.2f} Gparam/s, {counted / s['time_s'] / 1e9:.1f} GB/s at 28 B/param")
    del opt


def section_adam(torch, out: Out, deadline: float, sizes: tuple, threads: tuple, scaling_size: int,
                 scaling_threads: tuple, chunk: int):
    before = torch.get_num_threads()
    try:
        for n in sizes:
            if time.monotonic() > deadline:
                out.log(f"adam: out of time before {n}")
                return
            torch.set_num_threads(max(threads))
            params = cpu_params(torch, n, chunk)
            for impl in ("fused", "foreach"):
                for t in threads + (scaling_threads if n == scaling_size else ()):
                    if time.monotonic() > deadline:
                        break
                    adam_step_row(torch, out, params, n, impl, t, deadline)
            del params
    finally:
        torch.set_num_threads(before)


def section_roundtrip(torch, out: Out, dev, cuda: bool, deadline: float, sizes: tuple, threads: int):
    """One ZeRO-Offload optimizer step for n parameters held as flat buffers, phase by phase."""
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for n in sizes:
            if time.monotonic() > deadline:
                out.log(f"roundtrip: out of time before {n}")
                return
            g_grad = torch.randn(n, dtype=torch.bfloat16, device=dev)
            g_param = torch.empty(n, dtype=torch.bfloat16, device=dev)
            h_grad = torch.empty(n, dtype=torch.bfloat16, pin_memory=cuda)
            h_param = torch.empty(n, dtype=torch.bfloat16, pin_memory=cuda)
            master = torch.randn(n, dtype=torch.float32).requires_grad_(True)
            master.grad = torch.empty(n, dtype=torch.float32)
            try:
                opt = torch.optim.AdamW([master], lr=1e-4, weight_decay=0.1, fused=True)
                opt.step()
                impl = "fused"
            except Exception:  # noqa: BLE001
                opt = torch.optim.AdamW([master], lr=1e-4, weight_decay=0.1, foreach=True)
                impl = "foreach"

            def d2h():
                h_grad.copy_(g_grad, non_blocking=True)

            def upcast():
                master.grad.copy_(h_grad)

            def downcast():
                with torch.no_grad():
                    h_param.copy_(master)

            def h2d():
                g_param.copy_(h_param, non_blocking=True)

            phases = (("d2h_grad_bf16", d2h, 2 * n), ("upcast_grad", upcast, 6 * n),
                      ("adamw_" + impl, opt.step, ADAM_BYTES_PER_PARAM * n), ("downcast_param", downcast, 6 * n),
                      ("h2d_param_bf16", h2d, 2 * n))

            def whole():
                for _, fn, _ in phases:
                    fn()
                    sync()
            total = sample(whole, sync, 4, deadline)
            per = {name: sample(fn, sync, 4, deadline) for name, fn, _ in phases}
            for name, fn, counted in phases:
                s = stats(per[name])
                out.row("host.csv", HOST_FIELDS, dict(
                    section="roundtrip", name=name, memory="pinned" if cuda else "pageable", n_params=n,
                    threads=threads, bytes_counted=counted, gbs=counted / s["time_s"] / 1e9,
                    params_per_s=n / s["time_s"], note="phase alone", **s))
            s = stats(total)
            out.row("host.csv", HOST_FIELDS, dict(
                section="roundtrip", name="total", memory="pinned" if cuda else "pageable", n_params=n,
                threads=threads, params_per_s=n / s["time_s"], note="the five phases in sequence, unoverlapped",
                **s))
            out.log(f"roundtrip {n:.0e}: total {s['time_s'] * 1e3:.1f} ms; " + ", ".join(
                f"{k} {statistics.median(v) * 1e3:.1f}" for k, v in per.items()))
            del g_grad, g_param, h_grad, h_param, master, opt
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------
# 4. Full fine-tuning against LoRA on the GPU

def model_classes(torch):
    """The model's modules, defined here so the script imports without PyTorch."""
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.checkpoint import checkpoint

    class Adapters(nn.Module):
        """LoRA for a (possibly fused) base linear whose output is the concatenation of `outs`: the A's
        of all parts stacked in one (len(outs) r x in) parameter (one GEMM reads the shared input), one
        B (out_i x r) per part; returns the delta to add to the base output."""

        def __init__(self, inp: int, outs: tuple, rank: int):
            super().__init__()
            self.rank, self.scale = rank, 2.0  # alpha / r with alpha = 2r
            self.A = nn.Parameter(torch.empty(len(outs) * rank, inp))
            nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
            self.B = nn.ParameterList(nn.Parameter(torch.randn(o, rank) * 1e-3) for o in outs)

        def forward(self, x):
            low = F.linear(x, self.A).split(self.rank, dim=-1)
            parts = [F.linear(lo, b) for lo, b in zip(low, self.B)]
            delta = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
            return delta * self.scale

    def rotate(x, cos, sin):
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)

    class Block(nn.Module):
        def __init__(self, hidden, heads, kv_heads, ffn, rank):
            super().__init__()
            self.heads, self.kv_heads, self.hd = heads, kv_heads, hidden // heads
            kv = kv_heads * self.hd
            self.n1 = nn.RMSNorm(hidden)
            self.qkv = nn.Linear(hidden, hidden + 2 * kv, bias=False)
            self.proj = nn.Linear(hidden, hidden, bias=False)
            self.n2 = nn.RMSNorm(hidden)
            self.up = nn.Linear(hidden, 2 * ffn, bias=False)  # gate and up in one GEMM
            self.down = nn.Linear(ffn, hidden, bias=False)
            self.lora = None
            if rank:
                self.lora = nn.ModuleDict(dict(
                    qkv=Adapters(hidden, (hidden, kv, kv), rank), proj=Adapters(hidden, (hidden,), rank),
                    up=Adapters(hidden, (ffn, ffn), rank), down=Adapters(ffn, (hidden,), rank)))

        def lin(self, name, x):
            y = getattr(self, name)(x)
            return y if self.lora is None else y + self.lora[name](x)

        def forward(self, x, cos, sin):
            b, s, h = x.shape
            qkv = self.lin("qkv", self.n1(x)).view(b, s, self.heads + 2 * self.kv_heads, self.hd).transpose(1, 2)
            q, k, v = qkv.split([self.heads, self.kv_heads, self.kv_heads], dim=1)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            if self.kv_heads != self.heads:
                k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
                v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, s, h)
            x = x + self.lin("proj", y)
            gate, up = self.lin("up", self.n2(x)).chunk(2, dim=-1)
            return x + self.lin("down", F.silu(gate) * up)

    class Llama(nn.Module):
        def __init__(self, layers, hidden, heads, kv_heads, ffn, vocab, seq, rank, recompute):
            super().__init__()
            self.wte = nn.Embedding(vocab, hidden)
            self.blocks = nn.ModuleList(Block(hidden, heads, kv_heads, ffn, rank) for _ in range(layers))
            self.norm = nn.RMSNorm(hidden)
            self.head = nn.Linear(hidden, vocab, bias=False)
            hd = hidden // heads
            freq = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
            ang = torch.outer(torch.arange(seq, dtype=torch.float32), freq)
            self.register_buffer("cos", ang.cos(), persistent=False)  # [seq, hd / 2]: rotate-half form
            self.register_buffer("sin", ang.sin(), persistent=False)
            self.recompute = recompute

        def forward(self, idx, targets):
            x = self.wte(idx)
            cos, sin = self.cos[: idx.shape[1]], self.sin[: idx.shape[1]]
            for blk in self.blocks:
                x = checkpoint(blk, x, cos, sin, use_reentrant=False) if self.recompute else blk(x, cos, sin)
            logits = self.head(self.norm(x))
            return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))

    class MixedAdamW:
        """AdamW on fp32 masters of a bf16 model's trainable parameters, one group per block (fused on
        the GPU), so only one block's fp32 gradients exist at a time."""

        def __init__(self, model, fused: bool):
            in_blocks = {id(p) for b in model.blocks for p in b.parameters()}
            groups = [[p for p in model.parameters() if id(p) not in in_blocks and p.requires_grad]]
            groups += [[p for p in b.parameters() if p.requires_grad] for b in model.blocks]
            self.parts = []
            for g in groups:
                if not g:
                    continue
                masters = [p.detach().float().clone().requires_grad_(True) for p in g]
                opt = torch.optim.AdamW(masters, lr=1e-4, weight_decay=0.1, fused=fused or None)
                self.parts.append((g, masters, opt))

        def step(self):
            for params, masters, opt in self.parts:
                for p, m in zip(params, masters):
                    m.grad = p.grad.float()
                    p.grad = None
                opt.step()
                opt.zero_grad(set_to_none=True)
                with torch.no_grad():
                    torch._foreach_copy_(params, masters)

    return Llama, MixedAdamW


def check_frozen(model):
    """Frozen parameters got no gradient, trainable ones did (checked after the first backward)."""
    for pname, p in model.named_parameters():
        if (p.grad is not None) != p.requires_grad:
            raise RuntimeError(f"{pname}: requires_grad {p.requires_grad} but grad is "
                               f"{'set' if p.grad is not None else 'None'}")


def run_step_config(torch, classes, out: Out, dev, cuda: bool, cfg: tuple, model_cfg: dict, deadline: float):
    Llama, MixedAdamW = classes
    name, mode, rank, recompute, mbs = cfg
    m = model_cfg
    row = dict(name=name, mode=mode, lora_rank=rank, recompute=recompute, layers=m["layers"], hidden=m["hidden"],
               heads=m["heads"], kv_heads=m["kv_heads"], ffn_hidden=m["ffn"], vocab=m["vocab"], seq_len=m["seq"],
               mbs=mbs, adapter_params_expected=adapter_params(rank, **m), oom=0)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = opt = None
    try:
        torch.manual_seed(0)
        with dev:  # built on the GPU: a CPU init of billions of parameters takes longer than the steps
            model = Llama(m["layers"], m["hidden"], m["heads"], m["kv_heads"], m["ffn"], m["vocab"], m["seq"], rank,
                          recompute == "full").to(torch.bfloat16)
        if mode == "lora":
            for pname, p in model.named_parameters():
                p.requires_grad_(".lora." in pname)
        row["params_total"] = sum(p.numel() for p in model.parameters())
        row["params_trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        opt = MixedAdamW(model, fused=cuda)
        if cuda:  # the peak of training, not of the fp32 initialization
            torch.cuda.reset_peak_memory_stats()
        idx = torch.randint(0, m["vocab"], (mbs, m["seq"]), device=dev)
        tgt = torch.randint(0, m["vocab"], (mbs, m["seq"]), device=dev)
        steps, fwd, bwd, optim = [], [], [], []
        for i in range(WARMUP_STEPS + TIMED_STEPS):
            if i > WARMUP_STEPS and time.monotonic() + 2 * max(steps or [0.0]) > deadline:
                row["note"] = "time box cut the timed steps"
                break
            if cuda:
                ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
                ev[0].record()
                loss = model(idx, tgt)
                ev[1].record()
                loss.backward()
                ev[2].record()
                if i == 0:
                    check_frozen(model)
                opt.step()
                ev[3].record()
                ev[3].synchronize()
                t = [ev[j].elapsed_time(ev[j + 1]) / 1e3 for j in range(3)]
            else:
                t0 = time.perf_counter()
                loss = model(idx, tgt)
                t1 = time.perf_counter()
                loss.backward()
                t2 = time.perf_counter()
                if i == 0:
                    check_frozen(model)
                opt.step()
                t = [t1 - t0, t2 - t1, time.perf_counter() - t2]
            lv = loss.item()
            if not math.isfinite(lv):
                raise RuntimeError(f"{name}: loss is not finite")
            if i >= WARMUP_STEPS:
                fwd.append(t[0])
                bwd.append(t[1])
                optim.append(t[2])
                steps.append(sum(t))
        row.update(steps=len(steps), step_time_s=statistics.median(steps), step_time_min_s=min(steps),
                   step_time_max_s=max(steps), fwd_s=statistics.median(fwd), bwd_s=statistics.median(bwd),
                   opt_s=statistics.median(optim), tokens_per_s=mbs * m["seq"] / statistics.median(steps), loss=lv)
        if cuda:
            row["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
            row["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
            free, total = torch.cuda.mem_get_info()
            row["device_used_gib"] = (total - free) / GIB
    except torch.OutOfMemoryError:
        row["oom"] = 1
    finally:
        del model, opt
    out.row("lora_steps.csv", STEP_FIELDS, row)
    out.log(f"steps {name}: " + ("OOM" if row["oom"] else
            f"{row['step_time_s'] * 1e3:.1f} ms (fwd {row['fwd_s'] * 1e3:.1f}, bwd {row['bwd_s'] * 1e3:.1f}, "
            f"opt {row['opt_s'] * 1e3:.1f}), peak {row.get('peak_allocated_gib', float('nan')):.1f} GiB, "
            f"trainable {row['params_trainable']:,} of {row['params_total']:,}"))
    return row


def section_steps(torch, out: Out, dev, cuda: bool, deadline: float, model_cfg: dict):
    classes = model_classes(torch)
    for cfg in STEP_CONFIGS:
        if time.monotonic() > deadline - 5:
            out.log(f"steps: out of time before {cfg[0]}")
            return
        try:
            row = run_step_config(torch, classes, out, dev, cuda, cfg, model_cfg, deadline)
        except Exception as e:  # noqa: BLE001 - one failed configuration does not end the section
            out.log(f"steps {cfg[0]} failed: {type(e).__name__}: {e}")
            out.log(traceback.format_exc())
            continue
        if row.get("params_trainable") and cfg[1] == "lora" and row["params_trainable"] != row["adapter_params_expected"]:
            out.log(f"steps {cfg[0]}: trainable {row['params_trainable']} != expected {row['adapter_params_expected']}")


# ---------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="host_lora_out", help="folder for the CSV files, env.json and log.txt")
    ap.add_argument("--budget", type=float, default=290.0, help="seconds for all sections (after imports)")
    ap.add_argument("--sections", default=",".join(n for n, _ in SECTIONS),
                    help="comma-separated subset of " + ",".join(n for n, _ in SECTIONS))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, on the CPU unless a GPU is there")
    a = ap.parse_args(argv)
    wanted = [s.strip() for s in a.sections.split(",") if s.strip()]
    bad = [s for s in wanted if s not in dict(SECTIONS)]
    if bad:
        ap.error(f"--sections: unknown {bad}; allowed: {', '.join(n for n, _ in SECTIONS)}")
    if a.budget <= 0:
        ap.error("--budget: must be > 0 seconds")
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None:
        if not a.smoke:
            print("host_lora.py: PyTorch is not installed; only --smoke runs without it", file=sys.stderr)
            return 2
        return smoke_without_torch(a.out)

    out = Out(a.out)
    cuda = torch.cuda.is_available() and not a.smoke
    dev = torch.device("cuda" if cuda else "cpu")
    sz = SMOKE if a.smoke else dict(link=LINK_SIZES, bidir=BIDIR_SIZES, membw=MEMBW_BYTES, membw_threads=MEMBW_THREADS,
                                    adam=ADAM_SIZES, adam_threads=ADAM_THREADS, adam_scaling_size=ADAM_SCALING_SIZE,
                                    adam_scaling_threads=ADAM_SCALING_THREADS, roundtrip=ROUNDTRIP_SIZES, model=MODEL)
    threads = max(sz["adam_threads"]) if not a.smoke else 2
    torch.set_num_threads(min(threads, os.cpu_count() or 1) if a.smoke else threads)
    env = env_info(torch, cuda)
    env["args"] = vars(a)
    out.log(f"torch {torch.__version__}, device {dev}, cpus {os.cpu_count()}, budget {a.budget:.0f}s")
    t0 = time.monotonic()
    run = {
        "link": lambda d: section_link(torch, out, dev, cuda, d, sz["link"], sz["bidir"], env),
        "membw": lambda d: section_membw(torch, out, d, sz["membw"], sz["membw_threads"]),
        "adam": lambda d: section_adam(torch, out, d, sz["adam"], sz["adam_threads"], sz["adam_scaling_size"],
                                       sz["adam_scaling_threads"], ADAM_CHUNK if not a.smoke else 1 << 16),
        "roundtrip": lambda d: section_roundtrip(torch, out, dev, cuda, d, sz["roundtrip"], threads),
        "steps": lambda d: section_steps(torch, out, dev, cuda, d, sz["model"]),
    }
    status = {}
    for name, frac in SECTIONS:
        if name not in wanted:
            continue
        deadline = t0 + frac * a.budget
        ts = time.monotonic()
        try:
            run[name](deadline)
            status[name] = f"ok in {time.monotonic() - ts:.1f}s"
        except Exception as e:  # noqa: BLE001 - a failed section must not lose the others
            status[name] = f"failed after {time.monotonic() - ts:.1f}s: {type(e).__name__}: {e}"
            out.log(traceback.format_exc())
        out.log(f"section {name}: {status[name]}")
        if cuda:
            torch.cuda.empty_cache()
    env["sections"] = status
    env["elapsed_s"] = time.monotonic() - t0
    with open(os.path.join(a.out, "env.json"), "w") as f:
        json.dump(env, f, indent=1, default=str)
    summary(out)
    if a.smoke:
        return smoke_checks(a.out, wanted)
    return 0


def summary(out: Out):
    """The short table printed last (what the device tool's output tail shows)."""
    for name in ("host.csv", "lora_steps.csv"):
        path = os.path.join(out.folder, name)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            rows = list(csv.DictReader(f))
        print(f"== {name}: {len(rows)} rows")
        for r in rows:
            if name == "host.csv":
                print(f"{r['section']:9} {r['name']:16} {r['memory']:8} size={r['size_bytes']:>10} n={r['n_params']:>9} "
                      f"thr={r['threads']:>2} t={r['time_s']:>9} GB/s={r['gbs']:>7} p/s={r['params_per_s']:>9}")
            else:
                print(f"{r['name']:20} step={r['step_time_s']} fwd={r['fwd_s']} bwd={r['bwd_s']} opt={r['opt_s']} "
                      f"peak={r['peak_allocated_gib']} train={r['params_trainable']} total={r['params_total']} "
                      f"oom={r['oom']} {r['note']}")


def smoke_checks(folder: str, wanted: list) -> int:
    """After a smoke run with PyTorch: every section run wrote rows, adapter counts match the formula."""
    bad = []
    host = [s for s in ("link", "membw", "adam", "roundtrip") if s in wanted]
    if host:
        with open(os.path.join(folder, "host.csv")) as f:
            sections = {r["section"] for r in csv.DictReader(f)}
        bad += [f"no {s} rows" for s in host if s not in sections]
    steps = []
    if "steps" in wanted:
        with open(os.path.join(folder, "lora_steps.csv")) as f:
            steps = list(csv.DictReader(f))
        if len(steps) != len(STEP_CONFIGS):
            bad.append(f"{len(steps)} step rows, {len(STEP_CONFIGS)} configurations")
    for r in steps:
        if r["mode"] == "lora" and r["params_trainable"] != r["adapter_params_expected"]:
            bad.append(f"{r['name']}: trainable {r['params_trainable']} != {r['adapter_params_expected']}")
        if r["mode"] == "full" and int(r["params_total"]) != base_params(**SMOKE["model"]):
            bad.append(f"{r['name']}: total {r['params_total']} != {base_params(**SMOKE['model'])}")
        if not r["step_time_s"]:
            bad.append(f"{r['name']}: no step time")
    print("smoke:", "ok" if not bad else "; ".join(bad))
    return 1 if bad else 0


def smoke_without_torch(folder: str) -> int:
    """Without PyTorch: the counts for the real model, and the CSV writer, round-tripped."""
    m = MODEL
    print(f"model params {base_params(**m) / 1e9:.3f} B; LoRA r16 {adapter_params(16, **m):,}, "
          f"r64 {adapter_params(64, **m):,}")
    out = Out(folder)
    out.row("host.csv", HOST_FIELDS, dict(section="smoke", name="copy", time_s=0.5, gbs=float("nan")))
    try:
        out.row("host.csv", HOST_FIELDS, dict(section="smoke", bogus=1))
        print("smoke: unknown column accepted")
        return 1
    except KeyError:
        pass
    out.files["host.csv"][0].close()
    with open(os.path.join(folder, "host.csv")) as f:
        rows = list(csv.DictReader(f))
    ok = len(rows) == 1 and rows[0]["time_s"] == "0.5" and rows[0]["gbs"] == ""
    print("smoke (no torch):", "ok" if ok else f"bad CSV {rows}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
