"""Measure what toposcan predicts, on one real GPU: GEMM throughput by shape, and training steps of
small GPT models (step time and peak memory).

Run on a machine with PyTorch and a CUDA GPU:

    python benches/device/measure.py --out DIR                       # `fit` set: DIR/gemm.csv, steps.csv, env.json
    python benches/device/measure.py --out DIR --set heldout         # also `llama`, `llama2`
    python benches/device/measure.py --out DIR --set llama --gemm-calls 10   # GEMMs timed over 10 calls
    python benches/device/measure.py --out DIR --set energy          # J/token from NVML: steps.csv, power.json
    python benches/device/measure.py --out DIR --set membw           # HBM bandwidth of elementwise kernels
    python benches/device/measure.py --out DIR --smoke               # tiny configs on the CPU, to check the script

What each run measured, and how it compares with toposcan's predictions (some committed before the
run), is in python/toposcan/data/measured/README.md and `topo validate -t h200-steps` (-mem, -gemm,
-energy).

The model is the GPT-3 style model toposcan assumes for a model given only by its shape (GELU MLP of
4 x hidden, learned positions, tied embeddings, LayerNorm with biases), trained the way Megatron-LM
keeps its state so the memory can be compared term by term: bf16 weights and gradients, an fp32
master copy with AdamW's two fp32 moments (2 + 2 + 12 bytes per parameter), hidden dropout 0.1
(1-byte masks), flash attention through PyTorch's scaled_dot_product_attention, and a cross
entropy on an fp32 copy of the logits. Full recompute checkpoints each layer's input.

Timing: CUDA events around each whole step (forward, backward, optimizer), median of the timed
steps after warm-up steps. Memory: torch.cuda.max_memory_allocated over the whole run of a config
(allocator reset and cache emptied between configs), and device memory in use (context included)
after the steps.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

# (name, layers, hidden, heads, vocab, seq, mbs, recompute). Chosen to span head dimension (64-136),
# widths whose GEMMs fill the SMs well or badly, sequence 512-8192, micro batch 1-32, recompute
# none/full, and a vocabulary that is not a multiple of 8 (GPT-2's 50257).
CONFIGS = [
    ("gpt-125m-v50257", 12, 768, 12, 50257, 1024, 16, "none"),
    ("gpt-125m", 12, 768, 12, 50304, 1024, 16, "none"),
    ("gpt-350m-s512", 24, 1024, 16, 50304, 512, 32, "none"),
    ("gpt-350m-s1024", 24, 1024, 16, 50304, 1024, 8, "none"),
    ("gpt-350m-s2048", 24, 1024, 16, 50304, 2048, 4, "none"),
    ("gpt-deep-thin", 48, 1024, 16, 50304, 1024, 16, "none"),
    ("gpt-1.3b", 24, 2048, 16, 50304, 2048, 4, "none"),
    ("gpt-1.3b-h32", 24, 2048, 32, 50304, 2048, 4, "none"),
    ("gpt-1.3b-mbs8", 24, 2048, 16, 50304, 2048, 8, "none"),
    ("gpt-1.3b-full", 24, 2048, 16, 50304, 2048, 4, "full"),
    ("gpt-1.3b-v50257", 24, 2048, 16, 50257, 2048, 4, "none"),
    ("gpt-1.3b-s8192", 16, 2048, 16, 50304, 8192, 1, "none"),
    ("gpt-1.3b-s8192-full", 16, 2048, 16, 50304, 8192, 1, "full"),
    ("gpt-2.7b", 32, 2560, 20, 50304, 2048, 4, "none"),
    ("gpt-2.7b-h32", 32, 2560, 32, 50304, 2048, 4, "none"),
    ("gpt-2.7b-s4096", 32, 2560, 20, 50304, 4096, 2, "none"),
    ("gpt-h4096-mbs2", 16, 4096, 32, 50304, 2048, 2, "none"),
    ("gpt-h4096-h64", 16, 4096, 64, 50304, 2048, 2, "none"),
    ("gpt-h4096-full-mbs2", 16, 4096, 32, 50304, 2048, 2, "full"),
    ("gpt-h4096-full-mbs4", 16, 4096, 32, 50304, 2048, 4, "full"),
    ("gpt-h4352", 16, 4352, 32, 50304, 2048, 2, "none"),
]
# A second set, not used to fit the pytorch-h200 profile: its predictions were committed before it
# was measured (data/measured/README.md). New widths, head counts, depths, sequence lengths and
# vocabularies; a 6.7B model at the edge of 141 GB (one predicted to fit, one not); and three
# configurations of the first set again, for the run-to-run spread.
HELDOUT = [
    ("gpt-125m-s2048", 12, 768, 12, 50304, 2048, 8, "none"),
    ("gpt-h1536-l24", 24, 1536, 12, 50304, 2048, 8, "none"),
    ("gpt-h1536-h24", 24, 1536, 24, 50304, 2048, 8, "none"),
    ("gpt-h1536-v32000", 24, 1536, 12, 32000, 2048, 8, "none"),
    ("gpt-h1536-v50257", 24, 1536, 12, 50257, 2048, 8, "none"),
    ("gpt-h3072-l16", 16, 3072, 24, 50304, 2048, 4, "none"),
    ("gpt-h3072-s1024", 16, 3072, 24, 50304, 1024, 8, "none"),
    ("gpt-h3072-s4096-full", 16, 3072, 24, 50304, 4096, 4, "full"),
    ("gpt-h3072-s16384", 8, 3072, 24, 50304, 16384, 1, "none"),
    ("gpt-h5120-l8", 8, 5120, 40, 50304, 2048, 4, "none"),
    ("gpt-h5120-l8-full", 8, 5120, 40, 50304, 2048, 8, "full"),
    ("gpt-h6144-l6", 6, 6144, 48, 50304, 2048, 2, "none"),
    ("gpt-h2048-l4-mbs64", 4, 2048, 16, 50304, 512, 64, "none"),
    ("gpt-h2048-l40", 40, 2048, 16, 50304, 2048, 2, "none"),
    ("gpt-6.7b-full-mbs1", 32, 4096, 32, 50304, 2048, 1, "full"),
    ("gpt-6.7b-full-mbs4", 32, 4096, 32, 50304, 2048, 4, "full"),
    ("gpt-6.7b-mbs2", 32, 4096, 32, 50304, 2048, 2, "none"),
    ("gpt-6.7b-mbs4", 32, 4096, 32, 50304, 2048, 4, "none"),
    ("gpt-6.7b-mbs6", 32, 4096, 32, 50304, 2048, 6, "none"),
    ("gpt-125m", 12, 768, 12, 50304, 1024, 16, "none"),
    ("gpt-1.3b", 24, 2048, 16, 50304, 2048, 4, "none"),
    ("gpt-h4096-mbs2", 16, 4096, 32, 50304, 2048, 2, "none"),
]
# Llama-style models (SwiGLU, RMSNorm, rotary positions, grouped-query attention with the K/V heads
# repeated as Hugging Face's `repeat_kv` does, no biases, untied LM head, no dropout), measured after
# their predictions were committed: (name, layers, hidden, heads, kv_heads, ffn, vocab, seq, mbs,
# recompute).
LLAMA = [
    ("llama-h2048-kv8", 16, 2048, 32, 8, 5632, 32000, 2048, 4, "none"),
    ("llama-h2048-mha", 16, 2048, 32, 32, 5632, 32000, 2048, 4, "none"),
    ("llama-h2048-kv8-full", 16, 2048, 32, 8, 5632, 32000, 2048, 8, "full"),
    ("llama-h2048-kv4-l22", 22, 2048, 32, 4, 5632, 32000, 2048, 4, "none"),
    ("llama-h2048-hd128-s4096", 16, 2048, 16, 16, 5632, 32000, 4096, 2, "none"),
    ("llama-h2048-s1024-mbs16", 16, 2048, 32, 8, 5632, 32000, 1024, 16, "none"),
    ("llama-h2560-kv4", 12, 2560, 20, 4, 6912, 50304, 2048, 4, "none"),
    ("llama-h3072-v128k", 28, 3072, 24, 8, 8192, 128256, 2048, 2, "none"),
    ("llama-h4096-v128k", 8, 4096, 32, 8, 14336, 128256, 2048, 2, "none"),
    ("llama-h4096-v128k-s8192-full", 8, 4096, 32, 8, 14336, 128256, 8192, 1, "full"),
]
# A second Llama-style set, measured after the model learned eager SwiGLU, rotary and repeat_kv
# (`fused_kernels = false`) from the first, and predicted (committed) before this run.
LLAMA2 = [
    ("llama2-h1536-kv4", 16, 1536, 12, 4, 4096, 32000, 2048, 8, "none"),
    ("llama2-h1536-mqa", 16, 1536, 12, 1, 4096, 32000, 2048, 8, "none"),
    ("llama2-h2304-kv6-s512", 18, 2304, 18, 6, 6144, 50304, 512, 32, "none"),
    ("llama2-h2048-kv8-s16384-full", 12, 2048, 16, 8, 5632, 32000, 16384, 1, "full"),
    ("llama2-h3584-kv4", 10, 3584, 28, 4, 9728, 65536, 2048, 4, "none"),
    ("llama2-h3584-kv4-full", 10, 3584, 28, 4, 9728, 65536, 2048, 8, "full"),
    ("llama2-h5120-kv8", 6, 5120, 40, 8, 13824, 32000, 4096, 2, "none"),
    ("llama2-h1024-l32-mbs32", 32, 1024, 16, 4, 2816, 32000, 1024, 32, "none"),
]
# A last mixed set, predicted by two variants of the pytorch-h200 profile before the run (the fitted
# one, and one whose gemm_efficiency is pinned to the isolated-GEMM level 0.709), to choose between
# them on data neither has seen.
MIXED = [
    ("mix-gpt-h2560-s1024", 24, 2560, 32, 50304, 1024, 8, "none"),
    ("mix-gpt-h3584-full", 20, 3584, 28, 50304, 2048, 4, "full"),
    ("mix-gpt-h1280-l36", 36, 1280, 20, 50304, 2048, 8, "none"),
    ("mix-gpt-h8192-l4", 4, 8192, 64, 50304, 2048, 2, "none"),
    ("mix-llama-h2816-kv2", 16, 2816, 22, 2, 7680, 32000, 2048, 4, "none"),
    ("mix-llama-h4096-kv8-full", 12, 4096, 32, 8, 11008, 32000, 4096, 2, "full"),
    ("mix-llama-h1792-mqa-s4096", 20, 1792, 14, 1, 4864, 50304, 4096, 4, "none"),
    ("mix-llama-h6144-kv8", 4, 6144, 48, 8, 16384, 128256, 2048, 2, "none"),
]

# The last held-out set: predicted by the current profile, and by the variant whose attention
# efficiency is taken from the kernel measurements of the same run (`--set kernels`), a procedure
# committed before the run.
MIXED2 = [
    ("mix2-gpt-h2048-s4096", 16, 2048, 16, 50304, 4096, 4, "none"),
    ("mix2-gpt-h3072-h48", 16, 3072, 48, 50304, 2048, 4, "none"),
    ("mix2-gpt-h1536-s8192-full", 12, 1536, 12, 50304, 8192, 2, "full"),
    ("mix2-gpt-h5120-v50257", 8, 5120, 40, 50257, 2048, 2, "none"),
    ("mix2-llama-h2048-kv2-s8192", 12, 2048, 16, 2, 5632, 32000, 8192, 2, "none"),
    ("mix2-llama-h3072-kv8-full", 16, 3072, 24, 8, 8192, 128256, 4096, 2, "full"),
    ("mix2-llama-h1024-mha-s2048", 24, 1024, 16, 16, 2816, 32000, 2048, 16, "none"),
    ("mix2-llama-h4096-kv4-s1024", 8, 4096, 32, 4, 11008, 32000, 1024, 8, "none"),
]

# Kernels: the LM head's three GEMMs (forward, input gradient, weight gradient) for an aligned and an
# unaligned vocabulary, and causal flash attention (forward, forward + backward) by shape.
LM_HEADS = [(t, v, h) for t in (8192, 16384) for v in (50257, 50304) for h in (768, 2048)]
ATTENTION = [(16, 12, 1024, 64), (8, 16, 2048, 64), (4, 16, 2048, 128), (4, 32, 2048, 64), (4, 20, 2048, 128),
             (8, 32, 2048, 80), (2, 16, 4096, 128), (1, 16, 8192, 128), (2, 24, 4096, 128), (32, 16, 512, 128),
             (1, 12, 16384, 128), (4, 40, 2048, 128)]


def time_calls(fn, reps: int = 10, calls: int = 10) -> float:
    """Median seconds per call over `reps` samples of `calls` back-to-back calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(calls):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3 / calls)
    return statistics.median(times)


def measure_kernels(out: str, device: torch.device) -> None:
    with open(os.path.join(out, "lm_head.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tokens", "vocab", "hidden", "op", "time_s", "tflops"])
        for t, v, h in LM_HEADS:
            x = torch.randn(t, h, device=device, dtype=torch.bfloat16)
            wt = torch.randn(v, h, device=device, dtype=torch.bfloat16)
            dy = torch.randn(t, v, device=device, dtype=torch.bfloat16)
            for op, fn in (("fwd", lambda: F.linear(x, wt)), ("dgrad", lambda: dy @ wt), ("wgrad", lambda: dy.t() @ x)):
                s = time_calls(fn)
                w.writerow([t, v, h, op, f"{s:.6e}", f"{2 * t * v * h / s / 1e12:.2f}"])
            del x, wt, dy
    with open(os.path.join(out, "attention.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["batch", "heads", "seq", "head_dim", "fwd_s", "fwd_bwd_s"])
        for b, nh, s, d in ATTENTION:
            q, k, v = (torch.randn(b, nh, s, d, device=device, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
            g = torch.randn(b, nh, s, d, device=device, dtype=torch.bfloat16)
            fwd = time_calls(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
            both = time_calls(lambda: torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=True),
                                                          (q, k, v), g))
            w.writerow([b, nh, s, d, f"{fwd:.6e}", f"{both:.6e}"])
            del q, k, v, g
    print(open(os.path.join(out, "lm_head.csv")).read() + open(os.path.join(out, "attention.csv")).read(), flush=True)


# Memory-bound kernels: achieved HBM bandwidth of the elementwise work a training step runs (copy,
# residual add, GELU, dropout with its mask, LayerNorm, an fp32 axpy as in the optimizer step), by tensor size.
MEMBW_SIZES = [1 << 20, 1 << 22, 1 << 24, 1 << 26, 1 << 28]


def measure_membw(out: str, device: torch.device, sizes: list[int]) -> None:
    """Bytes each op must move over its time: ``membw.csv`` (op, elements, bytes, time_s, gbs)."""
    with open(os.path.join(out, "membw.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["op", "elements", "bytes", "time_s", "gbs"])
        for n in sizes:
            x = torch.randn(n, device=device, dtype=torch.bfloat16)
            y = torch.randn(n, device=device, dtype=torch.bfloat16)
            z = torch.empty_like(x)
            x2 = x.view(-1, 2048) if n >= 2048 else x.view(1, -1)
            ln = nn.LayerNorm(x2.shape[-1], device=device, dtype=torch.bfloat16)
            p32, g32 = (torch.randn(max(1, n // 4), device=device) for _ in range(2))
            ops = [  # (name, fn, bytes moved)
                ("copy", lambda: z.copy_(x), 4 * n),
                ("add", lambda: torch.add(x, y, out=z), 6 * n),
                ("gelu", lambda: F.gelu(x, approximate="tanh"), 4 * n),
                ("dropout", lambda: F.dropout(x, 0.1, training=True), 5 * n),
                ("layernorm", lambda: ln(x2), 4 * n),
                # p += lr * g in fp32 (two reads, one write) on a quarter of the elements
                ("fp32_axpy", lambda: p32.add_(g32, alpha=1e-3), 4 * 3 * (n // 4)),
            ]
            with torch.no_grad():
                for name, fn, nbytes in ops:
                    t = time_calls(fn, reps=10, calls=10) if device.type == "cuda" else 1.0
                    w.writerow([name, n, nbytes, f"{t:.6e}", f"{nbytes / t / 1e9:.1f}"])
            del x, y, z, x2, ln, p32, g32
    print(open(os.path.join(out, "membw.csv")).read(), flush=True)


# Energy: configurations of the sets above, from low to high GEMM share, each run for ENERGY_S
# seconds of steady steps between two readings of NVML's energy counter.
ENERGY = ["gpt-125m", "gpt-350m-s512", "gpt-1.3b", "gpt-2.7b", "gpt-h4096-mbs2", "gpt-h4096-full-mbs4",
          "gpt-6.7b-full-mbs4", "llama-h2048-kv8", "llama-h4096-v128k"]
ENERGY_S = 8.0
SMOKE = [
    ("smoke-a", 2, 64, 4, 101, 32, 2, "none"),
    ("smoke-b", 2, 64, 2, 128, 32, 2, "full"),
    ("smoke-llama", 2, 64, 4, 2, 96, 128, 32, 2, "full"),
    ("smoke-llama-mha", 2, 64, 4, 4, 96, 128, 32, 2, "none"),
]
DROPOUT = 0.1


class Block(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, 4 * hidden)
        self.fc2 = nn.Linear(4 * hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(b, s, h)
        x = x + F.dropout(self.proj(y), DROPOUT, self.training)
        return x + F.dropout(self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh")), DROPOUT, self.training)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding, the rotate-half form."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int, ffn: int) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, hidden // heads
        self.n1 = nn.RMSNorm(hidden)
        self.qkv = nn.Linear(hidden, (heads + 2 * kv_heads) * self.hd, bias=False)
        self.proj = nn.Linear(hidden, hidden, bias=False)
        self.n2 = nn.RMSNorm(hidden)
        self.up = nn.Linear(hidden, 2 * ffn, bias=False)  # gate and up projections, one GEMM
        self.down = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        qkv = self.qkv(self.n1(x)).view(b, s, self.heads + 2 * self.kv_heads, self.hd).transpose(1, 2)
        q, k, v = qkv.split([self.heads, self.kv_heads, self.kv_heads], dim=1)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, s, h)
        x = x + self.proj(y)
        gate, up = self.up(self.n2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class Llama(nn.Module):
    def __init__(self, layers: int, hidden: int, heads: int, kv_heads: int, ffn: int, vocab: int, seq: int,
                 full_recompute: bool) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, hidden)
        self.blocks = nn.ModuleList(LlamaBlock(hidden, heads, kv_heads, ffn) for _ in range(layers))
        self.norm = nn.RMSNorm(hidden)
        self.head = nn.Linear(hidden, vocab, bias=False)
        hd = hidden // heads
        freq = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        ang = torch.outer(torch.arange(seq, dtype=torch.float32), freq)
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)
        self.full_recompute = full_recompute

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx)
        cos, sin = self.cos[: idx.shape[1]], self.sin[: idx.shape[1]]
        for blk in self.blocks:
            x = checkpoint(blk, x, cos, sin, use_reentrant=False) if self.full_recompute else blk(x, cos, sin)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


class GPT(nn.Module):
    def __init__(self, layers: int, hidden: int, heads: int, vocab: int, seq: int, full_recompute: bool) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, hidden)
        self.wpe = nn.Embedding(seq, hidden)
        self.blocks = nn.ModuleList(Block(hidden, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(hidden)
        self.full_recompute = full_recompute

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = F.dropout(self.wte(idx) + self.wpe.weight[: idx.shape[1]], DROPOUT, self.training)
        for blk in self.blocks:
            x = checkpoint(blk, x, use_reentrant=False) if self.full_recompute else blk(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


class MixedAdam:
    """AdamW on fp32 master weights of a bf16 model, stepped one layer at a time so that only one
    layer's fp32 gradients exist at once (the bf16 gradient is freed as its fp32 copy is made)."""

    def __init__(self, model: nn.Module) -> None:
        in_blocks = {id(p) for b in model.blocks for p in b.parameters()}
        groups = [[p for p in model.parameters() if id(p) not in in_blocks]]
        groups += [list(b.parameters()) for b in model.blocks]
        fused = next(model.parameters()).is_cuda
        self.parts = []
        for g in groups:
            masters = [p.detach().float().clone().requires_grad_(True) for p in g]
            opt = torch.optim.AdamW(masters, lr=1e-4, weight_decay=0.1, fused=fused or None)
            self.parts.append((g, masters, opt))

    def step(self) -> None:
        for params, masters, opt in self.parts:
            for p, m in zip(params, masters):
                m.grad = p.grad.float()
                p.grad = None
            opt.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                try:
                    torch._foreach_copy_(params, masters)
                except (RuntimeError, TypeError, AttributeError):
                    for p, m in zip(params, masters):
                        p.copy_(m)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class EnergyMeter:
    """Joules from NVML's total-energy counter (millijoules since the driver loaded; Volta and later)."""

    def __init__(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self.nvml = pynvml
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)

    def joules(self) -> float:
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3


def measure_energy(step, meter: EnergyMeter, seconds: float) -> tuple[int, float, float]:
    """(steps, seconds, joules) of `step()` run back to back for at least `seconds`."""
    torch.cuda.synchronize()
    e0, t0, n = meter.joules(), time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
        if n % 4 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    return n, time.perf_counter() - t0, meter.joules() - e0


def run_config(cfg: tuple, device: torch.device, warmup: int, steps: int, meter: "EnergyMeter | None" = None) -> dict:
    if len(cfg) == 10:
        name, layers, hidden, heads, kv_heads, ffn, vocab, seq, mbs, recompute = cfg
        arch = "llama"
    else:
        name, layers, hidden, heads, vocab, seq, mbs, recompute = cfg
        arch, kv_heads, ffn = "gpt", heads, 4 * hidden
    row = {"arch": arch, "name": name, "layers": layers, "hidden": hidden, "heads": heads, "kv_heads": kv_heads,
           "ffn_hidden": ffn, "vocab": vocab, "seq_len": seq,
           "mbs": mbs, "recompute": recompute, "params": 0, "step_time_s": math.nan, "step_time_min_s": math.nan,
           "step_time_max_s": math.nan, "peak_allocated_gib": math.nan, "peak_reserved_gib": math.nan,
           "device_used_gib": math.nan, "oom": 0}
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = opt = None
    try:
        torch.manual_seed(0)
        with device:  # initialize on the GPU: a CPU init of billions of parameters takes longer than the steps
            if arch == "llama":
                model = Llama(layers, hidden, heads, kv_heads, ffn, vocab, seq, recompute == "full")
            else:
                model = GPT(layers, hidden, heads, vocab, seq, recompute == "full")
            model = model.to(dtype=torch.bfloat16)
        row["params"] = parameter_count(model)
        opt = MixedAdam(model)
        if cuda:  # the peak of training, not of the fp32 initialization
            torch.cuda.reset_peak_memory_stats()
        idx = torch.randint(0, vocab, (mbs, seq), device=device)
        tgt = torch.randint(0, vocab, (mbs, seq), device=device)
        times = []
        for i in range(warmup + steps):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
            else:
                t0 = time.perf_counter()
            loss = model(idx, tgt)
            loss.backward()
            opt.step()
            if cuda:
                end.record()
                end.synchronize()
                dt = start.elapsed_time(end) / 1e3
            else:
                dt = time.perf_counter() - t0
            if i >= warmup:
                times.append(dt)
            if not math.isfinite(loss.item()):
                raise RuntimeError(f"{name}: loss is not finite")
        row["step_time_s"] = statistics.median(times)
        row["step_time_min_s"], row["step_time_max_s"] = min(times), max(times)
        if meter is not None:
            def step() -> None:
                model(idx, tgt).backward()
                opt.step()
            n, secs, joules = measure_energy(step, meter, ENERGY_S)
            row.update(energy_steps=n, energy_seconds=secs, joules=joules, avg_power_w=joules / secs,
                       joules_per_token=joules / (n * mbs * seq))
        if cuda:
            row["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
            row["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
            free, total = torch.cuda.mem_get_info()
            row["device_used_gib"] = (total - free) / 2**30
    except torch.OutOfMemoryError:
        row["oom"] = 1
    finally:
        del model, opt
    return row


def time_gemm(m: int, n: int, k: int, device: torch.device, reps: int, calls: int = 1) -> float:
    """Median seconds of y = x W^T (the layout of nn.Linear), rotating over input sets so that
    operands that fit in L2 are not timed from the cache. Each sample times `calls` back-to-back
    calls between two events: with one, the host's launch latency (~20 us in eager PyTorch) is
    inside the sample, which matters for GEMMs of tens of microseconds."""
    sets = max(1, min(4, int(2 * 60e6 // max(1, 2 * (m * k + n * k)))))
    xs = [torch.randn(m, k, device=device, dtype=torch.bfloat16) for _ in range(sets)]
    ws = [torch.randn(n, k, device=device, dtype=torch.bfloat16) for _ in range(sets)]
    for i in range(3):
        F.linear(xs[i % sets], ws[i % sets])
    times = []
    for i in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for j in range(calls):
            F.linear(xs[(i + j) % sets], ws[(i + j) % sets])
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3 / calls)
    return statistics.median(times)


def gemm_shapes() -> list[tuple[str, int, int, int]]:
    """(label, m, n, k): the four forward GEMMs of a transformer layer per tensor-parallel rank for
    the widths of the seeds/001 quantization table (4096 tokens = micro batch 2 x 2048), a sweep of
    the output width at m = k = 4096, and the LM head with an aligned and an unaligned vocabulary."""
    shapes = []
    for h in (12288, 13312, 13824, 14336, 14400):
        for tp in (4, 8):
            shapes += [(f"qkv h{h} tp{tp}", 4096, 3 * h // tp, h), (f"proj h{h} tp{tp}", 4096, h, h // tp),
                       (f"fc1 h{h} tp{tp}", 4096, 4 * h // tp, h), (f"fc2 h{h} tp{tp}", 4096, h, 4 * h // tp)]
    shapes += [(f"sweep n{n}", 4096, n, 4096) for n in range(256, 12289, 128)]
    shapes += [(f"lmhead v{v} h{h}", 8192, v, h) for v in (50257, 50304) for h in (768, 2048)]
    return shapes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true", help="two tiny configs on the CPU")
    ap.add_argument("--set", choices=("fit", "heldout", "llama", "llama2", "mixed", "mixed2", "kernels", "energy",
                                      "membw"),
                    default="fit",
                    help="which configurations")
    ap.add_argument("--gemm-calls", type=int, default=1,
                    help="back-to-back calls per timed sample (1: one call between events, which then also "
                         "times the launch; 10 amortizes it, what the 'llama' run used)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--budget", type=float, default=240.0, help="seconds; later configs are skipped after it")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    device = torch.device("cpu" if args.smoke else "cuda")
    env = {"torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, sms=p.multi_processor_count, memory_gib=p.total_memory / 2**30,
                   cuda=torch.version.cuda)
        try:
            env["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:
            env["nvidia_smi"] = f"unavailable: {e}"
    with open(os.path.join(args.out, "env.json"), "w") as f:
        json.dump(env, f, indent=1)
    print(json.dumps(env), flush=True)

    if args.set == "kernels":
        measure_kernels(args.out, device)
        return
    if args.set == "membw":
        measure_membw(args.out, device, [1 << 12] if args.smoke else MEMBW_SIZES)
        return
    if device.type == "cuda" and args.set not in ("energy", "mixed2"):
        t0 = time.time()
        with open(os.path.join(args.out, "gemm.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["label", "m", "n", "k", "time_s", "tflops"])
            for label, m, n, k in gemm_shapes():
                t = time_gemm(m, n, k, device, reps=20, calls=args.gemm_calls)
                w.writerow([label, m, n, k, f"{t:.6e}", f"{2 * m * n * k / t / 1e12:.2f}"])
        print(f"gemm sweep: {time.time() - t0:.1f} s", flush=True)

    meter = None
    configs = SMOKE if args.smoke else {"heldout": HELDOUT, "llama": LLAMA, "llama2": LLAMA2, "mixed": MIXED,
                                              "mixed2": MIXED2}.get(args.set, CONFIGS)
    if args.set == "energy" and not args.smoke:
        meter = EnergyMeter()
        by_name = {c[0]: c for c in CONFIGS + HELDOUT + LLAMA}
        configs = [by_name[n] for n in ENERGY]
        # The two ends: the idle card, and back-to-back 8192^3 bf16 matrix products.
        torch.cuda.synchronize()
        e0, t0 = meter.joules(), time.perf_counter()
        time.sleep(3.0)
        idle_w = (meter.joules() - e0) / (time.perf_counter() - t0)
        a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
        b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
        for _ in range(10):
            a @ b
        n, secs, joules = measure_energy(lambda: a @ b, meter, ENERGY_S)
        gemm = {"idle_power_w": idle_w, "gemm_power_w": joules / secs, "gemm_tflops": n * 2 * 8192**3 / secs / 1e12}
        del a, b
        with open(os.path.join(args.out, "power.json"), "w") as f:
            json.dump(gemm, f, indent=1)
        print(json.dumps(gemm), flush=True)
    rows = []
    fields = None
    begin = time.time()
    for cfg in configs:
        t0 = time.time()
        if t0 - begin > args.budget:
            print(f"budget spent: {cfg[0]} and later skipped", flush=True)
            break
        row = run_config(cfg, device, 1 if args.smoke else args.warmup, 2 if args.smoke else args.steps, meter)
        rows.append(row)
        # every key any row has (an OOM row has no energy columns), in first-seen order
        fields = list(dict.fromkeys(k for r in rows for k in r))
        print(f"{row['name']:>22} params {row['params'] / 1e9:6.3f}B step {row['step_time_s']:.4f} s "
              f"(min {row['step_time_min_s']:.4f} max {row['step_time_max_s']:.4f}) alloc "
              f"{row['peak_allocated_gib']:.2f} GiB used {row['device_used_gib']:.2f} GiB oom {row['oom']} "
              f"[{time.time() - t0:.1f} s]" + (f" {row['avg_power_w']:.0f} W, {row['joules_per_token']:.4f} J/token"
                                                  if "avg_power_w" in row else ""), flush=True)
        with open(os.path.join(args.out, "steps.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, restval="")
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
