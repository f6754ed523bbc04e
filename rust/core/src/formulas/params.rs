//! Parameter counts: whole model, per layer, per pipeline stage and tensor-parallel rank.
//!
//! # Source
//! The layer structure of GPT-style decoders (Megatron-LM `ParallelTransformerLayer`, HF
//! `BloomBlock`, `LlamaDecoderLayer`, `MixtralSparseMoeBlock`, DeepSeek-V2 `DeepseekV2Attention`).
//! Checked against published exact counts in the tests below. Counts are `u128`: a product of
//! layers, hidden size, FFN size and experts at their limits does not fit 64 bits, and
//! [`crate::spec::Model::validate`] refuses a model whose total exceeds 2^53.

use crate::spec::{Activation, Model, Norm, Position};

/// Parameters of one norm layer: weight, plus bias for a LayerNorm with biases.
pub fn norm(m: &Model) -> u128 {
    let h = m.hidden as u128;
    match m.norm {
        Norm::LayerNorm if m.bias => 2 * h,
        _ => h,
    }
}

/// Attention parameters of one layer (Q, K, V, output; GQA or MLA; biases if the model has them).
///
/// # Formula
/// GQA: `h*(a*d) + 2*h*(g*d) + (a*d)*h` (+ biases `a*d + 2*g*d + h`), a heads, g KV heads, d head dim.
/// MLA (DeepSeek-V2 §2.1): `h*rq + rq + rq*a*(dn+dr)` (or `h*a*(dn+dr)` without a query rank)
/// `+ h*(rkv+dr) + rkv + rkv*a*(dn+dv) + a*dv*h`.
pub fn attention(m: &Model) -> u128 {
    let h = m.hidden as u128;
    let a = m.heads as u128;
    if let Some(mla) = m.mla {
        let (rq, rkv) = (mla.q_lora_rank as u128, mla.kv_lora_rank as u128);
        let (dn, dr, dv) = (mla.qk_nope_head_dim as u128, mla.qk_rope_head_dim as u128, mla.v_head_dim as u128);
        let q = if rq > 0 { h * rq + rq + rq * a * (dn + dr) } else { h * a * (dn + dr) };
        let kv = h * (rkv + dr) + rkv + rkv * a * (dn + dv);
        return q + kv + a * dv * h;
    }
    let d = m.head_dim as u128;
    let g = m.kv_heads as u128;
    let weights = h * a * d + 2 * h * g * d + a * d * h;
    let biases = if m.bias { a * d + 2 * g * d + h } else { 0 };
    weights + biases
}

/// Parameters of one MLP with intermediate size `f`: 2 matrices for GELU, 3 for SwiGLU.
pub fn mlp(m: &Model, f: u128) -> u128 {
    let h = m.hidden as u128;
    match m.activation {
        Activation::Gelu => 2 * h * f + if m.bias { f + h } else { 0 },
        Activation::Swiglu => 3 * h * f + if m.bias { 2 * f + h } else { 0 },
    }
}

/// Parameters of one dense decoder layer.
pub fn dense_layer(m: &Model) -> u128 {
    attention(m) + mlp(m, m.ffn_hidden as u128) + 2 * norm(m)
}

/// Parameters of one MoE layer: attention, router, routed and shared experts.
pub fn moe_layer(m: &Model) -> u128 {
    let experts = m.experts as u128 + m.shared_experts as u128;
    attention(m) + m.hidden as u128 * m.experts as u128 + experts * mlp(m, m.moe_ffn_hidden as u128) + 2 * norm(m)
}

/// Parameters of an MoE layer that one token uses (top-k routed plus shared experts).
pub fn moe_layer_active(m: &Model) -> u128 {
    let experts = m.topk as u128 + m.shared_experts as u128;
    attention(m) + m.hidden as u128 * m.experts as u128 + experts * mlp(m, m.moe_ffn_hidden as u128) + 2 * norm(m)
}

/// Word embedding for a (possibly padded) vocabulary.
pub fn embedding(m: &Model, vocab: u128) -> u128 {
    vocab * m.hidden as u128
}

/// Learned position table and the optional norm after the embedding.
pub fn embedding_extras(m: &Model) -> u128 {
    let pos = if m.position == Position::Learned { m.position_rows as u128 * m.hidden as u128 } else { 0 };
    pos + if m.embedding_norm { norm(m) } else { 0 }
}

/// Total parameters with the checkpoint's vocabulary: the number model cards publish.
pub fn total(m: &Model) -> u128 {
    let layers = (m.layers - m.moe_layers()) as u128 * dense_layer(m) + m.moe_layers() as u128 * if m.is_moe() { moe_layer(m) } else { 0 };
    let head = if m.tied_embeddings { 0 } else { embedding(m, m.vocab as u128) };
    embedding(m, m.vocab as u128) + embedding_extras(m) + layers + norm(m) + head
}

/// Parameters a token touches (MoE: top-k and shared experts only); equals [`total`] when dense.
pub fn active(m: &Model) -> u128 {
    if !m.is_moe() {
        return total(m);
    }
    let layers = (m.layers - m.moe_layers()) as u128 * dense_layer(m) + m.moe_layers() as u128 * moe_layer_active(m);
    let head = if m.tied_embeddings { 0 } else { embedding(m, m.vocab as u128) };
    embedding(m, m.vocab as u128) + embedding_extras(m) + layers + norm(m) + head
}

/// Vocabulary rows the framework allocates: padded up to a multiple of `multiple * tp`, as
/// Megatron-LM does with `multiple = 128` (`--make-vocab-size-divisible-by 128`,
/// `_vocab_size_with_padding`); `multiple = 1` keeps the model's vocabulary (split evenly over TP).
#[inline]
pub fn padded_vocab(vocab: u32, tp: u32, multiple: u32) -> u64 {
    let unit = multiple as u64 * tp as u64;
    (vocab as u64).div_ceil(unit) * unit
}

/// Layers held by each pipeline stage: as even as possible, the first `layers % pp` stages one more
/// (Megatron-DeepSpeed's balanced partition); `None` when there are fewer layers than stages.
#[inline]
pub fn stage_layers(layers: u32, pp: u32, stage: u32) -> u32 {
    let base = layers / pp;
    base + u32::from(stage < layers % pp)
}

/// Index of the first layer of `stage` under [`stage_layers`]' split.
pub fn first_layer(layers: u32, pp: u32, stage: u32) -> u32 {
    stage * (layers / pp) + stage.min(layers % pp)
}

/// Per-layer counts of a model, computed once and reused for every stage and strategy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerCounts {
    pub norm: f64,
    pub dense_layer: f64,
    pub attention: f64,
    pub expert_mlp: f64,
    pub router: f64,
    pub embedding_extras: f64,
}

impl LayerCounts {
    pub fn new(m: &Model) -> Self {
        LayerCounts {
            norm: norm(m) as f64,
            dense_layer: dense_layer(m) as f64,
            attention: attention(m) as f64,
            expert_mlp: if m.is_moe() { mlp(m, m.moe_ffn_hidden as u128) as f64 } else { 0.0 },
            router: m.hidden as f64 * m.experts as f64,
            embedding_extras: embedding_extras(m) as f64,
        }
    }
}

/// Parameters on one tensor-parallel rank of one pipeline stage.
///
/// Matrices (and column-parallel biases) are split over `tp`; norms are replicated. Routed experts
/// are split over `ep * tp`. The first stage holds the word embedding (split over `tp`) and the
/// position table; the last holds the final norm and the LM head (a copy of the embedding when
/// tied and `pp > 1`, as Megatron-LM keeps one for the tied gradient), with the framework's
/// vocabulary padding ([`padded_vocab`]).
pub fn stage_rank(m: &Model, tp: u32, ep: u32, pp: u32, stage: u32, vocab_multiple: u32) -> f64 {
    stage_rank_with(&LayerCounts::new(m), m, tp, ep, pp, stage, vocab_multiple)
}

/// [`stage_rank`] with the model's [`LayerCounts`] already computed.
pub fn stage_rank_with(lc: &LayerCounts, m: &Model, tp: u32, ep: u32, pp: u32, stage: u32, vocab_multiple: u32) -> f64 {
    let tp_f = tp as f64;
    let n_norm = lc.norm;
    let layers = stage_layers(m.layers, pp, stage);
    // Which of this stage's layers are dense (the leading `dense_layers` of the model).
    let dense_here = if m.is_moe() { m.dense_layers.saturating_sub(first_layer(m.layers, pp, stage)).min(layers) } else { layers };
    let moe_here = layers - dense_here;
    let dense = (lc.dense_layer - 2.0 * n_norm) / tp_f + 2.0 * n_norm;
    let mut p = dense_here as f64 * dense;
    if moe_here > 0 {
        let routed = m.experts as f64 * lc.expert_mlp;
        let shared = m.shared_experts as f64 * lc.expert_mlp;
        let per = lc.attention / tp_f + shared / tp_f + routed / (tp_f * ep as f64) + lc.router + 2.0 * n_norm;
        p += moe_here as f64 * per;
    }
    let vocab = padded_vocab(m.vocab, tp, vocab_multiple) as f64;
    let emb = vocab * m.hidden as f64 / tp_f;
    if stage == 0 {
        p += emb + lc.embedding_extras;
    }
    if stage == pp - 1 {
        p += n_norm;
        if !m.tied_embeddings || pp > 1 {
            p += emb;
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::examples::*;
    use crate::spec::{Mla, Model};

    #[test]
    fn bloom_176b_matches_model_card() {
        // bigscience/bloom model card: 176,247,271,424 parameters.
        assert_eq!(total(&bloom_176b()), 176_247_271_424);
    }

    #[test]
    fn llama2_7b_matches_published() {
        // meta-llama/Llama-2-7b-hf safetensors metadata: 6,738,415,616 parameters.
        assert_eq!(total(&llama2_7b()), 6_738_415_616);
    }

    #[test]
    fn llama3_8b_gqa_matches_published() {
        // meta-llama/Meta-Llama-3-8B: 8,030,261,248 parameters (8 KV heads, ffn 14336, vocab 128256).
        let m = Model { kv_heads: 8, ffn_hidden: 14336, vocab: 128_256, ..llama2_7b() };
        assert_eq!(total(&m), 8_030_261_248);
    }

    #[test]
    fn mpt_7b_benchmark_matches_seed002() {
        // seeds/002 (llm-foundry benchmarks), 7b at SeqLen 2048: NumParams 6,658,859,008.
        // Biases on, learned positions of seq_len rows, tied, vocab 50368.
        let m = Model {
            layers: 32,
            hidden: 4096,
            heads: 32,
            kv_heads: 32,
            head_dim: 128,
            ffn_hidden: 16384,
            vocab: 50368,
            position: Position::Learned,
            position_rows: 2048,
            embedding_norm: false,
            ..bloom_176b()
        };
        assert_eq!(total(&m), 6_658_859_008);
        // Same model at SeqLen 65536: 6,918,905,856 (the position table grows).
        assert_eq!(total(&Model { position_rows: 65536, ..m }), 6_918_905_856);
    }

    #[test]
    fn mixtral_counts_all_experts() {
        // mistralai/Mixtral-8x7B-v0.1: 46,702,792,704 parameters.
        let m = Model { kv_heads: 8, ffn_hidden: 14336, experts: 8, topk: 2, moe_ffn_hidden: 14336, seq_len: 32768, ..llama2_7b() };
        assert_eq!(total(&m), 46_702_792_704);
        assert!(active(&m) < total(&m) / 3);
    }

    #[test]
    fn mla_attention_is_smaller_than_mha() {
        // DeepSeek-V2 attention dims (config.json); MLA compresses K/V through a 512 rank.
        let mla = Mla { q_lora_rank: 1536, kv_lora_rank: 512, qk_rope_head_dim: 64, qk_nope_head_dim: 128, v_head_dim: 128 };
        let m = Model { hidden: 5120, heads: 128, kv_heads: 128, head_dim: 128, mla: Some(mla), ..llama2_7b() };
        let mha = Model { mla: None, ..m };
        assert!(attention(&m) < attention(&mha));
    }

    #[test]
    fn stages_sum_to_total_at_tp1() {
        // Untied model, tp = 1, vocab already a multiple of 128: the stages partition the model.
        let m = llama2_7b();
        for pp in [1, 2, 3, 4, 8] {
            let sum: f64 = (0..pp).map(|s| stage_rank(&m, 1, 1, pp, s, 128)).sum();
            assert_eq!(sum as u128, total(&m), "pp={pp}");
        }
    }

    #[test]
    fn first_layer_matches_the_split() {
        for (layers, pp) in [(70, 12), (72, 12), (5, 5), (96, 7)] {
            let mut acc = 0;
            for st in 0..pp {
                assert_eq!(first_layer(layers, pp, st), acc);
                acc += stage_layers(layers, pp, st);
            }
        }
    }

    #[test]
    fn uneven_stages_are_balanced() {
        // BLOOM-176B trained 70 layers on 12 stages (seeds/001 cluster): 10 stages of 6, 2 of 5... in
        // some order; the balanced split differs by at most one layer and covers every layer.
        let per: Vec<u32> = (0..12).map(|s| stage_layers(70, 12, s)).collect();
        assert_eq!(per.iter().sum::<u32>(), 70);
        assert!(per.iter().max().unwrap() - per.iter().min().unwrap() <= 1);
    }

    #[test]
    fn padded_vocab_follows_megatron() {
        assert_eq!(padded_vocab(50257, 1, 128), 50304);
        assert_eq!(padded_vocab(50257, 8, 128), 51200);
        assert_eq!(padded_vocab(250880, 8, 128), 250880);
        // No padding (plain PyTorch): the vocabulary as is, or up to a multiple of tp.
        assert_eq!(padded_vocab(50257, 1, 1), 50257);
        assert_eq!(padded_vocab(50257, 2, 1), 50258);
    }
}
