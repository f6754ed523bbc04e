//! Parameter counts: whole model, per layer, per pipeline stage and tensor-parallel rank.
//!
//! # Source
//! The layer structure of GPT-style decoders (Megatron-LM `ParallelTransformerLayer`, HF
//! `BloomBlock`, `LlamaDecoderLayer`, `MixtralSparseMoeBlock`, DeepSeek-V2 `DeepseekV2Attention`,
//! Qwen3's per-head `q_norm`/`k_norm`, GPT-OSS's attention sinks and router bias, DeepSeek-V3's
//! multi-token-prediction module, Llama 4's interleaved MoE layers).
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

/// Attention parameters of one layer (Q, K, V, output; GQA or MLA; biases if the model has them;
/// per-head query/key norms and sink logits where the model has them).
///
/// # Formula
/// GQA: `h*(a*d) + 2*h*(g*d) + (a*d)*h` (+ biases `a*d + 2*g*d + h`), a heads, g KV heads, d head
/// dim (which need not be `h/a`: Qwen3, GPT-OSS, Gemma). MLA (DeepSeek-V2 §2.1): `h*rq + rq +
/// rq*a*(dn+dr)` (or `h*a*(dn+dr)` without a query rank) `+ h*(rkv+dr) + rkv + rkv*a*(dn+dv) +
/// a*dv*h`. QK-norm adds `2*d` (one RMSNorm weight over the head dim for queries, one for keys,
/// shared by the heads), sinks `a`.
pub fn attention(m: &Model) -> u128 {
    let h = m.hidden as u128;
    let a = m.heads as u128;
    let sinks = if m.attention_sinks { a } else { 0 };
    if let Some(mla) = m.mla {
        let (rq, rkv) = (mla.q_lora_rank as u128, mla.kv_lora_rank as u128);
        let (dn, dr, dv) = (
            mla.qk_nope_head_dim as u128,
            mla.qk_rope_head_dim as u128,
            mla.v_head_dim as u128,
        );
        let q = if rq > 0 {
            h * rq + rq + rq * a * (dn + dr)
        } else {
            h * a * (dn + dr)
        };
        let kv = h * (rkv + dr) + rkv + rkv * a * (dn + dv);
        return q + kv + a * dv * h + sinks;
    }
    let d = m.head_dim as u128;
    let g = m.kv_heads as u128;
    let weights = h * a * d + 2 * h * g * d + a * d * h;
    let biases = if m.bias {
        a * d + 2 * g * d + h
    } else if m.qkv_bias {
        a * d + 2 * g * d
    } else {
        0
    };
    let qk_norm = if m.qk_norm { 2 * d } else { 0 };
    weights + biases + qk_norm + sinks
}

/// Router parameters of one MoE layer: an `h x experts` projection, plus a bias per expert where
/// the model has one.
pub fn router(m: &Model) -> u128 {
    let e = m.experts as u128;
    m.hidden as u128 * e + if m.router_bias { e } else { 0 }
}

/// Parameters of one MLP with intermediate size `f`: 2 matrices for GELU, 3 for SwiGLU.
pub fn mlp(m: &Model, f: u128) -> u128 {
    let h = m.hidden as u128;
    match m.activation {
        Activation::Gelu => 2 * h * f + if m.bias { f + h } else { 0 },
        Activation::Swiglu => 3 * h * f + if m.bias { 2 * f + h } else { 0 },
    }
}

/// Norm parameters of one decoder layer: two norms (before attention and before the MLP), four
/// with sandwich norms (after each as well).
pub fn layer_norms(m: &Model) -> u128 {
    if m.sandwich_norm {
        4 * norm(m)
    } else {
        2 * norm(m)
    }
}

/// Parameters of one dense decoder layer.
pub fn dense_layer(m: &Model) -> u128 {
    attention(m) + mlp(m, m.ffn_hidden as u128) + layer_norms(m)
}

/// Parameters of one MoE layer: attention, router, routed and shared experts.
pub fn moe_layer(m: &Model) -> u128 {
    let experts = m.experts as u128 + m.shared_experts as u128;
    attention(m) + router(m) + experts * mlp(m, m.moe_ffn_hidden as u128) + layer_norms(m)
}

/// Parameters of an MoE layer that one token uses (top-k routed plus shared experts).
pub fn moe_layer_active(m: &Model) -> u128 {
    let experts = m.topk as u128 + m.shared_experts as u128;
    attention(m) + router(m) + experts * mlp(m, m.moe_ffn_hidden as u128) + layer_norms(m)
}

/// Parameters of one multi-token-prediction module beyond what it shares with the main model
/// (the word embedding and output head): the decoder layer (of the last layer's kind), the
/// `2h x h` projection of [norm(hidden); norm(embedding)] and the three norms (DeepSeek-V3 §2.2;
/// HF `eh_proj`, `enorm`, `hnorm`, `shared_head.norm`). `active` counts the top-k experts only.
pub fn mtp_module(m: &Model, active: bool) -> u128 {
    let layer = if m.is_moe_layer(m.layers.saturating_sub(1)) {
        if active {
            moe_layer_active(m)
        } else {
            moe_layer(m)
        }
    } else {
        dense_layer(m)
    };
    let h = m.hidden as u128;
    layer + 2 * h * h + 3 * norm(m)
}

/// How a linear layer's weight is split over tensor parallelism (Megatron's column- and row-parallel
/// linears; MLA's down projections stay whole on every rank).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Column,
    Row,
    Whole,
}

/// One kind of linear layer of a decoder layer: `inp -> out`, `count` of them on a rank (routed
/// experts: the local ones), split over `t` ranks as `split` says; `parts` modules fused into it
/// (Megatron's fused QKV: 3, fused SwiGLU gate and up: 2; 1 otherwise).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Linear {
    pub inp: u64,
    pub out: u64,
    pub count: u64,
    pub split: Split,
    pub t: u64,
    pub parts: u64,
}

impl Linear {
    /// (inputs, outputs) this rank's slice of the weight multiplies.
    pub fn local(&self) -> (u64, u64) {
        match self.split {
            Split::Column => (self.inp, self.out / self.t.max(1)),
            Split::Row => (self.inp / self.t.max(1), self.out),
            Split::Whole => (self.inp, self.out),
        }
    }

    /// Parameters of rank-`r` LoRA adapters on this rank: `A` (r x in) follows the input's split,
    /// `B` (out x r) the output's (Megatron-Core's LoRA on parallel linears). `separate`: the
    /// modules a fused linear stands for carry an adapter each (PEFT on Hugging Face's separate
    /// q/k/v and gate/up projections): `parts` A matrices, the B matrices' rows summing to `out`.
    pub fn lora(&self, r: u64, separate: bool) -> f64 {
        let (i, o) = self.local();
        let a = if separate { self.parts } else { 1 };
        (r as f64) * (a * i + o) as f64 * self.count as f64
    }
}

/// The linear layers of one decoder layer on one rank (router excluded): attention projections,
/// and the MLP of a dense layer (`moe` false) or the shared and local routed experts of an MoE
/// layer. Matrices split over `tp`, routed experts over `etp` with `experts / ep` on a rank.
pub fn linears(m: &Model, moe: bool, tp: u32, etp: u32, ep: u32) -> Vec<Linear> {
    let (h, t, et) = (m.hidden as u64, tp.max(1) as u64, etp.max(1) as u64);
    let l = |inp: u64, out: u64, count: u64, split: Split, t: u64| Linear {
        inp,
        out,
        count,
        split,
        t,
        parts: 1,
    };
    let up = if m.activation == Activation::Swiglu {
        2
    } else {
        1
    };
    let fc1 = |inp: u64, width: u64, count: u64, t: u64| Linear {
        parts: up,
        ..l(inp, up * width, count, Split::Column, t)
    };
    let mut v = Vec::with_capacity(9);
    if let Some(mla) = m.mla {
        let a = m.heads as u64;
        let (rq, rkv) = (mla.q_lora_rank as u64, mla.kv_lora_rank as u64);
        let (dn, dr, dv) = (
            mla.qk_nope_head_dim as u64,
            mla.qk_rope_head_dim as u64,
            mla.v_head_dim as u64,
        );
        if rq > 0 {
            v.push(l(h, rq, 1, Split::Whole, t));
            v.push(l(rq, a * (dn + dr), 1, Split::Column, t));
        } else {
            v.push(l(h, a * (dn + dr), 1, Split::Column, t));
        }
        v.push(l(h, rkv + dr, 1, Split::Whole, t));
        v.push(l(rkv, a * (dn + dv), 1, Split::Column, t));
        v.push(l(a * dv, h, 1, Split::Row, t));
    } else {
        let (q, kv) = (
            m.heads as u64 * m.head_dim as u64,
            m.kv_heads as u64 * m.head_dim as u64,
        );
        v.push(Linear {
            parts: 3,
            ..l(h, q + 2 * kv, 1, Split::Column, t)
        });
        v.push(l(q, h, 1, Split::Row, t));
    }
    if moe {
        let fe = m.moe_ffn_hidden as u64;
        let fs = fe * m.shared_experts as u64;
        if fs > 0 {
            v.push(fc1(h, fs, 1, t));
            v.push(l(fs, h, 1, Split::Row, t));
        }
        let local = (m.experts as u64 / ep.max(1) as u64).max(1);
        v.push(fc1(h, fe, local, et));
        v.push(l(fe, h, local, Split::Row, et));
    } else {
        let f = m.ffn_hidden as u64;
        v.push(fc1(h, f, 1, t));
        v.push(l(f, h, 1, Split::Row, t));
    }
    v
}

/// LoRA adapter parameters of the whole model at rank `r` (Hu et al. 2021, on every linear layer of
/// every decoder layer: PEFT's and Megatron-Bridge's "all linear" target): `r (in + out)` a linear,
/// with one adapter per fused linear (Megatron-Core) or per module (`separate`, PEFT).
pub fn lora_total(m: &Model, r: u32, separate: bool) -> f64 {
    let per = |moe: bool| {
        linears(m, moe, 1, 1, 1)
            .iter()
            .map(|x| x.lora(r as u64, separate))
            .sum::<f64>()
    };
    // At ep 1 every expert is local: `linears` counts them all.
    let routed = if m.is_moe() { per(true) } else { 0.0 };
    let moe = m.moe_layers() as f64;
    (m.layers as f64 - moe) * per(false) + moe * routed
}

/// LoRA adapter parameters on one rank of pipeline stage `stage` (see [`lora_total`]).
#[allow(clippy::too_many_arguments)]
pub fn lora_stage_rank(
    m: &Model,
    r: u32,
    separate: bool,
    tp: u32,
    etp: u32,
    ep: u32,
    pp: u32,
    stage: u32,
) -> f64 {
    let layers = stage_layers(m.layers, pp, stage);
    let moe_here = m.moe_layers_in(first_layer(m.layers, pp, stage), layers);
    let per = |moe: bool| {
        linears(m, moe, tp, etp, ep)
            .iter()
            .map(|x| x.lora(r as u64, separate))
            .sum::<f64>()
    };
    let moe = if moe_here > 0 {
        moe_here as f64 * per(true)
    } else {
        0.0
    };
    (layers - moe_here) as f64 * per(false) + moe
}

/// Word embedding for a (possibly padded) vocabulary.
pub fn embedding(m: &Model, vocab: u128) -> u128 {
    vocab * m.hidden as u128
}

/// Learned position table and the optional norm after the embedding.
pub fn embedding_extras(m: &Model) -> u128 {
    let pos = if m.position == Position::Learned {
        m.position_rows as u128 * m.hidden as u128
    } else {
        0
    };
    pos + if m.embedding_norm { norm(m) } else { 0 }
}

/// Total parameters with the checkpoint's vocabulary: the number model cards publish (for a model
/// with multi-token prediction, the main model's plus its MTP modules').
pub fn total(m: &Model) -> u128 {
    main(m) + m.mtp_layers as u128 * mtp_module(m, false)
}

/// Parameters of the main model, without multi-token-prediction modules (DeepSeek-V3's "671B").
pub fn main(m: &Model) -> u128 {
    let moe = m.moe_layers();
    let layers = (m.layers - moe) as u128 * dense_layer(m)
        + moe as u128 * if m.is_moe() { moe_layer(m) } else { 0 };
    let head = if m.tied_embeddings {
        0
    } else {
        embedding(m, m.vocab as u128)
    };
    embedding(m, m.vocab as u128) + embedding_extras(m) + layers + norm(m) + head
}

/// Parameters a token touches (MoE: top-k and shared experts only, MTP modules included); equals
/// [`total`] when dense.
pub fn active(m: &Model) -> u128 {
    if !m.is_moe() {
        return total(m);
    }
    let moe = m.moe_layers();
    let layers = (m.layers - moe) as u128 * dense_layer(m) + moe as u128 * moe_layer_active(m);
    let head = if m.tied_embeddings {
        0
    } else {
        embedding(m, m.vocab as u128)
    };
    embedding(m, m.vocab as u128)
        + embedding_extras(m)
        + layers
        + norm(m)
        + head
        + m.mtp_layers as u128 * mtp_module(m, true)
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
    /// Norms of one decoder layer ([`layer_norms`]), replicated on every tensor-parallel rank.
    pub layer_norms: f64,
    pub dense_layer: f64,
    pub attention: f64,
    pub expert_mlp: f64,
    pub router: f64,
    pub embedding_extras: f64,
    /// One multi-token-prediction module (0 without); it sits on the last pipeline stage.
    pub mtp_module: f64,
}

impl LayerCounts {
    pub fn new(m: &Model) -> Self {
        LayerCounts {
            norm: norm(m) as f64,
            layer_norms: layer_norms(m) as f64,
            dense_layer: dense_layer(m) as f64,
            attention: attention(m) as f64,
            expert_mlp: if m.is_moe() {
                mlp(m, m.moe_ffn_hidden as u128) as f64
            } else {
                0.0
            },
            router: router(m) as f64,
            embedding_extras: embedding_extras(m) as f64,
            mtp_module: if m.mtp_layers > 0 {
                mtp_module(m, false) as f64
            } else {
                0.0
            },
        }
    }
}

/// Parameters on one tensor-parallel rank of one pipeline stage.
///
/// Matrices (and column-parallel biases) are split over `tp`; norms are replicated. Routed experts
/// are split over `ep * tp`. The first stage holds the word embedding (split over `tp`) and the
/// position table; the last holds the final norm and the LM head (a copy of the embedding when
/// tied and `pp > 1`, as Megatron-LM keeps one for the tied gradient), with the framework's
/// vocabulary padding ([`padded_vocab`]), and the multi-token-prediction modules (Megatron-Core
/// places them on the last stage, with a copy of the word embedding when `pp > 1`; their matrices
/// split over `tp`, routed experts over `ep * tp`, as the main layers'). `expert_split` is `ep *
/// etp`: routed experts split over ep ranks and, within each, over the expert-tensor-parallel ones
/// (`etp` = tp unless Megatron-Core's parallel folding sets it).
pub fn stage_rank(
    m: &Model,
    tp: u32,
    expert_split: u32,
    pp: u32,
    stage: u32,
    vocab_multiple: u32,
) -> f64 {
    stage_rank_with(
        &LayerCounts::new(m),
        m,
        tp,
        expert_split,
        pp,
        stage,
        vocab_multiple,
    )
}

/// [`stage_rank`] with the model's [`LayerCounts`] already computed.
pub fn stage_rank_with(
    lc: &LayerCounts,
    m: &Model,
    tp: u32,
    expert_split: u32,
    pp: u32,
    stage: u32,
    vocab_multiple: u32,
) -> f64 {
    let tp_f = tp as f64;
    let n_norm = lc.norm;
    let layers = stage_layers(m.layers, pp, stage);
    // Which of this stage's layers carry experts (after the leading `dense_layers`, every
    // `moe_layer_every`-th).
    let moe_here = m.moe_layers_in(first_layer(m.layers, pp, stage), layers);
    let dense_here = layers - moe_here;
    let dense = (lc.dense_layer - lc.layer_norms) / tp_f + lc.layer_norms;
    let routed = m.experts as f64 * lc.expert_mlp;
    let shared = m.shared_experts as f64 * lc.expert_mlp;
    let moe = lc.attention / tp_f
        + shared / tp_f
        + routed / expert_split as f64
        + lc.router
        + lc.layer_norms;
    let mut p = dense_here as f64 * dense + moe_here as f64 * moe;
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
        if m.mtp_layers > 0 {
            let layer = if m.is_moe_layer(m.layers - 1) {
                moe
            } else {
                dense
            };
            let h = m.hidden as f64;
            p += m.mtp_layers as f64 * (layer + 2.0 * h * h / tp_f + 3.0 * n_norm);
            if pp > 1 {
                p += emb;
            }
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
        let m = Model {
            kv_heads: 8,
            ffn_hidden: 14336,
            vocab: 128_256,
            ..llama2_7b()
        };
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
        assert_eq!(
            total(&Model {
                position_rows: 65536,
                ..m
            }),
            6_918_905_856
        );
    }

    #[test]
    fn mixtral_counts_all_experts() {
        // mistralai/Mixtral-8x7B-v0.1: 46,702,792,704 parameters.
        let m = Model {
            kv_heads: 8,
            ffn_hidden: 14336,
            experts: 8,
            topk: 2,
            moe_ffn_hidden: 14336,
            seq_len: 32768,
            ..llama2_7b()
        };
        assert_eq!(total(&m), 46_702_792_704);
        assert!(active(&m) < total(&m) / 3);
    }

    #[test]
    fn mla_attention_is_smaller_than_mha() {
        // DeepSeek-V2 attention dims (config.json); MLA compresses K/V through a 512 rank.
        let mla = Mla {
            q_lora_rank: 1536,
            kv_lora_rank: 512,
            qk_rope_head_dim: 64,
            qk_nope_head_dim: 128,
            v_head_dim: 128,
        };
        let m = Model {
            hidden: 5120,
            heads: 128,
            kv_heads: 128,
            head_dim: 128,
            mla: Some(mla),
            ..llama2_7b()
        };
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
    fn moe_layer_counts_match_a_walk() {
        // Llama 4 Maverick interleaves (interleave_moe_layer_step 2: layers 1, 3, ... carry
        // experts); DeepSeek-V3 keeps its first 3 layers dense. Counting by range equals walking.
        let base = Model {
            experts: 16,
            topk: 1,
            moe_ffn_hidden: 8192,
            ..llama2_7b()
        };
        for (layers, dense, every) in [
            (48, 0, 2),
            (61, 3, 1),
            (48, 0, 1),
            (30, 5, 3),
            (7, 7, 2),
            (10, 0, 0),
        ] {
            let m = Model {
                layers,
                dense_layers: dense,
                moe_layer_every: every,
                ..base
            };
            let walk = |a: u32, n: u32| (a..a + n).filter(|&i| m.is_moe_layer(i)).count() as u32;
            assert_eq!(m.moe_layers(), walk(0, layers), "{layers} {dense} {every}");
            for pp in [1, 2, 3, 5] {
                for st in 0..pp.min(layers) {
                    let (a, n) = (first_layer(layers, pp, st), stage_layers(layers, pp, st));
                    assert_eq!(m.moe_layers_in(a, n), walk(a, n));
                }
            }
        }
        let maverick = Model {
            layers: 48,
            moe_layer_every: 2,
            ..base
        };
        assert_eq!(maverick.moe_layers(), 24);
        assert!(!maverick.is_moe_layer(0) && maverick.is_moe_layer(1));
    }

    #[test]
    fn windowed_layer_counts_match_a_walk() {
        // GPT-OSS alternates windowed and full layers from a windowed layer 0 (every 2); Gemma 3
        // has one full layer in 6; Mistral 7B windows every layer (0).
        for (layers, every) in [(36, 2), (24, 2), (62, 6), (32, 0), (5, 7)] {
            let m = Model {
                layers,
                sliding_window: 128,
                full_attention_every: every,
                ..llama2_7b()
            };
            let walk =
                |a: u32, n: u32| (a..a + n).filter(|&i| m.is_windowed_layer(i)).count() as u32;
            assert_eq!(m.windowed_layers(), walk(0, layers));
            assert_eq!(
                m.windowed_layers_in(3, 10),
                walk(3, 10.min(layers.saturating_sub(3)))
            );
        }
        assert_eq!(
            Model {
                layers: 36,
                sliding_window: 128,
                full_attention_every: 2,
                ..llama2_7b()
            }
            .windowed_layers(),
            18
        );
        assert_eq!(llama2_7b().windowed_layers(), 0);
    }

    #[test]
    fn lora_adapters_match_the_measured_model() {
        // data/measured/h200_lora_steps.csv: a 16-layer Llama-style model (hidden 4096, 32 heads, 8 KV
        // heads, SwiGLU 14336) with PEFT-style adapters on q, k, v, o, gate, up and down had
        // 20,971,520 trainable parameters at rank 16 and 83,886,080 at rank 64 (counted by PyTorch).
        let m = Model {
            layers: 16,
            kv_heads: 8,
            ffn_hidden: 14336,
            ..llama2_7b()
        };
        assert_eq!(lora_total(&m, 16, true), 20_971_520.0);
        assert_eq!(lora_total(&m, 64, true), 83_886_080.0);
        // Megatron-Core's fused QKV and gate/up carry one A each: r * (4 * 4096 + 6144 + 2 * 14336 + 14336 + 4096) a layer.
        assert_eq!(
            lora_total(&m, 16, false),
            16.0 * 16.0 * (4.0 * 4096.0 + 6144.0 + 2.0 * 14336.0 + 14336.0 + 4096.0)
        );
        // The ranks of a tensor-parallel group together hold the whole adapters plus the replicated
        // halves (A of column-parallel, B of row-parallel linears).
        let one = lora_stage_rank(&m, 16, false, 1, 1, 1, 1, 0);
        assert_eq!(one, lora_total(&m, 16, false));
        assert!(lora_stage_rank(&m, 16, false, 4, 4, 1, 1, 0) < one / 2.0);
    }

    #[test]
    fn mtp_module_sits_on_the_last_stage() {
        // DeepSeek-V3 shape (config.json), one MTP module: at pp = 1 the stage holds the total; at
        // pp > 1 the stages hold the total plus the last stage's copy of the word embedding.
        let mla = Mla {
            q_lora_rank: 1536,
            kv_lora_rank: 512,
            qk_rope_head_dim: 64,
            qk_nope_head_dim: 128,
            v_head_dim: 128,
        };
        let m = Model {
            layers: 61,
            hidden: 7168,
            heads: 128,
            kv_heads: 128,
            head_dim: 128,
            ffn_hidden: 18432,
            vocab: 129280,
            experts: 256,
            topk: 8,
            shared_experts: 1,
            moe_ffn_hidden: 2048,
            dense_layers: 3,
            mla: Some(mla),
            router_bias: true,
            mtp_layers: 1,
            ..llama2_7b()
        };
        assert_eq!(total(&m) - main(&m), mtp_module(&m, false));
        assert_eq!(stage_rank(&m, 1, 1, 1, 0, 128) as u128, total(&m));
        let sum: f64 = (0..4).map(|s| stage_rank(&m, 1, 1, 4, s, 128)).sum();
        assert_eq!(sum as u128, total(&m) + 129280 * 7168);
        assert!(active(&m) < total(&m) / 10);
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
