//! Rows and columns: a scored candidate, and the column table every output is built from.
//!
//! [`COLUMNS`] is the one list of output columns: name, type and how to read it from a [`Row`].
//! The Python frame, the CLI table and objective lookup (`--sort`, `--objective`, Pareto axes) all
//! use it, so a column cannot mean two things.

use crate::score::Score;
use crate::spec::{Model, Strategy, CP_COMMS, FP8_RECIPES, OFFLOADS, SCHEDULES, TASKS};

/// One scored candidate. `index` is its position in the search space (stable tie-breaker).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub index: u64,
    pub nodes: u32,
    pub gpus_per_node: u32,
    pub model: Model,
    pub strategy: Strategy,
    pub score: Score,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Integer counts (exported as i64).
    Int,
    Float,
    Bool,
    /// Small categorical (exported as u8 codes plus labels).
    Cat(&'static [&'static str]),
}

/// Whether larger is better for a column when it is an objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub better: Better,
    pub get: fn(&Row) -> f64,
    pub doc: &'static str,
}

macro_rules! col {
    ($name:literal, $kind:expr, $better:ident, $doc:literal, |$r:ident| $e:expr) => {
        Column {
            name: $name,
            kind: $kind,
            better: Better::$better,
            get: |$r: &Row| ($e) as f64,
            doc: $doc,
        }
    };
}

const RECOMPUTE: &[&str] = &["none", "selective", "full"];
const PRECISION: &[&str] = &["fp32", "fp16", "bf16", "fp8", "mxfp8", "nvfp4"];

fn sc(r: &Row) -> &Score {
    &r.score
}

/// Every output column, in frame order.
pub static COLUMNS: &[Column] = &[
    col!("nodes", Kind::Int, Lower, "nodes used", |r| r.nodes),
    col!("gpus", Kind::Int, Lower, "GPUs used: dp*tp*pp*cp", |r| r.strategy.gpus()),
    col!("dp", Kind::Int, Lower, "data-parallel degree", |r| r.strategy.dp),
    col!("tp", Kind::Int, Lower, "tensor-parallel degree", |r| r.strategy.tp),
    col!("pp", Kind::Int, Lower, "pipeline-parallel degree", |r| r.strategy.pp),
    col!("vpp", Kind::Int, Lower, "virtual pipeline stages per rank", |r| r.strategy.vpp),
    col!("cp", Kind::Int, Lower, "context-parallel degree", |r| r.strategy.cp),
    col!("ep", Kind::Int, Lower, "expert-parallel degree", |r| r.strategy.ep),
    col!("mbs", Kind::Int, Lower, "micro batch size (samples)", |r| r.strategy.mbs),
    col!("gbs", Kind::Int, Lower, "global batch size (samples)", |r| r.strategy.gbs),
    col!("grad_accum", Kind::Int, Lower, "micro batches per iteration and replica", |r| sc(r).grad_accum),
    col!("zero_stage", Kind::Int, Lower, "ZeRO stage (3 = FSDP full shard)", |r| r.strategy.zero_stage),
    col!("recompute", Kind::Cat(RECOMPUTE), Lower, "activation recomputation", |r| r.strategy.recompute as u8),
    col!("sequence_parallel", Kind::Bool, Lower, "Megatron sequence parallelism", |r| r.strategy.sequence_parallel as u8),
    col!("precision", Kind::Cat(PRECISION), Lower, "training precision", |r| r.strategy.precision as u8),
    col!("fp8_recipe", Kind::Cat(FP8_RECIPES), Lower, "FP8 scaling recipe (with precision fp8)", |r| r.strategy.mode.fp8_recipe as u8),
    col!("task", Kind::Cat(TASKS), Lower, "what trains: pretrain, sft (full fine-tuning), lora (adapters on a frozen base)", |r| r.strategy.mode.task as u8),
    col!("lora_rank", Kind::Int, Lower, "LoRA rank (with task lora)", |r| r.strategy.mode.lora_rank),
    col!("offload", Kind::Cat(OFFLOADS), Lower, "what lives in host memory: none, optimizer, optimizer+params", |r| r.strategy.mode.offload as u8),
    col!("fsdp_shard", Kind::Int, Lower, "ZeRO/FSDP shard group (HSDP); equals dp when fully sharded", |r| r.strategy.shard_group()),
    col!("etp", Kind::Int, Lower, "expert tensor-parallel degree (MoE parallel folding; tp unless set)", |r| r.strategy.etp()),
    col!("schedule", Kind::Cat(SCHEDULES), Lower, "pipeline schedule", |r| r.strategy.schedule() as u8),
    col!("cp_comm", Kind::Cat(CP_COMMS), Lower, "context-parallel exchange: ring (p2p) or ulysses (all-to-all)", |r| r.strategy.mode.cp_comm as u8),
    col!("layers", Kind::Int, Lower, "transformer layers", |r| r.model.layers),
    col!("hidden", Kind::Int, Lower, "hidden size", |r| r.model.hidden),
    col!("heads", Kind::Int, Lower, "attention heads", |r| r.model.heads),
    col!("kv_heads", Kind::Int, Lower, "key/value heads", |r| r.model.kv_heads),
    col!("ffn_hidden", Kind::Int, Lower, "MLP intermediate size", |r| r.model.ffn_hidden),
    col!("seq_len", Kind::Int, Lower, "sequence length", |r| r.model.seq_len),
    col!("params", Kind::Int, Lower, "parameters (exact, checkpoint vocabulary)", |r| sc(r).params),
    col!("params_active", Kind::Int, Lower, "parameters used per token (MoE: top-k)", |r| sc(r).params_active),
    col!("step_time_s", Kind::Float, Lower, "predicted seconds per iteration", |r| sc(r).step_time_s),
    col!("tflops_per_gpu", Kind::Float, Higher, "TFLOP/s per GPU, Megatron-DeepSpeed convention (seeds/001)", |r| sc(r).tflops_per_gpu),
    col!("mfu", Kind::Float, Higher, "model FLOPs utilization: useful FLOPs (6N' + causal attention once) over the dense 16-bit peak", |r| sc(r).mfu),
    col!("hfu", Kind::Float, Higher, "hardware FLOPs utilization: executed FLOPs (recompute, unfused s^2) over the dense 16-bit peak", |r| sc(r).hfu),
    col!("tokens_per_s_per_gpu", Kind::Float, Higher, "training tokens per second per GPU", |r| sc(r).tokens_per_s_per_gpu),
    col!("mem_gb", Kind::Float, Lower, "peak memory per GPU over stages, GiB", |r| sc(r).mem_gb),
    col!("mem_stage", Kind::Int, Lower, "pipeline stage with the peak", |r| sc(r).mem_stage),
    col!("fits", Kind::Bool, Higher, "peak memory within the GPU minus headroom", |r| sc(r).fits as u8),
    col!("weights_gb", Kind::Float, Lower, "weights on the peak stage, GiB", |r| sc(r).mem.weights / GIB),
    col!("gradients_gb", Kind::Float, Lower, "gradients on the peak stage, GiB (with transient gradients, only what exceeds the activations and logits they replace)", |r| sc(r).mem.gradients / GIB),
    col!("optimizer_gb", Kind::Float, Lower, "optimizer states on the peak stage, GiB", |r| sc(r).mem.optimizer / GIB),
    col!("activations_gb", Kind::Float, Lower, "activations on the peak stage, GiB", |r| sc(r).mem.activations / GIB),
    col!("logits_gb", Kind::Float, Lower, "LM-head logits on the peak stage, GiB", |r| sc(r).mem.logits / GIB),
    col!("buffers_gb", Kind::Float, Lower, "communication buffers on the peak stage, GiB", |r| sc(r).mem.buffers / GIB),
    col!("overhead_gb", Kind::Float, Lower, "CUDA context, workspaces, fragmentation, GiB", |r| sc(r).mem.overhead / GIB),
    col!("bubble_fraction", Kind::Float, Lower, "share of the pipeline time lost to fill and drain", |r| sc(r).bubble_fraction),
    col!("dp_comm_s", Kind::Float, Lower, "data-parallel reduction time before overlap, s", |r| sc(r).dp_comm_s),
    // The step time by what it is spent on; these add up to step_time_s.
    col!("compute_s", Kind::Float, Lower, "step time in GEMMs, attention and memory-bound kernels (slowest stage), s", |r| sc(r).compute_s),
    col!("recompute_s", Kind::Float, Lower, "step time in recomputed forward work, s", |r| sc(r).recompute_s),
    col!("tp_comm_s", Kind::Float, Lower, "step time in tensor- and context-parallel communication, s", |r| sc(r).tp_comm_s),
    col!("ep_comm_s", Kind::Float, Lower, "step time in expert-parallel all-to-all (not hidden), s", |r| sc(r).ep_comm_s),
    col!("pp_comm_s", Kind::Float, Lower, "step time in pipeline point-to-point sends, s", |r| sc(r).pp_comm_s),
    col!("fsdp_comm_s", Kind::Float, Lower, "step time in ZeRO-3 gathers not hidden by compute, s", |r| sc(r).fsdp_comm_s),
    col!("dp_comm_exposed_s", Kind::Float, Lower, "step time in data-parallel reduction not overlapped, s", |r| sc(r).dp_comm_exposed_s),
    col!("optimizer_s", Kind::Float, Lower, "step time in the optimizer step, s", |r| sc(r).optimizer_s),
    col!("overhead_s", Kind::Float, Lower, "step time in fixed per-layer and per-step overheads, s", |r| sc(r).overhead_s),
    col!("bubble_s", Kind::Float, Lower, "step time the slowest stage idles in pipeline fill and drain, s", |r| sc(r).bubble_s),
    col!("gemm_efficiency", Kind::Float, Higher, "tile/wave quantization efficiency of the layer GEMMs", |r| sc(r).gemm_efficiency),
    col!("flops_per_iter_megatron", Kind::Float, Lower, "FLOPs per iteration, Megatron/BigScience formula (tflops_per_gpu; full s^2, x4 with full recompute)", |r| sc(r).flops_per_iter_megatron),
    col!("flops_per_iter_model", Kind::Float, Lower, "FLOPs per iteration, seeds/002 (llm-foundry) convention: 6N with embeddings + full s^2 attention", |r| sc(r).flops_per_iter_model),
    col!("flops_per_iter_useful", Kind::Float, Lower, "FLOPs per iteration, MFU numerator: 6N' + causal attention counted once", |r| sc(r).flops_per_iter_useful),
    col!("flops_per_iter_hardware", Kind::Float, Lower, "FLOPs per iteration, HFU numerator: what the kernels run (recompute, unfused s^2)", |r| sc(r).flops_per_iter_hardware),
    col!("flops_per_iter_6n", Kind::Float, Lower, "FLOPs per iteration, 6N' (matmul parameters, no embedding lookup) without attention", |r| sc(r).flops_per_iter_6n),
    col!("energy_j_per_token", Kind::Float, Lower, "energy per training token at board power, J", |r| sc(r).energy_j_per_token),
    col!("gpu_hours", Kind::Float, Lower, "GPU-hours for the token budget", |r| sc(r).gpu_hours),
    col!("train_days", Kind::Float, Lower, "wall-clock days for the token budget", |r| sc(r).train_days),
    col!("warnings", Kind::Int, Lower, "bit set of soft-rule warnings (see toposcan.WARNINGS)", |r| sc(r).warnings),
];

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

pub fn find(name: &str) -> Option<&'static Column> {
    COLUMNS.iter().find(|c| c.name == name)
}

/// Column names, for error messages.
pub fn names() -> Vec<&'static str> {
    COLUMNS.iter().map(|c| c.name).collect()
}

/// Columnar data: one vector per column, in [`COLUMNS`] order.
pub enum Data {
    Int(Vec<i64>),
    Float(Vec<f64>),
    Bool(Vec<bool>),
    Cat(Vec<u8>, &'static [&'static str]),
}

/// Turns rows into columns (no per-row objects leave Rust).
pub fn to_columns(rows: &[Row]) -> Vec<(&'static str, Data)> {
    COLUMNS
        .iter()
        .map(|c| {
            let data = match c.kind {
                Kind::Int => Data::Int(rows.iter().map(|r| (c.get)(r) as i64).collect()),
                Kind::Float => Data::Float(rows.iter().map(|r| (c.get)(r)).collect()),
                Kind::Bool => Data::Bool(rows.iter().map(|r| (c.get)(r) != 0.0).collect()),
                Kind::Cat(labels) => {
                    Data::Cat(rows.iter().map(|r| (c.get)(r) as u8).collect(), labels)
                }
            };
            (c.name, data)
        })
        .collect()
}
