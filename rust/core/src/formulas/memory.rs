//! Memory per GPU, per pipeline stage, as named parts.
//!
//! # Source
//! Model states: Rajbhandari et al. 2020 (ZeRO), §3: 2 bytes of 16-bit weights, 12 bytes of Adam
//! state (fp32 master, momentum, variance) per parameter, sharded over DP by stage 1, gradients
//! by stage 2, weights by stage 3. Gradient bytes depend on the framework (the profile says):
//! Megatron-LM keeps an fp32 `main_grad` (4 B); DeepSpeed ZeRO-1/2 keeps 16-bit gradients (2 B)
//! plus an fp32 partition of them over DP (4 B / dp).
//! Activations: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
//! Models", §4 (eq. 1-5 and Table 2), generalized to GQA, SwiGLU and MoE by counting the same
//! stored tensors. In-flight micro batches: 1F1B holds `pp - stage` of them, interleaving
//! multiplies the first stage's by `1 + (pp-1)/(pp v)` (same paper, §4.2.3).

use crate::formulas::params;
use crate::spec::{Activation, Model, Offload, Precision, Recompute, Schedule, Strategy, Task};

/// Adam state per parameter in mixed precision: fp32 master weight, momentum, variance.
pub const ADAM_MIXED_BYTES: f64 = 12.0;
/// Adam state per parameter in pure fp32 training: momentum and variance (weights are the master).
pub const ADAM_FP32_BYTES: f64 = 8.0;

/// Memory of one GPU as named parts, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Parts {
    pub weights: f64,
    pub gradients: f64,
    pub optimizer: f64,
    pub activations: f64,
    pub logits: f64,
    pub buffers: f64,
    pub overhead: f64,
}

impl Parts {
    pub fn total(&self) -> f64 {
        self.weights
            + self.gradients
            + self.optimizer
            + self.activations
            + self.logits
            + self.buffers
            + self.overhead
    }
}

/// Bytes of weights, gradients and optimizer state for `p` parameters on one rank (plus `adapters`
/// LoRA parameters), with `grad_bytes` per parameter of full-size gradient buffer and
/// `grad_shard_bytes` of fp32 gradient partition (over DP) kept by the optimizer.
///
/// ZeRO shards over the strategy's shard group ([`Strategy::shard_group`]: all of dp, or HSDP's
/// groups). LoRA: the frozen base keeps only its compute copy (no master weights, gradients or
/// optimizer state); the adapters keep all three. Offload moves the optimizer state and fp32
/// gradient partition (and with `OptimizerParams` the weights) to host memory.
#[inline]
pub fn model_states(
    p: f64,
    adapters: f64,
    s: &Strategy,
    grad_bytes: f64,
    grad_shard_bytes: f64,
) -> (f64, f64, f64) {
    let g = s.shard_group() as f64;
    let w_bytes = match s.precision {
        Precision::Fp32 => 4.0,
        // TransformerEngine keeps an fp8 copy beside the 16-bit weight (MX: plus a scale per 32),
        // an NVFP4 copy half a byte plus an fp8 scale per 16.
        Precision::Fp8 => 3.0,
        Precision::Mxfp8 => 3.0 + 1.0 / 32.0,
        Precision::Nvfp4 => 2.5 + 1.0 / 16.0,
        _ => 2.0,
    };
    let opt_bytes = if s.precision == Precision::Fp32 {
        ADAM_FP32_BYTES
    } else {
        ADAM_MIXED_BYTES
    };
    let trainable = if s.mode.task == Task::Lora {
        adapters
    } else {
        p
    };
    let offload = s.mode.offload;
    let weights = if offload == Offload::OptimizerParams {
        0.0
    } else {
        (p * w_bytes + adapters * 2.0) / if s.zero_stage >= 3 { g } else { 1.0 }
    };
    let shard_bytes = if s.zero_stage >= 1 && offload == Offload::None {
        grad_shard_bytes / g
    } else {
        0.0
    };
    let grads =
        trainable * grad_bytes / if s.zero_stage >= 2 { g } else { 1.0 } + trainable * shard_bytes;
    let opt = if offload == Offload::None {
        trainable * opt_bytes / if s.zero_stage >= 1 { g } else { 1.0 }
    } else {
        0.0
    };
    (weights, grads, opt)
}

/// Activation bytes one layer stores for one micro batch, and the bytes of a layer's full
/// (not recomputed) activations, which backward needs once at a time under recompute.
///
/// # Formula
/// Korthikanti et al. 2022 eq. 2-5 with `sbh` generalized: replicated part `10 sbh` (norm inputs,
/// QKV and MLP inputs, dropout masks; divided by `t` with sequence parallelism), split part
/// `2sb(q + 2kv + q) + 2sb f (x2 for SwiGLU gate) + 2 sb f` over `t`, and the attention
/// scores `5 a s^2 b / t` unless flash attention; full recompute keeps only the layer input
/// `2 sbh` (over `t` with SP); selective drops the `s^2` part.
pub fn layer_activations(m: &Model, s: &Strategy) -> (f64, f64) {
    let t = s.tp as f64;
    let seq = m.seq_len as f64 / s.cp as f64;
    let sb = seq * s.mbs as f64;
    let h = m.hidden as f64;
    let q = (m.heads as f64) * m.head_dim as f64;
    let kv = (m.kv_heads as f64) * m.head_dim as f64;
    // MLP width a token passes through: dense ffn, or top-k routed plus shared experts.
    let f = if m.is_moe() {
        (m.topk as f64 + m.shared_experts as f64) * m.moe_ffn_hidden as f64
    } else {
        m.ffn_hidden as f64
    };
    // Eager SwiGLU also keeps silu(gate); eager GQA saves K and V repeated to every query head.
    let eager = !s.fused_kernels;
    let up = match m.activation {
        Activation::Swiglu if eager => 3.0 * f,
        Activation::Swiglu => 2.0 * f,
        _ => f,
    };
    let kv = if eager { q } else { kv };
    let replicated = 10.0 * sb * h / if s.sequence_parallel { t } else { 1.0 };
    let split = 2.0 * sb * (q + 2.0 * kv + q + up + f) / t;
    let scores = if s.flash_attention {
        0.0
    } else {
        5.0 * m.heads as f64 * seq * seq * s.mbs as f64 / t
    };
    let full = replicated + split + scores;
    let stored = match s.recompute {
        Recompute::None => full,
        Recompute::Selective => replicated + split,
        Recompute::Full => 2.0 * sb * h / if s.sequence_parallel { t } else { 1.0 },
    };
    let working = if s.recompute == Recompute::None {
        0.0
    } else {
        full
    };
    (stored, working)
}

/// Micro batches whose activations stage `stage` holds at the peak of a 1F1B (or interleaved)
/// schedule with `micro` micro batches per iteration.
#[inline]
pub fn in_flight(pp: u32, stage: u32, micro: u32, vpp: u32) -> f64 {
    let base = (pp - stage).min(micro.max(1)) as f64;
    if vpp > 1 && stage == 0 {
        base * (1.0 + (pp as f64 - 1.0) / (pp as f64 * vpp as f64))
    } else {
        base
    }
}

/// The part of a stage's memory that does not depend on the ZeRO stage: activations of the
/// micro batches in flight (with the point-to-point buffers) and, on the last stage, the logits.
#[inline]
///
/// The logits take `logit_bytes` per element, a property of the framework's loss (a profile
/// constant): 10 for Megatron-LM's `vocab_parallel_cross_entropy` (16-bit logits, an fp32 copy and
/// its fp32 gradient), 2 for a fused cross entropy that computes the gradient in place in the
/// 16-bit logits (flash-attn's `CrossEntropyLoss`, llm-foundry's default `fused_crossentropy`).
pub fn stage_activations(
    m: &Model,
    s: &Strategy,
    stage: u32,
    micro: u32,
    acts: (f64, f64),
    logit_bytes: f64,
) -> (f64, f64) {
    let layers = params::stage_layers(m.layers, s.pp, stage) as f64;
    let (per_layer, working) = acts;
    let sbh = m.seq_len as f64 / s.cp as f64
        * s.mbs as f64
        * m.hidden as f64
        * s.precision.compute_bytes()
        / if s.sequence_parallel {
            s.tp as f64
        } else {
            1.0
        };
    let pipe_buffers = if s.pp > 1 { 2.0 * sbh } else { 0.0 };
    // DualPipe holds pp + 1 micro batches on every rank (DeepSeek-V3 report, Table 2).
    let held = if s.schedule() == Schedule::DualPipe && s.pp > 1 {
        (s.pp + 1).min(micro.max(1)) as f64
    } else {
        in_flight(s.pp, stage, micro, s.vpp)
    };
    let activations = held * (layers * per_layer + pipe_buffers) + working;
    let logits = if stage == s.pp - 1 {
        let v = params::padded_vocab(m.vocab, s.tp, s.vocab_multiple) as f64;
        m.seq_len as f64 / s.cp as f64 * s.mbs as f64 * v / s.tp as f64 * logit_bytes
    } else {
        0.0
    };
    (activations, logits)
}

/// A stage's memory from its [`stage_activations`]: model states for `p` parameters (and
/// `adapters` LoRA parameters) per rank under the strategy's ZeRO stage, and ZeRO-3's gather buffers.
/// DualPipe keeps two pipeline stages' parameters on each rank (DeepSeek-V3 report, Table 2: 2x).
#[inline]
pub fn stage_from(
    m: &Model,
    s: &Strategy,
    p: f64,
    adapters: f64,
    act: (f64, f64),
    grad_bytes: f64,
    grad_shard_bytes: f64,
) -> Parts {
    let copies = if s.schedule() == Schedule::DualPipe && s.pp > 1 {
        2.0
    } else {
        1.0
    };
    let (weights, gradients, optimizer) = model_states(
        copies * p,
        copies * adapters,
        s,
        grad_bytes,
        grad_shard_bytes,
    );
    // ZeRO-3 gathers the next layer's full weights while computing the current one.
    let buffers = if s.zero_stage >= 3 {
        2.0 * params::dense_layer(m) as f64 / s.tp as f64 * 2.0
    } else {
        0.0
    };
    Parts {
        weights,
        gradients,
        optimizer,
        activations: act.0,
        logits: act.1,
        buffers,
        overhead: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::examples::*;

    #[test]
    fn korthikanti_table2_no_parallelism() {
        // Korthikanti et al. Table 2, "no parallelism": sbh (34 + 5 a s / h) per layer.
        let m = seed001(14336, 72, 64);
        let s = Strategy {
            tp: 1,
            recompute: Recompute::None,
            mbs: 1,
            ..strategy(1, 1, 1, 1, 1)
        };
        let (stored, _) = layer_activations(&m, &s);
        let (sq, h, a) = (2048.0, 14336.0, 64.0);
        assert!((stored / (sq * h * (34.0 + 5.0 * a * sq / h)) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn korthikanti_tp_sp_selective() {
        // Table 2: tensor + sequence parallel with selective recompute: 34 sbh / t.
        let m = seed001(14336, 72, 64);
        let s = Strategy {
            tp: 8,
            sequence_parallel: true,
            recompute: Recompute::Selective,
            ..strategy(1, 8, 1, 1, 1)
        };
        let (stored, _) = layer_activations(&m, &s);
        assert!((stored / (34.0 * 2048.0 * 14336.0 / 8.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn zero_stages_shrink_model_states() {
        let s0 = Strategy {
            zero_stage: 0,
            ..strategy(8, 1, 1, 1, 8)
        };
        let total = |z: u8| {
            let (w, g, o) = model_states(
                1e9,
                0.0,
                &Strategy {
                    zero_stage: z,
                    ..s0
                },
                4.0,
                0.0,
            );
            w + g + o
        };
        assert!(total(3) < total(2) && total(2) < total(1) && total(1) < total(0));
        // ZeRO paper §3: 16-bit weights + fp32 grads + 12 B Adam = 18 B/param with no sharding.
        assert_eq!(total(0), 18e9);
    }

    #[test]
    fn first_stage_holds_most_micro_batches() {
        assert_eq!(in_flight(12, 0, 128, 1), 12.0);
        assert_eq!(in_flight(12, 11, 128, 1), 1.0);
        assert_eq!(in_flight(12, 0, 4, 1), 4.0);
        assert!(in_flight(12, 0, 128, 2) > 12.0);
    }
}
