//! FLOPs per iteration in the conventions people report, each under its own name.
//!
//! One table of conventions, each under its own column name (see `columns.rs`):
//!
//! | column                     | convention                                          | source |
//! |----------------------------|-----------------------------------------------------|--------|
//! | `flops_per_iter_megatron`  | Narayanan eq. 3, every matmul, full s^2 attention, x4 with full recompute | seeds/001, SC'21 |
//! | `flops_per_iter_model`     | llm-foundry: `6 N s + 3 * 4 l h s^2`, N all parameters, full s^2 | seeds/002 |
//! | `flops_per_iter_useful`    | `6 N' s` + causal attention counted once (the MFU numerator) | PaLM App. B, with the causal half |
//! | `flops_per_iter_hardware`  | what the kernels execute: recomputed forward, s^2 when the attention is unfused | seeds/002 HFU |
//! | `flops_per_iter_6n`        | `6 N' s` (Kaplan et al. 2020), no attention        | seeds/002 `mfu*` |
//!
//! `N'` is the parameters a token multiplies: the active layer weights and the LM head, not the
//! input embedding or position table (a lookup, not a matmul).
//!
//! Under LoRA (`frozen`) the weight-gradient GEMMs do not run: every convention but `6N` counts
//! `4 N'` (forward and input gradient) instead of `6 N'`; the rank-r adapters' own FLOPs (`~6 r
//! (in + out)` a token and linear, under 1% at r 16 on a 4096-wide model) are left out.

use crate::spec::{Model, Recompute};

/// Forward attention-core FLOPs (scores and context) of one sequence over all layers, with the
/// heads' real widths (MLA: query/key `nope + rope`, value `v_head_dim`; Qwen3 and GPT-OSS heads
/// wider or narrower than hidden/heads). `causal` counts the query-key pairs a causal kernel
/// computes, `s (s + 1) / 2`, instead of `s^2`; windowed layers pair a query with at most the window.
pub fn attention_fwd(m: &Model, causal: bool) -> f64 {
    let (dqk, dv) = match m.mla {
        Some(x) => (
            (x.qk_nope_head_dim + x.qk_rope_head_dim) as f64,
            x.v_head_dim as f64,
        ),
        None => (m.head_dim as f64, m.head_dim as f64),
    };
    let s = m.seq_len as f64;
    let full_pairs = if causal { s * (s + 1.0) / 2.0 } else { s * s };
    // A windowed layer (GPT-OSS, Gemma) pairs each query with at most `sliding_window` keys.
    let w = m.attended_keys(true) as f64;
    let window_pairs = if !causal {
        s * w
    } else {
        s * w - w * (w - 1.0) / 2.0
    };
    let windowed = m.windowed_layers() as f64;
    let pairs = (m.layers as f64 - windowed) * full_pairs + windowed * window_pairs;
    2.0 * m.heads as f64 * (dqk + dv) * pairs
}

/// Parameters a token multiplies in the decoder layers (MoE: top-k routed and shared experts).
pub fn layer_params_active(m: &Model) -> f64 {
    use crate::formulas::params;
    let moe = m.moe_layers() as f64;
    let dense = (m.layers - m.moe_layers()) as f64 * params::dense_layer(m) as f64;
    dense
        + if m.is_moe() {
            moe * params::moe_layer_active(m) as f64
        } else {
            0.0
        }
}

/// `N'`: active layer weights, final norm and LM head (the embedding matrix when tied).
pub fn matmul_params(m: &Model) -> f64 {
    use crate::formulas::params;
    layer_params_active(m) + params::norm(m) as f64 + m.hidden as f64 * m.vocab as f64
}

/// The model-dependent parts of every convention, computed once per shape (the scorer's hot loop
/// then only multiplies by the batch).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Terms {
    /// Active layer weights (see [`layer_params_active`]) and the rest of `N'` (final norm, LM head).
    pub layers: f64,
    pub head: f64,
    /// [`attention_fwd`] non-causal and causal.
    pub attn_full: f64,
    pub attn_causal: f64,
    pub seq: f64,
    pub hidden: f64,
}

impl Terms {
    pub fn new(m: &Model) -> Self {
        let layers = layer_params_active(m);
        Terms {
            layers,
            head: matmul_params(m) - layers,
            attn_full: attention_fwd(m, false),
            attn_causal: attention_fwd(m, true),
            seq: m.seq_len as f64,
            hidden: m.hidden as f64,
        }
    }
}

/// Megatron-DeepSpeed (BigScience) FLOPs per iteration, the numerator of the TFLOPs that
/// seeds/001 reports, generalised from GPT-3's shapes to any layer: `f` passes over every layer
/// matmul and the full `s^2` attention, three over the LM head.
///
/// # Formula
/// For a GPT-3 layer (MHA, GELU, ffn = 4h) this is `24 * f * B * s * l * h^2 * (1 + s/(6h) + V/(16 l h))`,
/// f = 4 with activation checkpointing (full recompute), else 3; B global batch (samples), s sequence,
/// l layers, h hidden, V padded vocab. The logit term is `6 B s h V` for either f: the LM head is not
/// recomputed (BigScience's calculator scales it with f, 4.5 instead of 6 without checkpointing).
///
/// # Source
/// Narayanan et al. 2021 (SC'21), eq. 3; bigscience-workshop/Megatron-DeepSpeed PR 251
/// (`throughput_calculator`), quoted in DESIGN.md and seeds/001 "TFLOPs calculation improved".
pub fn megatron(t: &Terms, gbs: u64, recompute: Recompute, padded_vocab: u64, frozen: bool) -> f64 {
    let f = if recompute == Recompute::Full {
        4.0
    } else {
        3.0
    };
    let (b, s, h, v) = (gbs as f64, t.seq, t.hidden, padded_vocab as f64);
    let w = if frozen { 1.0 } else { 0.0 };
    f * b * (2.0 * s * t.layers + t.attn_full) - w * 2.0 * b * s * t.layers
        + (6.0 - 2.0 * w) * b * s * h * v
}

/// Model FLOPs per iteration in seeds/002's (llm-foundry's) convention: `B * (6 N s + 3 * attn)`,
/// N every parameter a token uses including the embedding ([`crate::formulas::params::active`]),
/// attention `l * 4 h s^2` (non-causal).
pub fn model(t: &Terms, gbs: u64, n: f64, frozen: bool) -> f64 {
    gbs as f64 * (weight_passes(frozen) * n * t.seq + 3.0 * t.attn_full)
}

/// FLOPs per weight and token of forward and backward: 6, or 4 without weight gradients (LoRA).
#[inline]
fn weight_passes(frozen: bool) -> f64 {
    if frozen {
        4.0
    } else {
        6.0
    }
}

/// Useful FLOPs per iteration, the MFU numerator: `B * (6 N' s + 3 * causal attention)`. A causal
/// kernel skips the masked half of `s^2`, so counting it would let MFU exceed what runs.
pub fn useful(t: &Terms, gbs: u64, frozen: bool) -> f64 {
    gbs as f64 * (weight_passes(frozen) * (t.layers + t.head) * t.seq + 3.0 * t.attn_causal)
}

/// Hardware FLOPs per iteration, the HFU numerator: what the kernels execute. Full recompute runs
/// the layers' forward twice (not the LM head), selective the attention core; flash kernels skip
/// the masked half of a causal `s^2`, unfused score GEMMs compute all of it.
pub fn hardware(t: &Terms, gbs: u64, recompute: Recompute, flash: bool, frozen: bool) -> f64 {
    let s = t.seq;
    let attn = if flash { t.attn_causal } else { t.attn_full };
    let layers = t.layers;
    let (layer_passes, attn_passes) = match recompute {
        Recompute::Full => (8.0, 4.0),
        Recompute::Selective => (6.0, 4.0),
        Recompute::None => (6.0, 3.0),
    };
    let wgrad = 6.0 - weight_passes(frozen);
    gbs as f64
        * (s * ((layer_passes - wgrad) * layers + (6.0 - wgrad) * t.head) + attn_passes * attn)
}

/// `6 N'` per token, no attention term (Kaplan et al. 2020, "C = 6N"); seeds/002's `mfu*`.
pub fn six_n(t: &Terms, gbs: u64) -> f64 {
    6.0 * (t.layers + t.head) * t.seq * gbs as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formulas::params;
    use crate::spec::examples::*;

    fn tflops(flops: f64, sec: f64, gpus: f64) -> f64 {
        flops / (sec * gpus) / 1e12
    }

    #[test]
    fn reproduces_seed001_tflops() {
        // seeds/001 "48 node contenders", NHIDDEN=14336 NLAYERS=72, DP4 TP8 PP12 MBS1 GBS2048:
        // 143.31 s/it, 112.49 TFLOPs on 384 GPUs.
        let m = seed001(14336, 72, 64);
        let f = megatron(&Terms::new(&m), 2048, Recompute::Full, 250880, false);
        assert!((tflops(f, 143.31, 384.0) / 112.49 - 1.0).abs() < 1e-3);
        // "GBS Variations", DP8 TP4 PP12 MBS4: 111.89 s/it, 144.08 TFLOPs.
        assert!((tflops(f, 111.89, 384.0) / 144.08 - 1.0).abs() < 1e-3);
    }

    #[test]
    fn windowed_layers_see_the_window() {
        // GPT-OSS-120B shape (config.json): 36 layers, 64 heads of 64 on hidden 2880, alternating
        // 128-token windows. Half the layers see s keys, half 128.
        let m = crate::spec::Model {
            layers: 36,
            hidden: 2880,
            heads: 64,
            kv_heads: 8,
            head_dim: 64,
            seq_len: 4096,
            sliding_window: 128,
            full_attention_every: 2,
            ..llama2_7b()
        };
        let (s, qv) = (4096.0, 2.0 * 64.0 * 64.0);
        let expect = 2.0 * qv * (18.0 * s * s + 18.0 * s * 128.0);
        assert!((attention_fwd(&m, false) / expect - 1.0).abs() < 1e-12);
        // Without the window: l * 2 * s^2 * (a*d + a*d), not the 4 h s^2 of hidden 2880.
        let full = crate::spec::Model {
            sliding_window: 0,
            ..m
        };
        assert!((attention_fwd(&full, false) / (36.0 * 2.0 * s * s * qv) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn causal_attention_is_counted_once() {
        // A causal kernel computes s(s+1)/2 query-key pairs: about half the llm-foundry count.
        let m = llama2_7b();
        let r = attention_fwd(&m, true) / attention_fwd(&m, false);
        let s = m.seq_len as f64;
        assert!((r - (s + 1.0) / (2.0 * s)).abs() < 1e-12);
        // Useful FLOPs never exceed the hardware's, whatever the recompute.
        let t = Terms::new(&m);
        for rc in [Recompute::None, Recompute::Selective, Recompute::Full] {
            assert!(hardware(&t, 8, rc, true, false) >= useful(&t, 8, false));
            assert!(megatron(&t, 8, rc, 32000, false) >= six_n(&t, 8));
            // LoRA: two thirds of the weight FLOPs, whatever the recompute.
            assert!(hardware(&t, 8, rc, true, true) < hardware(&t, 8, rc, true, false));
            assert!(
                useful(&t, 8, true) < useful(&t, 8, false)
                    && useful(&t, 8, true) > 0.6 * useful(&t, 8, false)
            );
        }
    }

    #[test]
    fn reproduces_seed002_mfu() {
        // seeds/002 "A100 80GB", 7b at SeqLen 2048 on 8 GPUs without checkpointing:
        // 37130 tokens/s, MFU 64.23 at 312 TFLOP/s (llm-foundry's A100 bf16 peak).
        let m = crate::spec::Model {
            layers: 32,
            hidden: 4096,
            heads: 32,
            kv_heads: 32,
            head_dim: 128,
            ffn_hidden: 16384,
            vocab: 50368,
            position: crate::spec::Position::Learned,
            position_rows: 2048,
            embedding_norm: false,
            ..bloom_176b()
        };
        let seqs_per_s = 37130.0 / 2048.0;
        let n = params::active(&m) as f64;
        let mfu = model(&Terms::new(&m), 1, n, false) * seqs_per_s / (8.0 * 312e12) * 100.0;
        assert!((mfu - 64.23).abs() < 0.1, "{mfu}");
        // With checkpointing HFU is 4/3 of MFU (7b SeqLen 4096 row: MFU 54.84, HFU 73.12).
        let _ = n;
    }
}
