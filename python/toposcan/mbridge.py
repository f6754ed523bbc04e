"""NVIDIA Megatron-Bridge's published training runs as toposcan configurations.

``data/published/megatron_bridge.csv`` holds the 293 runs of Megatron-Bridge's performance summaries
(``docs/performance-summary.md`` and ``docs/performance-summary-archive.md`` of NVIDIA-NeMo/Megatron-Bridge
at commit 067f987df0, as transcribed in the shared ``megatron_bridge_performance.csv``) column for
column, followed by the ``our_*`` columns that :func:`map_row` derives from them: the catalog names of
the model, GPU and precision, the data-parallel size, the measured step time, and ``skip``, the reason
a run cannot be expressed whatever the catalog holds (``data/published/README.md`` lists the reasons
and the assumptions).

Whether a mapped run can be scored *today* depends on the catalog (models, GPUs, precisions), which
grows; :func:`resolve` decides that at load time, so rows light up as entries land.

Regenerate the file from the shared transcription (the test suite checks that the committed ``our_*``
columns are what :func:`map_row` gives)::

    python -m toposcan.mbridge ../shared/data/megatron_bridge_performance.csv \\
        > python/toposcan/data/published/megatron_bridge.csv
"""

from __future__ import annotations

import csv
import io
import re
import sys
from typing import Any

#: The source's model names -> catalog names. Variants in parentheses (``(tokendrop)``, ``(w/o
#: MTP)``, ...) map to the same model; :data:`ROUTING` and the ``skip`` rules read the suffix.
MODELS = {
    "LLAMA3_8B": "llama-3-8b",
    "LLAMA3_70B": "llama-3-70b",
    "LLAMA3.1_405B": "llama-3.1-405b",
    "Qwen3_30B_a3B": "qwen3-30b-a3b",
    "Qwen3_235B_a22B": "qwen3-235b-a22b",
    "GPT OSS 120B": "gpt-oss-120b",
    "DeepSeekV3": "deepseek-v3",
    "Kimi_K2": "kimi-k2",
}

#: Model family of each catalog model: the leave-one-group-out groups within these runs.
FAMILY = {
    "llama-3-8b": "llama3", "llama-3-70b": "llama3", "llama-3.1-405b": "llama3",
    "qwen3-30b-a3b": "qwen3-moe", "qwen3-235b-a22b": "qwen3-moe",
    "gpt-oss-120b": "gpt-oss", "deepseek-v3": "deepseek-v3", "kimi-k2": "kimi-k2",
}

#: Catalog names tried, in order, for a mapped model when the first is not (yet) in the catalog.
#: ``llama-3-405b`` *is* Llama 3.1 405B's config (models.toml says so).
CATALOG_FALLBACK = {
    "llama-3.1-405b": ("llama-3.1-405b", "llama-3-405b"),
}

#: The source's system column -> catalog GPU.
GPUS = {"h100-80gb-sxm": "h100-80", "b200": "b200", "b300": "b300", "gb200": "gb200", "gb300": "gb300"}

#: The source's precision column -> (our precision, fp8 recipe). The 26.x tables write plain ``FP8``:
#: Megatron-Bridge's performance scripts offer exactly bf16, fp8_cs, fp8_mx and nvfp4
#: (``scripts/performance``: ``--compute_dtype``; recipes named ``*_fp8cs_config``, e.g.
#: ``llama31_405b_pretrain_1024gpu_h100_fp8cs_config`` "FP8 current-scaling"), so FP8 there is
#: current scaling, not delayed scaling.
PRECISIONS = {"bf16": ("bf16", ""), "fp8": ("fp8", "current"), "fp8-cs": ("fp8", "current"),
              "fp8-mx": ("mxfp8", ""), "mxfp8": ("mxfp8", ""), "nvfp4": ("nvfp4", "")}

#: LoRA rank of the LoRA runs: the source states none, so Megatron-Bridge's default, ``LoRA.dim``
#: 32 (NVIDIA-NeMo/Megatron-Bridge ``src/megatron/bridge/peft/lora.py``, ``dim: int = 32``, "Defaults
#: to 32", at commit 0191fc5e1b), on its default targets (linear_qkv, linear_proj, linear_fc1, linear_fc2).
LORA_DIM = 32

#: Skip reasons of the earlier mapping that the training-mode knobs of issue 16 now express: rows
#: with one are the ``new-coverage`` set (``our_set``), held out of the ``megatron-core`` fit, which
#: stays the joint fit of the rows it was fitted on.
NEW_COVERAGE = ("task-sft", "task-lora", "mtp", "fp8-blockwise", "ep-folding")

#: Static reasons a run cannot be expressed (the ``skip`` column), whatever the catalog holds.
SKIP_REASONS = {
    "hybrid-mamba": "Nemotron-H / Nemotron 3 hybrids: Mamba-2 layers, which the core does not model",
    "model-shape-unknown": "the source gives no shape for this model (DeepSeekV4 Flash)",
    "optimizer-muon": "Muon optimizer (Newton-Schulz iterations per matrix), not AdamW",
    "layout": "tp*pp*cp does not divide the GPU count",
    "ga-mismatch": "the source's GA disagrees with gbs / (mbs * dp), so its batch size is in doubt",
    "ep-folding": "ep divides neither dp*cp nor, with expert tensor parallelism 1 (MoE parallel folding), "
                  "tp*dp*cp",
}


def _container(notes: str) -> str:
    m = re.match(r"\s*([\d.]+) NeMo Container", notes)
    return m.group(1) if m else ""


def _task(notes: str) -> str:
    if "LoRA Performance" in notes:
        return "lora"
    if "SFT Performance" in notes:
        return "sft"
    return "pretrain"


def map_row(r: dict[str, str]) -> dict[str, str]:
    """The ``our_*`` columns of one source row (strings, as written to the CSV).

    Layout as Megatron-Core counts it: ``dp = n_gpus / (tp * pp * cp)``; expert parallelism is carved
    out of ``dp * cp`` (it does not multiply into the GPU count). ``FSDP > 0`` is Megatron-FSDP
    (ZeRO-3); ``FSDP = 0`` is DDP with the distributed optimizer (ZeRO-1), as the performance recipes
    run it. Step time from the measured throughput: ``gbs * seq_len / (tokens/s/GPU * n_gpus)``."""
    notes = r["notes"]
    name = r["model_name"].strip()
    base, _, suffix = name.partition(" (")
    suffix = suffix.rstrip(")")
    model = MODELS.get(base, "")
    skip, assumed = "", []
    n, tp, pp, cp = int(r["n_gpus"]), int(r["tp"]), int(r["pp"]), int(r["cp"])
    ep = int(r["ep"] or 1)
    task = _task(notes)
    variant = "paren" if "values in parentheses variant" in notes else "main"
    raw_prec = r["precision"].strip().lower()
    if raw_prec:
        precision, recipe = PRECISIONS[raw_prec]
        if raw_prec == "fp8":
            assumed.append("plain FP8 = current scaling (the performance recipes have no delayed scaling)")
    elif variant == "main":  # 25.09 tables state no precision; the footnote makes both values FP8
        precision, recipe = "fp8", "current"
        assumed.append("25.09 states no precision: FP8 (footnote), current scaling as in the 25.11 rerun")
    else:  # the footnote's "different FP8 quantization granularity": blockwise scaling
        precision, recipe = "fp8", "blockwise"
        assumed.append("25.09 variant in parentheses: FP8 with blockwise scaling (the footnote's other granularity)")
    # the reason the mapping before issue 16 gave (these rows are now new coverage, held out of the fit)
    earlier = ("task-" + task if task != "pretrain" else "mtp" if suffix == "w/ MTP"
               else "fp8-blockwise" if variant == "paren" and not raw_prec else "")
    if base.startswith("Nemotron"):
        skip = "hybrid-mamba"
    elif not model:
        skip = "model-shape-unknown"
    elif "Muon" in notes:
        skip = "optimizer-muon"
    elif n % (tp * pp * cp):
        skip = "layout"
    dp = n // (tp * pp * cp) if n % (tp * pp * cp) == 0 else 0
    ga = re.search(r"GA=(\d+)", notes)
    if not skip and ga and int(r["gbs"]) != int(ga.group(1)) * int(r["mbs"]) * dp:
        skip = "ga-mismatch"
    etp = ""
    if not skip and ep > 1 and (dp * cp) % ep:
        earlier = earlier or "ep-folding"
        if (tp * dp * cp) % ep:
            skip = "ep-folding"
        else:  # MoE parallel folding: experts over tp*dp*cp with expert tensor parallelism 1
            etp = "1"
            assumed.append("ep above dp*cp: MoE parallel folding, expert tensor parallel 1")
    if "FSDP" in r["zero_stage_or_fsdp"] and "FSDP=0" not in r["zero_stage_or_fsdp"]:
        zero = 3
    else:
        zero = 1
        assumed.append("distributed optimizer (ZeRO-1)")
    routing = "tokendrop" if suffix == "tokendrop" else ("dropless" if r["moe_experts"] else "")
    gbs, seq, tps = int(r["gbs"]), int(r["seq_len"]), float(r["measured_tokens_per_sec_per_gpu"])
    assumed.append("no activation recompute")
    if task == "lora":
        assumed.append(f"LoRA rank {LORA_DIM} (Megatron-Bridge's default)")
    # DeepSeek-V3 runs name MTP only in 25.11's "w/ MTP" / "w/o MTP" pair, whose main table rows were
    # the "w/o MTP" ones; the later plain rows are taken as the same configuration.
    mtp = {"w/ MTP": "1", "w/o MTP": "0"}.get(suffix, "")
    if model == "deepseek-v3" and not mtp:
        mtp = "0"
        assumed.append("no MTP module (as 25.11's main rows, 'w/o MTP')")
    if tp > 1:
        assumed.append("sequence parallel")
    return {
        "our_container": _container(notes),
        "our_task": task,
        "our_variant": variant,
        "our_model": model,
        "our_family": FAMILY.get(model, ""),
        "our_routing": routing,
        "our_gpu": GPUS[r["gpu"]],
        "our_precision": precision,
        "our_fp8_recipe": recipe,
        "our_dp": str(dp) if dp else "",
        "our_vpp": r["vpp"] or "1",
        "our_ep": str(ep),
        "our_etp": etp,
        "our_mtp": mtp,
        "our_lora_rank": str(LORA_DIM) if task == "lora" else "",
        "our_zero_stage": str(zero),
        "our_step_time_s": f"{gbs * seq / (tps * n):.6g}",
        "our_skip": skip,
        "our_set": "" if skip else "new-coverage" if earlier else "fit",
        "our_assumed": "; ".join(assumed),
    }


OUR_COLUMNS = tuple(map_row({
    "notes": "", "model_name": "x", "n_gpus": "1", "tp": "1", "pp": "1", "cp": "1", "ep": "", "precision": "bf16",
    "zero_stage_or_fsdp": "", "moe_experts": "", "gbs": "1", "seq_len": "1", "measured_tokens_per_sec_per_gpu": "1",
    "gpu": "b200", "vpp": ""}))


def build(rows: list[dict[str, str]]) -> str:
    """The CSV text: a ``row`` number (the source row, 1-based), the source's columns, then ours."""
    out = io.StringIO()
    fields = ["row", *rows[0].keys(), *OUR_COLUMNS]
    w = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for i, r in enumerate(rows, start=1):
        w.writerow({"row": i, **r, **map_row(r)})
    return out.getvalue()


if __name__ == "__main__":  # pragma: no cover - the regeneration step in the module docstring
    with open(sys.argv[1], encoding="utf-8", newline="") as f:
        sys.stdout.write(build(list(csv.DictReader(f))))
