"""End-to-end benchmarks: `toposcan.enumerate` (scoring + reduction + Polars frame) on spaces of
10^6, 10^7 and 10^8 candidates, with 1 and 2 threads, its peak RSS, and `topo enumerate --nodes 48
--gpu a100-80` from shell start to printed table.

Run: `python benches/bench_python.py [--big | --huge]` (10^8; and 10^9) after `pip install .`; prints Markdown rows for
benches/RESULTS.md. Each enumerate run is a fresh subprocess so peak RSS is its own.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, resource, toposcan
size, kind = float(sys.argv[1]), sys.argv[2]
heads = [16, 32, 64, 96, 128]
# 41 layers x 5 heads x 4 tp x 4 mbs x 2 sp x 3 recompute x 13 pp x 4 ZeRO per hidden value
per_hidden = 41 * 5 * 4 * 4 * 2 * 3 * 13 * 4
n_hidden = max(1, round(size / per_hidden))
hidden = [8192 + 64 * i for i in range(n_hidden)]
kw = dict(gpu="a100-80", nodes=48, hidden=hidden, layers=range(60, 101), heads=heads, with_stats=True)
# One small call first: the one-time cost (catalog TOML parsing, first Polars frame, ~20 ms) is
# paid by every process once and is reported by the CLI timing below, not folded into the rates.
toposcan.enumerate(gpu="a100-80", nodes=1, top=1)
t0 = time.perf_counter()
if kind == "top":
    df, st = toposcan.enumerate(**kw, top=100)
else:
    df, st = toposcan.enumerate(**kw, pareto=("step_time_s", "mem_gb"))
wall = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"candidates": st["candidates"], "scored": st["scored"], "core_s": st["seconds"], "wall_s": wall,
                  "rows": df.height, "rss_mib": rss, "threads": st["threads"]}))
"""


def run(size: float, kind: str, threads: int, repeats: int = 3) -> dict:
    """The median run (by wall time) of `repeats` fresh processes."""
    env = dict(os.environ, TOPOSCAN_THREADS=str(threads))
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", CHILD, str(size), kind], env=env, capture_output=True, text=True,
                             check=True)
        runs.append(json.loads(out.stdout))
    return sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]


def cli_time(repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(["topo", "enumerate", "--nodes", "48", "--gpu", "a100-80"], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    sizes = [1e6, 1e7] + ([1e8] if "--big" in sys.argv or "--huge" in sys.argv else [])
    print("| run | candidates | scored | wall s | M candidates/s | M scored/s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for threads in (1, 2):
        for size in sizes:
            for kind in ("top", "pareto"):
                r = run(size, kind, threads)
                print(f"| enumerate {'top-100' if kind == 'top' else 'Pareto'}, {threads} thread(s) | {r['candidates']:,} | "
                      f"{r['scored']:,} | {r['wall_s']:.3f} | {r['candidates'] / r['wall_s'] / 1e6:.1f} | "
                      f"{r['scored'] / r['wall_s'] / 1e6:.2f} | {r['rss_mib']:.0f} |")
    if "--huge" in sys.argv:  # memory bounded by the answer, not the space
        for kind in ("top", "pareto"):
            r = run(1e9, kind, 2, repeats=1)
            print(f"| enumerate {'top-100' if kind == 'top' else 'Pareto'}, 2 thread(s) | {r['candidates']:,} | "
                  f"{r['scored']:,} | {r['wall_s']:.3f} | {r['candidates'] / r['wall_s'] / 1e6:.1f} | "
                  f"{r['scored'] / r['wall_s'] / 1e6:.2f} | {r['rss_mib']:.0f} |")
    print(f"\n`topo enumerate --nodes 48 --gpu a100-80`, shell start to printed table (median of 7): {cli_time():.3f} s")
    self_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"largest child peak RSS: {self_rss:.0f} MiB")


if __name__ == "__main__":
    main()
