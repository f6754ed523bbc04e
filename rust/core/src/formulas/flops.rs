//! FLOPs per iteration in the conventions people report, each under its own name.

use crate::spec::{Model, Recompute};

/// Megatron-DeepSpeed (BigScience) FLOPs per iteration, the numerator of the TFLOPs that
/// seeds/001 reports.
///
/// # Formula
/// `24 * f * B * s * l * h^2 * (1 + s/(6h) + V/(16 l h))`, f = 4 with activation checkpointing
/// (full recompute), else 3; B global batch (samples), s sequence, l layers, h hidden, V padded vocab.
///
/// # Source
/// Narayanan et al. 2021 (SC'21), eq. 3; bigscience-workshop/Megatron-DeepSpeed PR 251
/// (`throughput_calculator`), quoted in DESIGN.md and seeds/001 "TFLOPs calculation improved".
pub fn megatron(m: &Model, gbs: u64, recompute: Recompute, padded_vocab: u64) -> f64 {
    let f = if recompute == Recompute::Full { 4.0 } else { 3.0 };
    let (b, s, l, h, v) = (gbs as f64, m.seq_len as f64, m.layers as f64, m.hidden as f64, padded_vocab as f64);
    24.0 * f * b * s * l * h * h * (1.0 + s / (6.0 * h) + v / (16.0 * l * h))
}

/// Attention FLOPs per sequence in llm-foundry's convention: `l * 2 * 2 * h * s^2` (forward), for
/// the score (`Q K^T`) and context (`P V`) products over every query-key pair, no causal halving.
///
/// Where the heads' widths differ from `h` the two products use them: `2 s^2 (a*dqk + a*dv)`, with
/// `dqk = dv = head_dim` (Qwen3, GPT-OSS: `heads * head_dim != hidden`) or MLA's `dqk = dn + dr`,
/// `dv` (DeepSeek). A windowed layer (GPT-OSS, Gemma) pairs each query with at most
/// `sliding_window` keys, so its `s^2` is `s * min(s, window)` (see [`Model::attended_keys`]).
///
/// # Source
/// seeds/002 "MFU": `attn_flops_per_seq = n_layers * 2 * 2 * (d_model * (seq_len**2))`.
pub fn attention_per_seq(m: &Model) -> f64 {
    let s = m.seq_len as f64;
    let a = m.heads as f64;
    let (qk, v) = match m.mla {
        Some(mla) => (a * (mla.qk_nope_head_dim + mla.qk_rope_head_dim) as f64, a * mla.v_head_dim as f64),
        None => (a * m.head_dim as f64, a * m.head_dim as f64),
    };
    let windowed = m.windowed_layers() as f64;
    let full = m.layers as f64 - windowed;
    let pairs = full * s * s + windowed * s * m.attended_keys(true) as f64;
    2.0 * (qk + v) * pairs
}

/// Model FLOPs per iteration (the MFU numerator of seeds/002): `B * (6 N s + 3 * attn)`,
/// N the parameters a token uses ([`crate::formulas::params::active`]; all of them when dense).
pub fn model(m: &Model, gbs: u64, n: f64) -> f64 {
    gbs as f64 * (6.0 * n * m.seq_len as f64 + 3.0 * attention_per_seq(m))
}

/// Hardware FLOPs per iteration (the HFU numerator of seeds/002): with activation checkpointing
/// the forward runs twice, `B * (8 N s + 4 * attn)`; otherwise equal to [`model`].
pub fn hardware(m: &Model, gbs: u64, recompute: Recompute, n: f64) -> f64 {
    if recompute != Recompute::Full {
        return model(m, gbs, n);
    }
    gbs as f64 * (8.0 * n * m.seq_len as f64 + 4.0 * attention_per_seq(m))
}

/// `6 N` per token, no attention term (Kaplan et al. 2020, "C = 6N"); seeds/002's `mfu*`.
pub fn six_n(m: &Model, gbs: u64, n: f64) -> f64 {
    6.0 * n * m.seq_len as f64 * gbs as f64
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
        let f = megatron(&m, 2048, Recompute::Full, 250880);
        assert!((tflops(f, 143.31, 384.0) / 112.49 - 1.0).abs() < 1e-3);
        // "GBS Variations", DP8 TP4 PP12 MBS4: 111.89 s/it, 144.08 TFLOPs.
        assert!((tflops(f, 111.89, 384.0) / 144.08 - 1.0).abs() < 1e-3);
    }

    #[test]
    fn windowed_layers_see_the_window() {
        // GPT-OSS-120B shape (config.json): 36 layers, 64 heads of 64 on hidden 2880, alternating
        // 128-token windows. Half the layers see s keys, half 128.
        let m = crate::spec::Model {
            layers: 36, hidden: 2880, heads: 64, kv_heads: 8, head_dim: 64, seq_len: 4096, sliding_window: 128,
            full_attention_every: 2, ..llama2_7b()
        };
        let (s, qv) = (4096.0, 2.0 * 64.0 * 64.0);
        let expect = 2.0 * qv * (18.0 * s * s + 18.0 * s * 128.0);
        assert!((attention_per_seq(&m) / expect - 1.0).abs() < 1e-12);
        // Without the window: l * 2 * s^2 * (a*d + a*d), not the 4 h s^2 of hidden 2880.
        let full = crate::spec::Model { sliding_window: 0, ..m };
        assert!((attention_per_seq(&full) / (36.0 * 2.0 * s * s * qv) - 1.0).abs() < 1e-12);
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
        let mfu = model(&m, 1, n) * seqs_per_s / (8.0 * 312e12) * 100.0;
        assert!((mfu - 64.23).abs() < 0.1, "{mfu}");
        // With checkpointing HFU is 4/3 of MFU (7b SeqLen 4096 row: MFU 54.84, HFU 73.12).
        let r = hardware(&m, 1, Recompute::Full, n) / model(&m, 1, n);
        assert!((r - 4.0 / 3.0).abs() < 1e-12);
    }
}
