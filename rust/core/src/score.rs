//! Scoring one candidate: the formulas assembled into step time, throughput, memory and energy.
//!
//! Scoring splits in two so enumeration can share work: [`LayerCost`] holds what depends only on
//! the model shape and the per-rank slicing (tp, cp, ep, micro batch, recompute, precision);
//! [`assemble`] adds the pipeline, data parallelism, ZeRO and the profile's constants. [`score`]
//! runs both and is what `evaluate`, `enumerate`, `check` and `validate` all call.
//!
//! # Time model
//! Per micro batch and stage: `t = L * (G/e_gemm + M/e_mem + C_tp/e_link + o_layer) + extras`, with
//! G the GEMM time at peak after tile/wave quantization ([`crate::formulas::gemm`]), M the
//! memory-bound kernels (plain streams at the HBM peak, norms, dropouts, activations and softmax at
//! the GPU's measured elementwise rate, [`Gpu::elementwise_bw`]), C_tp tensor/expert/context-parallel traffic at
//! full link bandwidth ([`crate::formulas::comm`]). Backward is the dgrad and wgrad GEMMs; recompute
//! repeats the forward (full) or the attention core (selective). A pipeline of stages `t_i` with
//! `m` micro batches takes `sum_i t_i + (m-1) max_i t_i` (1F1B/GPipe); interleaving divides the fill
//! by `v`. Then the exposed part of the data-parallel reduction, the optimizer step (memory bound)
//! and a fixed per-step overhead. ZeRO-3 gathers each layer's weights per micro batch, overlapped
//! with that layer's compute (`max`).

use crate::error::Result;
use crate::formulas::comm::{self, ALPHA_INTER_S, ALPHA_INTRA_S};
use crate::formulas::gemm::{flash_attention_fwd, flash_attention_window_fwd, Gemm};
use crate::formulas::{energy, flops, memory, params};
use crate::profile::Profile;
use crate::rules::{self, warn, Reject};
use crate::spec::{
    Activation, Cluster, CpComm, Gpu, Model, Offload, Position, Precision, Recompute, Schedule,
    Strategy, Task,
};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// Bytes per parameter the optimizer step streams: read fp32 master, momentum, variance and
/// gradient (16), write the three states (12) and the 16-bit weight (2).
const OPTIMIZER_STEP_BYTES: f64 = 30.0;
/// Host-memory bytes per parameter of an offloaded optimizer step on the CPU: the fused fp32 AdamW
/// pass (28: read weight, gradient and both moments, write three) plus the 16-bit gradient's upcast
/// (read 2, write 4 with its read-for-ownership: 10) and the weight's downcast into the pinned
/// buffer (read 4, write 2 + 2: 8). Measured on our H200's host (data/measured/h200_host.csv,
/// 2e8 parameters, 16 threads): AdamW 52.5 ms, casts 19.7 + 17.8 ms, i.e. ~100 GB/s for each
/// phase counted this way, the host's copy/triad bandwidth with write-allocate counted (93.6-98.5).
const CPU_STEP_BYTES: f64 = 46.0;
/// Fraction of the datasheet DRAM bandwidth (`Gpu::host_memory_bw`) streaming kernels reach on a
/// server CPU (STREAM triad on Xeon and Grace runs at about 0.8 of the channels' peak); our
/// measurement above gives the achieved rate, not the VM's datasheet peak, so this one is assumed.
const HOST_STREAM_FRACTION: f64 = 0.8;
/// Fraction of the host link's nominal rate pinned copies reach: 54.3-55.2 of 63 GB/s (PCIe 5.0
/// x16) in both directions on our H200 (data/measured/h200_host.csv).
const HOST_LINK_EFFICIENCY: f64 = 0.87;

/// Options that are not part of the strategy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Fraction of GPU memory kept free; `fits` compares against `(1 - headroom) * memory`.
    pub headroom: f64,
    /// Tokens for the GPU-hours and days columns.
    pub train_tokens: f64,
    pub allow_cross_node_tp: bool,
    /// Check seeds/001's batch ramp-up rule (dp % 4 == 0, gbs % 32 == 0).
    pub rampup: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            headroom: 0.0,
            train_tokens: 1e12,
            allow_cross_node_tp: false,
            rampup: false,
        }
    }
}

/// Raw cost of a piece of work for one micro batch: seconds at 100% of peak / bandwidth.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Work {
    /// Linear-layer GEMMs at tensor peak, with quantization.
    pub gemm: f64,
    /// The attention core (flash kernel, or score and context GEMMs) at tensor peak.
    pub attn: f64,
    /// Memory-bound kernels at full HBM bandwidth.
    pub mem: f64,
    /// Tensor- and context-parallel communication at full link bandwidth.
    pub comm: f64,
    /// Expert-parallel all-to-all (token dispatch and combine) at full link bandwidth.
    pub a2a: f64,
}

impl Work {
    fn add(self, o: Work) -> Work {
        Work {
            gemm: self.gemm + o.gemm,
            attn: self.attn + o.attn,
            mem: self.mem + o.mem,
            comm: self.comm + o.comm,
            a2a: self.a2a + o.a2a,
        }
    }

    fn sub(self, o: Work) -> Work {
        Work {
            gemm: self.gemm - o.gemm,
            attn: self.attn - o.attn,
            mem: self.mem - o.mem,
            comm: self.comm - o.comm,
            a2a: self.a2a - o.a2a,
        }
    }
}

/// Seconds of one pipeline stage per micro batch, by what they are spent on. The parts add up to the
/// stage's time; [`assemble`] scales the slowest stage's by the micro batches for the step breakdown.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Split {
    /// GEMMs, attention and memory-bound kernels of forward and backward.
    compute: f64,
    /// The recomputed forward (full) or attention core (selective), with its communication.
    recompute: f64,
    /// Tensor- and context-parallel communication (not overlapped).
    tp_comm: f64,
    /// Expert-parallel all-to-all not hidden (DualPipe hides it behind the other direction).
    ep_comm: f64,
    /// Fixed per-layer cost (kernel launches, framework).
    overhead: f64,
    /// ZeRO-3 weight gathers not hidden behind the layer's compute.
    fsdp_comm: f64,
    /// Pipeline point-to-point sends.
    p2p: f64,
}

impl Split {
    fn total(&self) -> f64 {
        self.compute
            + self.recompute
            + self.tp_comm
            + self.ep_comm
            + self.overhead
            + self.fsdp_comm
            + self.p2p
    }

    fn scaled(self, k: f64) -> Split {
        Split {
            compute: k * self.compute,
            recompute: k * self.recompute,
            tp_comm: k * self.tp_comm,
            ep_comm: k * self.ep_comm,
            overhead: k * self.overhead,
            fsdp_comm: k * self.fsdp_comm,
            p2p: k * self.p2p,
        }
    }

    fn plus(self, o: Split) -> Split {
        Split {
            compute: self.compute + o.compute,
            recompute: self.recompute + o.recompute,
            tp_comm: self.tp_comm + o.tp_comm,
            ep_comm: self.ep_comm + o.ep_comm,
            overhead: self.overhead + o.overhead,
            fsdp_comm: self.fsdp_comm + o.fsdp_comm,
            p2p: self.p2p + o.p2p,
        }
    }
}

/// Everything about one layer and micro batch that does not depend on pp, dp or ZeRO.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerCost {
    /// Forward + backward (+ recompute) of a dense layer and of an MoE layer.
    pub dense: Work,
    pub moe: Work,
    /// The recompute part of `dense` and `moe` (for the time breakdown).
    pub dense_recompute: Work,
    pub moe_recompute: Work,
    /// Whether the tensor/expert-parallel traffic stays inside a node.
    pub comm_intra: bool,
    /// Embedding (first stage) and LM head + loss (last stage), fwd + bwd.
    pub embedding: Work,
    pub head: Work,
    /// One multi-token-prediction module beyond its decoder layer: the `2h -> h` projection, the
    /// shared output head and its loss (fwd + bwd).
    pub mtp_extra: Work,
    /// Bytes of one point-to-point activation transfer between stages.
    pub p2p_bytes: f64,
    /// Useful FLOPs over peak time of a dense layer's forward GEMMs (quantization efficiency).
    pub gemm_efficiency: f64,
    pub warnings: u32,
    /// Whole-model parameters (checkpoint vocabulary) and those a token uses.
    pub params_total: f64,
    pub params_active: f64,
    /// The model's FLOP terms, for every convention of `flops`.
    pub flop_terms: flops::Terms,
}

/// Backward of `g`: the input gradient (dgrad, `dA[m,k] = dC[m,n] B^T`) and, unless the weight is
/// frozen, the weight gradient (wgrad, `dB[k,n] = A^T dC`).
fn gemm_bwd(g: Gemm, gpu: &Gpu, p: Precision, rf: f64, wgrad: bool) -> f64 {
    Gemm::new(g.m, g.k, g.n, g.batch).time_at(gpu, p, rf)
        + if wgrad {
            Gemm::new(g.k, g.n, g.m, g.batch).time_at(gpu, p, rf)
        } else {
            0.0
        }
}

/// Rank-`r` LoRA adapters beside a linear GEMM `g` (`[m, k] x [k, n]`): `x A^T` (`[m, k] x [k, r]`)
/// then `(x A^T) B^T` (`[m, r] x [r, n]`), in 16 bits; forward and backward seconds at peak (both
/// gradients: the adapters train). At rank r they do about r FLOPs per byte moved, far below a
/// GPU's ridge point (H200 bf16: ~206), so each is priced by the bytes it streams (or its FLOPs at
/// peak, whichever is longer), not by the tile model, whose 128-wide tiles would waste 8x at r 16.
fn lora_gemms(g: &Gemm, r: u64, gpu: &Gpu, p: Precision) -> (f64, f64) {
    let p = if p.low_precision_gemm() {
        Precision::Bf16
    } else {
        p
    };
    let t = |m: u64, n: u64, k: u64| {
        let (m, n, k, b) = (m as f64, n as f64, k as f64, g.batch as f64);
        (p.compute_bytes() * b * (m * k + k * n + m * n) / gpu.memory_bw)
            .max(2.0 * m * n * k * b / gpu.peak(p))
    };
    // Forward: A then B. Backward: for each, the input gradient and the weight gradient.
    let fwd = t(g.m, r, g.k) + t(g.m, g.n, r);
    let bwd = t(g.m, g.k, r) + t(r, g.k, g.m) + t(g.m, r, g.n) + t(r, g.n, g.m);
    (fwd, bwd)
}

impl LayerCost {
    /// The cost for `s` (its micro batch, slicing, sequence parallelism and recompute).
    pub fn new(m: &Model, c: &Cluster, s: &Strategy) -> Self {
        LayerBase::new(m, c, s).cost(
            s.sequence_parallel,
            s.recompute,
            (params::total(m) as f64, params::active(m) as f64),
        )
    }
}

/// The expensive part of a [`LayerCost`] (every GEMM timed with quantization), shared by the
/// sequence-parallel and recompute variants of one (model, tp, cp, ep, micro batch). It depends on
/// the layer's shape, not on the number of layers, so enumeration reuses it across layer counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerBase {
    proj_fwd: f64,
    proj_bwd: f64,
    core_fwd: f64,
    core_bwd: f64,
    softmax_mem: f64,
    dense_mlp: (f64, f64),
    moe_mlp: (f64, f64),
    /// Seconds at peak of the memory-bound kernels of a layer's forward: norms, residuals and
    /// dropouts (divided by tp under sequence parallelism); rotary embeddings (and eager K/V
    /// repetition); the dense and the MoE MLP's activations.
    sp_mem: f64,
    qk_mem: f64,
    dense_mem: f64,
    moe_mem: f64,
    tp: f64,
    tp_fwd: f64,
    cp_fwd: f64,
    /// Context-parallel traffic of a layer's backward: ring attention passes K/V and their
    /// gradients (2x forward), Ulysses re-shards the same tensors' gradients (1x).
    cp_bwd: f64,
    ep_fwd: f64,
    is_moe: bool,
    comm_intra: bool,
    embedding: Work,
    head: Work,
    mtp_extra: Work,
    p2p_bytes: f64,
    gemm_efficiency: f64,
    warnings: u32,
    flop_terms: flops::Terms,
}

impl LayerBase {
    pub fn new(m: &Model, c: &Cluster, s: &Strategy) -> Self {
        let gpu = &c.gpu;
        let p = s.precision;
        let rf = s.gemm_rate_factor();
        let t = s.tp as u64;
        let etp = s.etp().max(1) as u64;
        let bytes = p.compute_bytes();
        let seq = (m.seq_len / s.cp.max(1)) as u64;
        let tokens = seq * s.mbs as u64;
        let h = m.hidden as u64;
        let hd = m.head_dim as u64;
        let q = m.heads as u64 * hd;
        let kv = m.kv_heads as u64 * hd;
        let local_heads = (m.heads as u64 / t).max(1);
        let mut warnings = 0u32;
        // LoRA freezes the base: its GEMMs skip the weight gradient; adapters train beside them.
        let lora = s.mode.task == Task::Lora;
        let lora_r = s.mode.lora_rank as u64;

        // Attention projections.
        let mut proj: Vec<Gemm> = Vec::with_capacity(8);
        if let Some(mla) = m.mla {
            let (rq, rkv) = (mla.q_lora_rank as u64, mla.kv_lora_rank as u64);
            let (dn, dr, dv) = (
                mla.qk_nope_head_dim as u64,
                mla.qk_rope_head_dim as u64,
                mla.v_head_dim as u64,
            );
            if rq > 0 {
                proj.push(Gemm::new(tokens, rq, h, 1));
                proj.push(Gemm::new(tokens, m.heads as u64 * (dn + dr) / t, rq, 1));
            } else {
                proj.push(Gemm::new(tokens, m.heads as u64 * (dn + dr) / t, h, 1));
            }
            proj.push(Gemm::new(tokens, rkv + dr, h, 1));
            proj.push(Gemm::new(tokens, m.heads as u64 * (dn + dv) / t, rkv, 1));
            proj.push(Gemm::new(tokens, h, m.heads as u64 * dv / t, 1));
        } else {
            proj.push(Gemm::new(tokens, (q + 2 * kv) / t, h, 1));
            proj.push(Gemm::new(tokens, h, q / t, 1));
        }
        // Attention core: scores and context per local head, or one flash kernel. Ulysses context
        // parallelism gives each rank the whole sequence for heads / cp of the heads.
        let ulysses = s.cp > 1 && s.mode.cp_comm == CpComm::Ulysses;
        let (q_len, attn_heads) = if ulysses {
            (m.seq_len as u64, (local_heads / s.cp as u64).max(1))
        } else {
            (seq, local_heads)
        };
        let batch_heads = s.mbs as u64 * attn_heads;
        let s_k = m.seq_len as u64;
        let (core_fwd, core_bwd) = if s.flash_attention {
            // Windowed layers (sliding-window attention) compute the key blocks their window
            // touches (`flash_attention_window_fwd`). Stages mix both kinds evenly enough (GPT-OSS
            // alternates) to price an average layer.
            let full = flash_attention_fwd(gpu, p, q_len, s_k, hd, batch_heads);
            let windowed = m.windowed_layers() as f64 / m.layers as f64;
            let f = if windowed > 0.0 {
                (1.0 - windowed) * full
                    + windowed
                        * flash_attention_window_fwd(
                            gpu,
                            p,
                            q_len,
                            s_k,
                            m.sliding_window as u64,
                            hd,
                            batch_heads,
                        )
            } else {
                full
            };
            (f, 2.5 * f)
        } else {
            let scores = Gemm::new(q_len, s_k, hd, batch_heads);
            let context = Gemm::new(q_len, hd, s_k, batch_heads);
            (
                scores.time_at(gpu, p, rf) + context.time_at(gpu, p, rf),
                gemm_bwd(scores, gpu, p, rf, true) + gemm_bwd(context, gpu, p, rf, true),
            )
        };
        if !hd.is_multiple_of(p.tensor_core_alignment()) {
            warnings |= warn::HEAD_DIM_MISALIGNED;
        }
        let fused = rules::fused_softmax_available(m, s);
        if !s.flash_attention && !fused {
            warnings |= warn::FUSED_SOFTMAX_UNAVAILABLE;
        }
        // Softmax traffic over the s^2 scores: fused kernel reads and writes once (plus dropout),
        // unfused PyTorch runs scale, mask, softmax and dropout as separate passes.
        let score_elems = batch_heads as f64 * q_len as f64 * s_k as f64;
        let softmax_passes = if s.flash_attention {
            0.0
        } else if fused {
            3.0
        } else {
            8.0
        };
        let softmax_mem = softmax_passes * score_elems * bytes / gpu.elementwise_bw;

        // MLP GEMMs: dense, and MoE (router; routed experts batched per local expert and split
        // over etp; shared experts split over tp).
        let up_mult = if m.activation == Activation::Swiglu {
            2
        } else {
            1
        };
        let f = m.ffn_hidden as u64;
        let dense_mlp = [
            Gemm::new(tokens, up_mult * f / t, h, 1),
            Gemm::new(tokens, h, f / t, 1),
        ];
        let mut moe_mlp: Vec<Gemm> = Vec::new();
        let mut router: Option<Gemm> = None;
        if m.is_moe() {
            let fe = m.moe_ffn_hidden as u64;
            let ep = s.ep.max(1) as u64;
            let local_experts = (m.experts as u64 / ep).max(1);
            // Tokens a local expert receives: the stage's routed tokens spread over the experts and
            // their expert-data-parallel replicas, `tokens * topk * ep * etp / (experts * tp)`
            // (tokens * topk * ep / experts when etp = tp). Formed in u128.
            let per_expert = ((tokens as u128 * m.topk as u128 * ep as u128 * etp as u128)
                .div_ceil(m.experts as u128 * t as u128)
                .max(1)) as u64;
            router = Some(Gemm::new(tokens, m.experts as u64, h, 1));
            moe_mlp.push(Gemm::new(per_expert, up_mult * fe / etp, h, local_experts));
            moe_mlp.push(Gemm::new(per_expert, h, fe / etp, local_experts));
            if m.shared_experts > 0 {
                let fs = fe * m.shared_experts as u64;
                moe_mlp.push(Gemm::new(tokens, up_mult * fs / t, h, 1));
                moe_mlp.push(Gemm::new(tokens, h, fs / t, 1));
            }
        }
        // Forward and backward seconds of linear GEMMs at peak, with their LoRA adapters.
        let fwd = |gs: &[Gemm]| {
            gs.iter()
                .map(|g| {
                    g.time_at(gpu, p, rf)
                        + if lora {
                            lora_gemms(g, lora_r, gpu, p).0
                        } else {
                            0.0
                        }
                })
                .sum::<f64>()
        };
        let bwd = |gs: &[Gemm]| {
            gs.iter()
                .map(|g| {
                    gemm_bwd(*g, gpu, p, rf, !lora)
                        + if lora {
                            lora_gemms(g, lora_r, gpu, p).1
                        } else {
                            0.0
                        }
                })
                .sum::<f64>()
        };
        // The router trains in every mode but LoRA (frozen there, without adapters).
        let (router_fwd, router_bwd) = router.map_or((0.0, 0.0), |g| {
            (g.time_at(gpu, p, rf), gemm_bwd(g, gpu, p, rf, !lora))
        });

        // Quantization efficiency of the dense layer's forward GEMMs, for reporting and warnings.
        let dense_gemms: Vec<Gemm> = proj.iter().chain(dense_mlp.iter()).copied().collect();
        let useful: f64 = dense_gemms.iter().map(|g| g.flops()).sum();
        let gemm_efficiency = useful
            / (gpu.peak(p)
                * dense_gemms
                    .iter()
                    .map(|g| g.time_at(gpu, p, rf))
                    .sum::<f64>());
        // Flag quantization only where it costs more than 5%: misaligned dims blame tiles,
        // aligned ones the last wave.
        if gemm_efficiency < 0.95 {
            let aligned = (h / t).is_multiple_of(128) && (f / t).is_multiple_of(128);
            warnings |= if aligned {
                warn::WAVE_QUANTIZATION
            } else {
                warn::TILE_QUANTIZATION
            };
        }

        // Memory-bound kernels per layer forward (elements moved): two norms (read+write), two
        // residual adds (2 reads, 1 write), two dropouts (read, write, mask), bias+activation on
        // the MLP, rotary embedding on Q and K. Backward moves about twice as much. Plain reads and
        // writes (adds, multiplies, copies) stream at the HBM's rate; norms, dropouts (random
        // numbers), activations (transcendentals) and softmax reach only `elementwise_bw` where the
        // SMs bind first (measured: `Gpu::elementwise_bw`).
        let (stream_s, sm_s) = (bytes / gpu.memory_bw, bytes / gpu.elementwise_bw);
        let th = tokens as f64 * h as f64;
        // Unfused (eager) code makes more passes (see `Strategy::fused_kernels`): SwiGLU reads gate
        // and up and writes silu(gate), then reads both and writes the product (5 widths, not 3);
        // rotate-half rotary embedding runs four multiplies, an add, a subtract and a concatenation
        // over Q and K (about 9 passes, not a read and a write); repeat_kv reads K and V and writes
        // them at the query heads' width. The extra passes are plain streams.
        let eager = !s.fused_kernels;
        let extra_passes = if eager && m.activation == Activation::Swiglu {
            2
        } else {
            0
        };
        let mlp_mem = |width: u64| {
            let elems =
                |passes: u64| (tokens as u128 * passes as u128 * width as u128 / t as u128) as f64;
            elems(up_mult + 1) * sm_s + elems(extra_passes) * stream_s
        };
        let rope_passes = if eager { 9.0 } else { 2.0 };
        let rope = if m.position == Position::Rope {
            rope_passes * (tokens as u128 * (q + kv) as u128 / t as u128) as f64
        } else {
            0.0
        };
        let repeat_kv = if eager && kv < q {
            2.0 * (tokens as u128 * (q + kv) as u128 / t as u128) as f64
        } else {
            0.0
        };
        // LoRA adds elementwise passes around each adapted linear beyond its adapter GEMMs' own
        // reads and writes: one over the input (dropout or a cast) and two over the output (the
        // scaling, the add into the base output); backward doubles them as for every kernel. With
        // the GEMMs this puts the adapters at ~0.6 of the base forward GEMMs, as our H200 run
        // measured (0.67: +12.9 ms forward, +26 ms backward on 58 ms of forward, rank 16 and 64
        // alike, data/measured/h200_lora_steps.csv).
        let lora_mem = |gs: &[Gemm]| {
            if lora {
                gs.iter()
                    .map(|g| g.m as f64 * g.batch as f64 * (g.k as f64 + 2.0 * g.n as f64))
                    .sum::<f64>()
                    * sm_s
            } else {
                0.0
            }
        };
        let qk_mem = (rope + repeat_kv) * stream_s + lora_mem(&proj);
        let moe_width = (m.topk as u64 + m.shared_experts as u64) * m.moe_ffn_hidden as u64;

        // Tensor-parallel traffic: two all-reduces per layer forward (or two all-gathers and two
        // reduce-scatters with sequence parallelism: the same bytes), two in backward.
        let domain = c.domain() as u64;
        // Which link efficiency prices this layer's communication: NVLink's while tp and ep fit.
        let comm_intra = s.tp as u64 * s.ep as u64 <= domain;
        let (bw, alpha) = if s.tp as u64 <= domain {
            (gpu.intra_node_bw, ALPHA_INTRA_S)
        } else {
            (gpu.inter_node_bw, ALPHA_INTER_S)
        };
        let tp_fwd = 2.0 * comm::all_reduce(th * bytes, t, bw, alpha);
        // Expert parallelism: dispatch and combine all-to-alls of the routed tokens. The ep ranks sit
        // etp apart, so min(ep, domain / etp) of them share the NVLink domain; the rest of the bytes
        // cross the network, concurrently with the NVLink share: the slower of the two sets the time.
        // A rank dispatches its etp/tp share of the tokens its tensor-parallel group holds.
        let ep = s.ep.max(1) as f64;
        let ep_fwd = if s.ep > 1 {
            let local = ((domain / etp).max(1) as f64).min(ep);
            let routed = 2.0 * th * m.topk as f64 * bytes * etp as f64 / t as f64;
            let intra = routed * (local - 1.0) / ep / gpu.intra_node_bw;
            let inter = routed * (ep - local) / ep / gpu.inter_node_bw;
            intra.max(inter)
        } else {
            0.0
        };
        // Context parallelism. Ring: cp - 1 exchanges of a K and V block forward, K, V and their
        // gradients backward. Ulysses: all-to-alls of Q, K, V to head shards and of the output back,
        // each moving (cp - 1)/cp of the tensor, the same again in backward.
        let (cp_fwd, cp_bwd) = if s.cp > 1 {
            let (cbw, calpha) = if s.tp as u64 * s.cp as u64 <= c.domain() as u64 {
                (gpu.intra_node_bw, ALPHA_INTRA_S)
            } else {
                (gpu.inter_node_bw, ALPHA_INTER_S)
            };
            let cp = s.cp as f64;
            if ulysses {
                let elems = (tokens as u128 * (2 * q + 2 * kv) as u128 / t as u128) as f64;
                let f = elems * bytes * (cp - 1.0) / cp / cbw + 4.0 * (cp - 1.0) * calpha;
                (f, f)
            } else {
                let f = (cp - 1.0)
                    * comm::p2p(
                        2.0 * (tokens as u128 * kv as u128 / t as u128) as f64 * bytes,
                        cbw,
                        calpha,
                    );
                (f, 2.0 * f)
            }
        } else {
            (0.0, 0.0)
        };

        // Embedding lookup and its gradient scatter; LM head GEMMs and the fp32 cross entropy
        // (about 16 bytes per logit: read 16-bit logits, write and read fp32 copies, gradient).
        // Under LoRA the head is frozen: its input gradient only.
        let vp = params::padded_vocab(m.vocab, s.tp, s.vocab_multiple);
        let embedding = Work {
            mem: 4.0 * th * stream_s,
            comm: comm::all_reduce(th * bytes, t, bw, alpha),
            ..Work::default()
        };
        let head_gemm = Gemm::new(tokens, vp / t, h, 1);
        let logits = (tokens as u128 * vp as u128 / t as u128) as f64;
        let head = Work {
            gemm: head_gemm.time_at(gpu, p, rf) + gemm_bwd(head_gemm, gpu, p, rf, !lora),
            mem: 16.0 * logits / gpu.elementwise_bw + 6.0 * th * stream_s,
            comm: comm::all_reduce(th * bytes, t, bw, alpha),
            ..Work::default()
        };
        // A multi-token-prediction module (DeepSeek-V3 §2.2): its `[h; h] -> h` projection, then
        // the shared head and loss on its own predictions; its decoder layer is priced as a layer.
        let mtp_proj = Gemm::new(tokens, h / t, 2 * h, 1);
        let mtp_extra = Work {
            gemm: head.gemm + mtp_proj.time_at(gpu, p, rf) + gemm_bwd(mtp_proj, gpu, p, rf, !lora),
            ..head
        };
        LayerBase {
            flop_terms: flops::Terms::new(m),
            proj_fwd: fwd(&proj),
            proj_bwd: bwd(&proj),
            core_fwd,
            core_bwd,
            softmax_mem,
            dense_mlp: (fwd(&dense_mlp), bwd(&dense_mlp)),
            moe_mlp: if m.is_moe() {
                (fwd(&moe_mlp) + router_fwd, bwd(&moe_mlp) + router_bwd)
            } else {
                (0.0, 0.0)
            },
            // Norms (4 x tokens x h) and dropouts (5) at the SMs' rate, residual adds (6) streamed.
            sp_mem: 9.0 * th * sm_s + 6.0 * th * stream_s,
            qk_mem,
            dense_mem: mlp_mem(f) + lora_mem(&dense_mlp),
            moe_mem: mlp_mem(moe_width)
                + 2.0 * th * m.topk.max(1) as f64 * stream_s
                + lora_mem(&moe_mlp),
            tp: t as f64,
            tp_fwd,
            cp_fwd,
            cp_bwd,
            ep_fwd,
            is_moe: m.is_moe(),
            comm_intra,
            embedding,
            head,
            mtp_extra,
            p2p_bytes: th * bytes,
            gemm_efficiency,
            warnings,
        }
    }

    /// Adds sequence parallelism and recompute: forward, backward (about twice the forward's
    /// memory traffic) and the recomputed forward (full) or attention core (selective).
    /// `params` are the whole model's (total, active) parameters, carried for the FLOP counts.
    pub fn cost(
        &self,
        sequence_parallel: bool,
        recompute: Recompute,
        params: (f64, f64),
    ) -> LayerCost {
        let sp_div = if sequence_parallel { self.tp } else { 1.0 };
        let common = self.sp_mem / sp_div + self.qk_mem;
        let layer = |mlp: (f64, f64), mem: f64, a2a: f64| {
            let mem = mem + self.softmax_mem;
            let f_work = Work {
                gemm: self.proj_fwd + mlp.0,
                attn: self.core_fwd,
                mem,
                comm: self.tp_fwd + self.cp_fwd,
                a2a,
            };
            let b_work = Work {
                gemm: self.proj_bwd + mlp.1,
                attn: self.core_bwd,
                mem: 2.0 * mem,
                comm: self.tp_fwd + self.cp_bwd,
                a2a,
            };
            let re = match recompute {
                Recompute::None => Work::default(),
                Recompute::Selective => Work {
                    attn: self.core_fwd,
                    mem: self.softmax_mem,
                    ..Work::default()
                },
                Recompute::Full => f_work,
            };
            (f_work.add(b_work).add(re), re)
        };
        let (dense, dense_recompute) = layer(self.dense_mlp, common + self.dense_mem, 0.0);
        let (moe, moe_recompute) = if self.is_moe {
            layer(self.moe_mlp, common + self.moe_mem, self.ep_fwd)
        } else {
            (dense, dense_recompute)
        };
        LayerCost {
            dense,
            moe,
            dense_recompute,
            moe_recompute,
            comm_intra: self.comm_intra,
            embedding: self.embedding,
            head: self.head,
            mtp_extra: self.mtp_extra,
            p2p_bytes: self.p2p_bytes,
            gemm_efficiency: self.gemm_efficiency,
            warnings: self.warnings,
            params_total: params.0,
            params_active: params.1,
            flop_terms: self.flop_terms,
        }
    }
}

/// The scored candidate: every number a row carries.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Score {
    pub grad_accum: u32,
    pub params: f64,
    pub params_active: f64,
    pub step_time_s: f64,
    pub pipeline_s: f64,
    /// The step time by what it is spent on (they add up to `step_time_s`): kernels of the slowest
    /// stage, its recompute, tensor-parallel and pipeline communication, exposed ZeRO-3 gathers,
    /// exposed data-parallel reduction, the optimizer step, fixed overheads, and the pipeline's
    /// fill and drain.
    pub compute_s: f64,
    pub recompute_s: f64,
    pub tp_comm_s: f64,
    pub ep_comm_s: f64,
    pub pp_comm_s: f64,
    pub fsdp_comm_s: f64,
    pub dp_comm_exposed_s: f64,
    pub overhead_s: f64,
    pub bubble_s: f64,
    pub bubble_fraction: f64,
    pub dp_comm_s: f64,
    pub optimizer_s: f64,
    pub tflops_per_gpu: f64,
    pub mfu: f64,
    pub hfu: f64,
    pub tokens_per_s_per_gpu: f64,
    pub flops_per_iter_megatron: f64,
    pub flops_per_iter_model: f64,
    pub flops_per_iter_useful: f64,
    pub flops_per_iter_hardware: f64,
    pub flops_per_iter_6n: f64,
    pub gemm_efficiency: f64,
    pub mem_gb: f64,
    pub mem_stage: u32,
    pub mem_first_gb: f64,
    pub mem_last_gb: f64,
    pub mem: memory::Parts,
    pub fits: bool,
    pub energy_j_per_token: f64,
    pub gpu_hours: f64,
    pub train_days: f64,
    pub warnings: u32,
}

/// Memory of stage `stage` with the profile's fixed overhead and fragmentation, bytes.
pub fn stage_memory(m: &Model, s: &Strategy, prof: &Profile, stage: u32) -> memory::Parts {
    let p = params::stage_rank(m, s.tp, s.ep * s.etp(), s.pp, stage, s.vocab_multiple);
    let act = memory::stage_activations(
        m,
        s,
        stage,
        s.grad_accum().max(1),
        memory::layer_activations(m, s),
        prof.logit_bytes,
    );
    stage_memory_from(m, s, prof, (p, stage_adapters(m, s, stage)), act)
}

/// LoRA adapter parameters on one rank of `stage` (0 unless the task is LoRA).
pub fn stage_adapters(m: &Model, s: &Strategy, stage: u32) -> f64 {
    if s.mode.task == Task::Lora {
        params::lora_stage_rank(
            m,
            s.mode.lora_rank,
            !s.fused_kernels,
            s.tp,
            s.etp(),
            s.ep,
            s.pp,
            stage,
        )
    } else {
        0.0
    }
}

/// A stage's memory from its ZeRO-independent part, with the profile's overhead and fragmentation.
#[inline]
fn stage_memory_from(
    m: &Model,
    s: &Strategy,
    prof: &Profile,
    p: (f64, f64),
    act: (f64, f64),
) -> memory::Parts {
    let mut parts = memory::stage_from(m, s, p.0, p.1, act, prof.grad_bytes, prof.grad_shard_bytes);
    if prof.transient_gradients && s.grad_accum() <= 1 {
        // Backward frees each layer's activations as it writes that layer's gradients, so the
        // peak is max(gradients, activations + logits) over the other states: the larger sits at
        // one end of backward. Only gradients beyond the freed activations add to it.
        parts.gradients = (parts.gradients - parts.activations - parts.logits).max(0.0);
    }
    parts.overhead =
        prof.memory_overhead_bytes + prof.fragmentation * (parts.activations + parts.logits);
    parts
}

/// Bandwidth (B/s, after the profile's efficiency) and per-step latency of a collective over `n`
/// ranks spaced `stride` ranks apart. Inside a node it runs on NVLink. Across nodes, NCCL runs one
/// ring per NIC, so a group with `k` members on each node moves data over `k` NICs at once
/// (nccl-tests bus bandwidth on multi-node DGX scales with the NICs used), capped by NVLink.
fn group_link(c: &Cluster, n: u64, stride: u64, prof: &Profile) -> (f64, f64) {
    let gpn = c.domain() as u64;
    let intra = c.gpu.intra_node_bw * prof.intra_link_efficiency;
    if n.saturating_mul(stride) <= gpn {
        (intra, ALPHA_INTRA_S)
    } else {
        let per_node = (gpn / stride.max(1)).clamp(1, n.max(1));
        (
            (c.gpu.inter_node_bw * prof.inter_link_efficiency * per_node as f64).min(intra),
            ALPHA_INTER_S,
        )
    }
}

/// Peak memory over the stages: the first holds the most micro batches and the embedding, the
/// last the head and the logits; one of the two peaks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemPeak {
    pub first: memory::Parts,
    pub last: memory::Parts,
    pub mem: memory::Parts,
    pub mem_stage: u32,
    pub fits: bool,
    /// Parameters per rank on the first and the last stage.
    pub p_first: f64,
    pub p_last: f64,
    /// Parameters that train per rank on the first and the last stage: all of them, or the LoRA
    /// adapters.
    pub trainable_first: f64,
    pub trainable_last: f64,
}

pub fn memory_peak(m: &Model, c: &Cluster, s: &Strategy, prof: &Profile, opt: &Options) -> MemPeak {
    memory_peak_with(&params::LayerCounts::new(m), m, c, s, prof, opt)
}

/// [`memory_peak`] with the model's per-layer parameter counts computed once (enumeration).
pub fn memory_peak_with(
    counts: &params::LayerCounts,
    m: &Model,
    c: &Cluster,
    s: &Strategy,
    prof: &Profile,
    opt: &Options,
) -> MemPeak {
    let (p_first, p_last) = stage_params(counts, m, s.tp, s.ep * s.etp(), s.pp, s.vocab_multiple);
    memory_peak_from(
        m,
        c,
        s,
        prof,
        opt,
        p_first,
        p_last,
        memory::layer_activations(m, s),
    )
}

/// Parameters per rank of the first and last pipeline stage.
/// `expert_split` is `ep * etp` (see [`params::stage_rank`]).
pub fn stage_params(
    counts: &params::LayerCounts,
    m: &Model,
    tp: u32,
    expert_split: u32,
    pp: u32,
    vocab_multiple: u32,
) -> (f64, f64) {
    let p_first = params::stage_rank_with(counts, m, tp, expert_split, pp, 0, vocab_multiple);
    let p_last = if pp > 1 {
        params::stage_rank_with(counts, m, tp, expert_split, pp, pp - 1, vocab_multiple)
    } else {
        p_first
    };
    (p_first, p_last)
}

/// [`memory_peak`] from the stage parameters ([`stage_params`]) and the per-layer activations
/// ([`memory::layer_activations`]), which enumeration computes once for many candidates.
#[allow(clippy::too_many_arguments)]
pub fn memory_peak_from(
    m: &Model,
    c: &Cluster,
    s: &Strategy,
    prof: &Profile,
    opt: &Options,
    p_first: f64,
    p_last: f64,
    acts: (f64, f64),
) -> MemPeak {
    memory_peak_parts(
        m,
        c,
        s,
        prof,
        opt,
        (p_first, p_last),
        stage_activations(m, s, prof, acts),
    )
}

/// The ZeRO-independent memory ([`memory::stage_activations`]) of the first and the last stage.
#[inline]
pub fn stage_activations(
    m: &Model,
    s: &Strategy,
    prof: &Profile,
    acts: (f64, f64),
) -> ((f64, f64), (f64, f64)) {
    let micro = s.grad_accum().max(1);
    let first = memory::stage_activations(m, s, 0, micro, acts, prof.logit_bytes);
    let last = if s.pp > 1 {
        memory::stage_activations(m, s, s.pp - 1, micro, acts, prof.logit_bytes)
    } else {
        first
    };
    (first, last)
}

/// [`memory_peak`] from the stage parameters and the [`stage_activations`]: what enumeration
/// computes per ZeRO stage.
#[inline]
pub fn memory_peak_parts(
    m: &Model,
    c: &Cluster,
    s: &Strategy,
    prof: &Profile,
    opt: &Options,
    params: (f64, f64),
    act: ((f64, f64), (f64, f64)),
) -> MemPeak {
    let (p_first, p_last) = params;
    let (a_first, a_last) = if s.mode.task == Task::Lora {
        (stage_adapters(m, s, 0), stage_adapters(m, s, s.pp - 1))
    } else {
        (0.0, 0.0)
    };
    let first = stage_memory_from(m, s, prof, (p_first, a_first), act.0);
    let last = if s.pp > 1 {
        stage_memory_from(m, s, prof, (p_last, a_last), act.1)
    } else {
        first
    };
    let (mem, mem_stage) = if last.total() > first.total() {
        (last, s.pp - 1)
    } else {
        (first, 0)
    };
    let fits = mem.total() <= c.gpu.memory_bytes * (1.0 - opt.headroom);
    let (trainable_first, trainable_last) = if s.mode.task == Task::Lora {
        (a_first, a_last)
    } else {
        (p_first, p_last)
    };
    MemPeak {
        first,
        last,
        mem,
        mem_stage,
        fits,
        p_first,
        p_last,
        trainable_first,
        trainable_last,
    }
}

/// Adds the pipeline, data parallelism, ZeRO and the profile's constants to a [`LayerCost`];
/// `mem` comes from [`memory_peak`].
pub fn assemble(
    lc: &LayerCost,
    m: &Model,
    c: &Cluster,
    s: &Strategy,
    prof: &Profile,
    opt: &Options,
    mem: MemPeak,
) -> Score {
    let gpu = &c.gpu;
    let micro = s.grad_accum().max(1);
    let pp = s.pp;
    let tp_link = if lc.comm_intra {
        prof.intra_link_efficiency
    } else {
        prof.inter_link_efficiency
    };
    // Reciprocals once: the split below applies them to several Work values per candidate.
    let (r_gemm, r_attn, r_mem, r_link) = (
        1.0 / prof.gemm_efficiency,
        1.0 / prof.attention_efficiency,
        1.0 / prof.memory_efficiency,
        1.0 / tp_link,
    );
    let kernels = |w: Work| w.gemm * r_gemm + w.attn * r_attn + w.mem * r_mem;
    let secs = |w: Work| kernels(w) + (w.comm + w.a2a) * r_link;
    let dp_stride = s.tp as u64 * s.cp as u64;
    let lora = s.mode.task == Task::Lora;
    // ZeRO shards within groups of `g` data-parallel ranks (all of dp unless HSDP), `dp / g` replicas.
    let g = s.shard_group().max(1) as u64;
    let host_link = gpu.host_link_bw.max(1.0) * HOST_LINK_EFFICIENCY;
    let schedule = s.schedule();

    // One layer per micro batch. ZeRO-3 / FSDP gathers the weights twice (forward, backward) and
    // reduce-scatters the gradients (not under LoRA: the base is frozen), partly overlapped with the
    // layer's compute. With the weights offloaded each rank also streams its shard in from host
    // memory for both passes and its gradient shard out.
    let layer_split = |w: Work, re: Work, moe_layer: bool| {
        let params_offloaded = s.mode.offload == Offload::OptimizerParams;
        let fsdp_comm = if (s.zero_stage >= 3 && g > 1) || params_offloaded {
            // One layer's weights on a tensor-parallel rank (an MoE layer's experts over ep); counted
            // only here, as the u128 count is costly in the scorer's loop.
            let layer_params = if moe_layer {
                params::moe_layer(m) as f64 / s.ep as f64
            } else {
                params::dense_layer(m) as f64
            };
            let shard = layer_params / s.tp as f64;
            let passes = if lora { 2.0 } else { 3.0 };
            let mut moved = if s.zero_stage >= 3 && g > 1 {
                let (bw, alpha) = group_link(c, g, dp_stride, prof);
                passes * comm::all_gather(shard * 2.0, g, bw, alpha)
            } else {
                0.0
            };
            if params_offloaded {
                moved += passes * shard / g as f64 * 2.0 / host_link;
            }
            // Hidden behind the layer's compute up to the profile's overlap fraction.
            moved - prof.fsdp_overlap * moved.min(secs(w) + prof.layer_overhead_s)
        } else {
            0.0
        };
        let own = w.sub(re);
        // DualPipe overlaps one direction's all-to-alls with the other's compute (DeepSeek-V3
        // report §3.2.1): only what the compute cannot cover shows.
        let a2a = own.a2a * r_link;
        let ep_comm = if schedule == Schedule::DualPipe {
            (a2a - kernels(own)).max(0.0)
        } else {
            a2a
        };
        Split {
            compute: kernels(own),
            recompute: secs(re),
            tp_comm: own.comm * r_link,
            ep_comm,
            overhead: prof.layer_overhead_s,
            fsdp_comm,
            p2p: 0.0,
        }
    };
    let dense = layer_split(lc.dense, lc.dense_recompute, false);
    let moe = if m.is_moe() {
        layer_split(lc.moe, lc.moe_recompute, true)
    } else {
        dense
    };
    // Multi-token prediction: each module is a layer of the last layer's kind plus its projection,
    // head and loss, on the last stage.
    let mtp = if m.mtp_layers > 0 {
        let layer = if m.is_moe_layer(m.layers - 1) {
            moe
        } else {
            dense
        };
        let extra = Split {
            compute: kernels(lc.mtp_extra),
            tp_comm: lc.mtp_extra.comm * r_link,
            ..Split::default()
        };
        layer.plus(extra).scaled(m.mtp_layers as f64)
    } else {
        Split::default()
    };
    let (t_dense, t_moe) = (dense.total(), moe.total());

    // Pipeline point-to-point: activations forward, gradients backward, once per micro batch.
    let p2p = if pp > 1 {
        // Consecutive stages are `tp*cp*dp` ranks apart: the same node only if a stage is smaller
        // than a node. Every rank sends its own tensor, one NIC each.
        let stage_span = s.tp as u64 * s.cp as u64 * s.dp as u64;
        let (bw, alpha) = if 2 * stage_span <= c.domain() as u64 {
            group_link(c, 2, 1, prof)
        } else {
            (
                c.gpu.inter_node_bw * prof.inter_link_efficiency,
                ALPHA_INTER_S,
            )
        };
        let split = if prof.p2p_scatter_gather || s.sequence_parallel {
            s.tp as f64
        } else {
            1.0
        };
        2.0 * comm::p2p(lc.p2p_bytes / split, bw, alpha)
    } else {
        0.0
    };
    let edge = |w: Work| Split {
        compute: kernels(w),
        tp_comm: w.comm * r_link,
        ..Split::default()
    };
    let (emb, head) = (edge(lc.embedding), edge(lc.head));
    let (t_emb, t_head, t_mtp) = (emb.total(), head.total(), mtp.total());

    // Stage i: its dense and MoE layers, the embedding on the first, the head on the last.
    let dense_in = |stage: u32| -> (u32, u32) {
        let n = params::stage_layers(m.layers, pp, stage);
        if !m.is_moe() {
            return (n, 0);
        }
        // Leading dense layers, and Llama 4 Maverick's dense layers between MoE ones.
        let e = m.moe_layers_in(params::first_layer(m.layers, pp, stage), n);
        (n - e, e)
    };
    // A stage's time from the layer totals (scalar: this runs for five stages per candidate);
    // `stage_split` below is the same composition by part, built once for the slowest stage.
    let stage_time = |stage: u32| {
        let (d, e) = dense_in(stage);
        let mut t = d as f64 * t_dense + e as f64 * t_moe + p2p;
        if stage == 0 {
            t += t_emb;
        }
        if stage == pp - 1 {
            t += t_head + t_mtp;
        }
        t
    };
    let stage_split = |stage: u32| {
        let (d, e) = dense_in(stage);
        let mut x = dense.scaled(d as f64).plus(moe.scaled(e as f64));
        x.p2p += p2p;
        if stage == 0 {
            x = x.plus(emb);
        }
        if stage == pp - 1 {
            x = x.plus(head).plus(mtp);
        }
        x
    };
    let r = m.layers % pp;
    let (mut t_max, mut slowest) = (0f64, 0u32);
    for st in [0, 1, r.saturating_sub(1), r, pp - 1] {
        if st < pp {
            let t = stage_time(st);
            if t > t_max {
                (t_max, slowest) = (t, st);
            }
        }
    }
    let dense_total = m.layers - m.moe_layers();
    let t_sum = dense_total as f64 * t_dense
        + (m.layers - dense_total) as f64 * t_moe
        + pp as f64 * p2p
        + t_emb
        + t_head
        + t_mtp;
    let v = s.vpp.max(1) as f64;
    // 1F1B fills and drains the pipeline once: `t_sum - t_max` (the other stages' times) idle on
    // the slowest. Interleaving divides that by v; ZB-H1 fills it with weight gradients down to a
    // third (Qi et al. 2024, `(p-1)(F+B-W)` against `(p-1)(F+B+W)` with F = B = W, as the GEMM
    // FLOPs split); DualPipe to `(p/2-1)(F&B+B-3W)` against 1F1B's `(p-1)(F+B)` (DeepSeek-V3 report,
    // Table 2, B the whole backward): `(p/2-1) 2/3 / (p-1)` of it.
    let fill = t_sum - t_max;
    let pipeline_s = match schedule {
        Schedule::Interleaved => micro as f64 * t_max + fill / v + (v - 1.0) * micro as f64 * p2p,
        Schedule::ZeroBubble => micro as f64 * t_max + fill / 3.0,
        Schedule::DualPipe if pp > 1 => {
            micro as f64 * t_max
                + fill * (pp as f64 / 2.0 - 1.0).max(0.0) * (2.0 / 3.0) / (pp as f64 - 1.0)
        }
        _ => t_sum + (micro as f64 - 1.0) * t_max,
    };
    let ideal = micro as f64 * t_sum / pp as f64;
    let bubble_fraction = if pipeline_s > 0.0 {
        (1.0 - ideal / pipeline_s).max(0.0)
    } else {
        0.0
    };
    // The step's breakdown: the slowest stage busy for every micro batch, plus the fill and drain
    // (its idle time), plus interleaving's extra sends (counted as pipeline communication).
    let busy = stage_split(slowest).scaled(micro as f64);
    let interleave_p2p = if schedule == Schedule::Interleaved {
        (v - 1.0) * micro as f64 * p2p
    } else {
        0.0
    };
    // Clamped: rounding can leave the difference a few ulps below zero when there is no bubble.
    let bubble_s = (pipeline_s - micro as f64 * t_max - interleave_p2p).max(0.0);

    // Data-parallel gradient reduction of the largest stage, partly hidden behind backward: an
    // all-reduce without ZeRO; with ZeRO-1/2 a reduce-scatter (an all-reduce where the framework's
    // ZeRO-1 all-reduces, `Profile::zero1_allreduce`) plus an all-gather of the 16-bit weights, both
    // within the shard group; HSDP then all-reduces each shard across the `dp / g` replicas
    // (`g * tp * cp` ranks apart), ZeRO-3's only per-step reduction (its per-layer traffic is in
    // `fsdp_comm`). Only what trains is reduced and updated (LoRA: the adapters); DualPipe's ranks
    // hold two stages.
    let copies = if schedule == Schedule::DualPipe && pp > 1 {
        2.0
    } else {
        1.0
    };
    let p_stage = copies * mem.trainable_first.max(mem.trainable_last);
    let dp_comm_s = if s.dp > 1 {
        let dp = s.dp as u64;
        let grads = p_stage * prof.grad_bytes;
        // Links are looked up only where used: this runs for every scored candidate.
        let across = || {
            if g < dp && s.zero_stage >= 1 {
                let replicas = dp / g;
                let (rbw, ralpha) = group_link(c, replicas, dp_stride * g, prof);
                comm::all_reduce(grads / g as f64, replicas, rbw, ralpha)
            } else {
                0.0
            }
        };
        match s.zero_stage {
            0 => {
                let (bw, alpha) = group_link(c, dp, dp_stride, prof);
                comm::all_reduce(grads, dp, bw, alpha)
            }
            1 if prof.zero1_allreduce => {
                let (bw, alpha) = group_link(c, dp, dp_stride, prof);
                let (gbw, galpha) = if g == dp {
                    (bw, alpha)
                } else {
                    group_link(c, g, dp_stride, prof)
                };
                comm::all_reduce(grads, dp, bw, alpha)
                    + comm::all_gather(p_stage * 2.0, g, gbw, galpha)
            }
            1 | 2 => {
                let (bw, alpha) = group_link(c, g, dp_stride, prof);
                comm::all_gather(grads, g, bw, alpha)
                    + across()
                    + comm::all_gather(p_stage * 2.0, g, bw, alpha)
            }
            _ => across(),
        }
    } else {
        0.0
    };
    let shard = if s.zero_stage >= 1 {
        p_stage / g as f64
    } else {
        p_stage
    };
    let optimizer_s = match s.mode.offload {
        Offload::None => shard * OPTIMIZER_STEP_BYTES / (gpu.memory_bw * prof.memory_efficiency),
        // ZeRO-Offload's step: the 16-bit gradient shard out over the host link, Adam on the CPU
        // over host memory, the 16-bit weights back in (not overlapped: an upper bound on what
        // shows; measured phase by phase in data/measured/h200_host.csv `roundtrip`).
        _ => {
            shard * 4.0 / host_link
                + shard * CPU_STEP_BYTES / (gpu.host_memory_bw.max(1.0) * HOST_STREAM_FRACTION)
        }
    };
    let dp_comm_exposed_s = (1.0 - prof.dp_overlap) * dp_comm_s;
    let step_time_s = pipeline_s + dp_comm_exposed_s + optimizer_s + prof.step_overhead_s;

    // FLOPs in every convention, and the rates they give.
    let gbs = s.gbs as u64;
    let gpus = s.gpus() as f64;
    let vp = params::padded_vocab(m.vocab, s.tp, s.vocab_multiple);
    let ft = &lc.flop_terms;
    let frozen = lora;
    let f_meg = flops::megatron(ft, gbs, s.recompute, vp, frozen);
    let f_model = flops::model(ft, gbs, lc.params_active, frozen);
    let f_useful = flops::useful(ft, gbs, frozen);
    let f_hw = flops::hardware(ft, gbs, s.recompute, s.flash_attention, frozen);
    let f_6n = flops::six_n(ft, gbs);
    // MFU and HFU against the dense 16-bit peak whatever the precision (as NVIDIA's and
    // torchtitan's reports do), so that fp8 and bf16 runs compare on one scale.
    let peak = gpu.peak_bf16.max(gpu.peak_fp16);
    let denom = step_time_s * gpus;
    let tokens_per_step = gbs as f64 * m.seq_len as f64;
    let tokens_per_s = tokens_per_step / step_time_s;

    let MemPeak {
        first,
        last,
        mem,
        mem_stage,
        fits,
        ..
    } = mem;
    let mem_gb = mem.total() / GIB;

    let mut warnings = lc.warnings;
    if f_hw / (denom * gpu.peak(s.precision)) > rules::KERNEL_CEILING {
        warnings |= warn::ABOVE_KERNEL_CEILING;
    }
    if !m.layers.is_multiple_of(pp) {
        warnings |= warn::UNEVEN_STAGES;
    }
    if opt.rampup && (!s.dp.is_multiple_of(4) || !s.gbs.is_multiple_of(32)) {
        warnings |= warn::RAMPUP_INCOMPATIBLE;
    }

    Score {
        grad_accum: s.grad_accum(),
        params: lc.params_total,
        params_active: lc.params_active,
        step_time_s,
        pipeline_s,
        bubble_fraction,
        dp_comm_s,
        optimizer_s,
        compute_s: busy.compute,
        recompute_s: busy.recompute,
        tp_comm_s: busy.tp_comm,
        ep_comm_s: busy.ep_comm,
        pp_comm_s: busy.p2p + interleave_p2p,
        fsdp_comm_s: busy.fsdp_comm,
        dp_comm_exposed_s,
        overhead_s: busy.overhead + prof.step_overhead_s,
        bubble_s,
        tflops_per_gpu: f_meg / denom / 1e12,
        mfu: f_useful / (denom * peak),
        hfu: f_hw / (denom * peak),
        tokens_per_s_per_gpu: tokens_per_s / gpus,
        flops_per_iter_megatron: f_meg,
        flops_per_iter_model: f_model,
        flops_per_iter_useful: f_useful,
        flops_per_iter_hardware: f_hw,
        flops_per_iter_6n: f_6n,
        gemm_efficiency: lc.gemm_efficiency,
        mem_gb,
        mem_stage,
        mem_first_gb: first.total() / GIB,
        mem_last_gb: last.total() / GIB,
        mem,
        fits,
        energy_j_per_token: energy::joules_per_token(
            gpu.board_power_w,
            step_time_s,
            gpus,
            tokens_per_step,
        ),
        gpu_hours: energy::gpu_hours(opt.train_tokens, tokens_per_s, gpus),
        train_days: opt.train_tokens / tokens_per_s / 86400.0,
        warnings,
    }
}

/// Validates the inputs, checks the rules and scores one candidate. The score is computed even
/// when a rule is broken (so `check` can show memory and time beside the reason).
pub fn score(
    m: &Model,
    c: &Cluster,
    s: &Strategy,
    prof: &Profile,
    opt: &Options,
) -> Result<(Score, Option<Reject>)> {
    m.validate()?;
    c.validate()?;
    s.validate()?;
    prof.validate()?;
    if !(opt.headroom.is_finite() && (0.0..1.0).contains(&opt.headroom)) {
        return Err(crate::error::TopoError::new(
            "invalid_value",
            "headroom",
            format!("`headroom` must be in [0, 1), got {}", opt.headroom),
        ));
    }
    if !(opt.train_tokens.is_finite() && opt.train_tokens > 0.0) {
        return Err(crate::error::TopoError::not_finite(
            "train_tokens",
            opt.train_tokens,
        ));
    }
    let reject = rules::check_shape(m)
        .or_else(|| rules::check_kernels(m, s.flash_attention))
        .or_else(|| rules::check_strategy(m, s, c, opt.allow_cross_node_tp));
    // Scoring needs at least one layer per stage and whole heads per rank.
    let safe = Strategy {
        pp: s.pp.min(m.layers),
        tp: s.tp.min(m.heads).max(1),
        ..*s
    };
    let lc = LayerCost::new(m, c, &safe);
    let mem = memory_peak(m, c, &safe, prof, opt);
    let sc = assemble(&lc, m, c, &safe, prof, opt, mem);
    let reject = reject.or(if sc.fits { None } else { Some(Reject::Oom) });
    Ok((sc, reject))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::examples::*;

    fn cluster(nodes: u32) -> Cluster {
        Cluster {
            gpu: a100_80(),
            nodes,
            gpus_per_node: 8,
        }
    }

    #[test]
    fn bloom_launch_config_fits_and_is_plausible() {
        let (sc, rej) = score(
            &bloom_176b(),
            &cluster(48),
            &strategy(8, 4, 12, 2, 2048),
            &Profile::default(),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(rej, None, "{sc:?}");
        // BLOOM-176B trained at ~150 TFLOPs per A100 (BigScience chronicles); the default profile
        // must land in a sane band, not on the number.
        assert!(
            sc.tflops_per_gpu > 80.0 && sc.tflops_per_gpu < 250.0,
            "{}",
            sc.tflops_per_gpu
        );
    }

    #[test]
    fn transient_gradients_share_the_activations_memory() {
        // Plain PyTorch (set_to_none gradients, one micro batch per step): the peak holds the larger
        // of the gradients and the activations + logits, over weights and optimizer state; with
        // gradient accumulation the gradients outlive the next micro batch's forward, so both count.
        let m = llama2_7b();
        let s = Strategy {
            zero_stage: 0,
            recompute: Recompute::None,
            ..strategy(1, 1, 1, 1, 1)
        };
        let persistent = Profile {
            grad_bytes: 2.0,
            ..Profile::default()
        };
        let transient = Profile {
            transient_gradients: true,
            ..persistent
        };
        let a = stage_memory(&m, &s, &persistent, 0);
        let b = stage_memory(&m, &s, &transient, 0);
        let expect = a.total() - a.gradients - a.activations - a.logits
            + a.gradients.max(a.activations + a.logits);
        assert!(
            (b.total() / expect - 1.0).abs() < 1e-12,
            "{} vs {expect}",
            b.total()
        );
        assert!(b.total() < a.total());
        let accum = Strategy { gbs: 4, ..s };
        assert_eq!(
            stage_memory(&m, &accum, &transient, 0).total(),
            stage_memory(&m, &accum, &persistent, 0).total()
        );
    }

    #[test]
    fn norms_dropouts_and_activations_run_at_the_elementwise_rate() {
        // H200 (benches/device --set membw): norms, dropouts and GELU reach 2.95 TB/s where a copy or
        // an add streams near the 4.8 TB/s peak; residual adds keep the HBM rate.
        let m = seed001(4096, 4, 32);
        let s = Strategy {
            zero_stage: 0,
            recompute: Recompute::None,
            ..strategy(1, 1, 1, 1, 1)
        };
        let h200 = Cluster {
            gpu: crate::spec::examples::h200(),
            nodes: 1,
            gpus_per_node: 1,
        };
        let flat = Cluster {
            gpu: Gpu {
                elementwise_bw: h200.gpu.memory_bw,
                ..h200.gpu
            },
            ..h200
        };
        let (a, b) = (LayerBase::new(&m, &flat, &s), LayerBase::new(&m, &h200, &s));
        let (bw, ew) = (h200.gpu.memory_bw, h200.gpu.elementwise_bw);
        // 15 x tokens x h bytes-per-element units: 9 (norms, dropouts) slow down, 6 (adds) do not.
        assert!((b.sp_mem / a.sp_mem - (9.0 / ew + 6.0 / bw) / (15.0 / bw)).abs() < 1e-12);
        // GELU's bias+activation passes are all elementwise: they scale by the full ratio.
        assert!((b.dense_mem / a.dense_mem - bw / ew).abs() < 1e-12);
        // GEMMs and flash attention do not move.
        assert_eq!((a.proj_fwd, a.core_fwd), (b.proj_fwd, b.core_fwd));
    }

    #[test]
    fn eager_kernels_cost_llama_memory_and_time() {
        // Eager SwiGLU keeps silu(gate) (one more ffn-wide tensor per token) and repeat_kv saves K and
        // V at the query heads' width; both only where the framework does not fuse them.
        let m = Model {
            kv_heads: 8,
            ..llama2_7b()
        };
        let fused = Strategy {
            zero_stage: 0,
            recompute: Recompute::None,
            flash_attention: true,
            ..strategy(1, 1, 1, 1, 1)
        };
        let eager = Strategy {
            fused_kernels: false,
            ..fused
        };
        let (a, _) = memory::layer_activations(&m, &fused);
        let (b, _) = memory::layer_activations(&m, &eager);
        let sb = m.seq_len as f64;
        let q = (m.heads * m.head_dim) as f64;
        let kv = (m.kv_heads * m.head_dim) as f64;
        assert!(
            (b - a - 2.0 * sb * (m.ffn_hidden as f64 + 2.0 * (q - kv))).abs() < 1.0,
            "{a} {b}"
        );
        let c = Cluster {
            gpu: a100_80(),
            nodes: 1,
            gpus_per_node: 1,
        };
        let t = |s: &Strategy| {
            score(&m, &c, s, &Profile::default(), &Options::default())
                .unwrap()
                .0
                .step_time_s
        };
        assert!(t(&eager) > t(&fused));
        // A GELU, learned-position, multi-head model has nothing to fuse: no difference.
        let g = seed001(4096, 4, 32);
        let (x, _) = memory::layer_activations(&g, &fused);
        let (y, _) = memory::layer_activations(&g, &eager);
        assert_eq!(x, y);
    }

    #[test]
    fn seed001_oom_rows_do_not_fit() {
        // seeds/001 "GBS Variations": DP48 TP8 PP1 MBS1 and DP32 TP2 PP6 MBS1 ran out of memory.
        let m = seed001(14336, 72, 64);
        for (dp, tp, pp) in [(48, 8, 1), (32, 2, 6)] {
            let (sc, rej) = score(
                &m,
                &cluster(48),
                &strategy(dp, tp, pp, 1, 2016.max(dp * 42)),
                &Profile::default(),
                &Options::default(),
            )
            .unwrap();
            assert_eq!(
                rej,
                Some(Reject::Oom),
                "dp{dp} tp{tp} pp{pp}: {} GiB",
                sc.mem_gb
            );
        }
    }

    #[test]
    fn more_micro_batches_shrink_the_bubble() {
        let m = seed001(14336, 72, 64);
        let p = Profile::default();
        let o = Options::default();
        let small = score(&m, &cluster(48), &strategy(8, 8, 6, 4, 512), &p, &o)
            .unwrap()
            .0;
        let large = score(&m, &cluster(48), &strategy(8, 8, 6, 4, 2048), &p, &o)
            .unwrap()
            .0;
        assert!(large.bubble_fraction < small.bubble_fraction);
        // 1F1B fill and drain alone: (pp-1)/(m+pp-1) with m = 2048/(4*8) = 64; the heavier last
        // stage (LM head) only adds to it.
        let fill = 5.0 / (64.0 + 5.0);
        assert!(
            large.bubble_fraction >= fill - 1e-9 && large.bubble_fraction < fill + 0.1,
            "{} vs {}",
            large.bubble_fraction,
            fill
        );
    }

    #[test]
    fn zero3_uses_less_memory_than_zero1() {
        let m = llama2_7b();
        let p = Profile::default();
        let o = Options::default();
        let s = Strategy {
            zero_stage: 1,
            ..strategy(8, 1, 1, 1, 64)
        };
        let z1 = score(&m, &cluster(1), &s, &p, &o).unwrap().0;
        let z3 = score(&m, &cluster(1), &Strategy { zero_stage: 3, ..s }, &p, &o)
            .unwrap()
            .0;
        assert!(z3.mem_gb < z1.mem_gb);
    }

    #[test]
    fn tile_and_wave_quantization_slow_hidden_14400() {
        // seeds/001 "tile and wave quantization": 14400 (head_dim 150) ran at 94 TFLOPs, 13824 at 120.
        let p = Profile::default();
        let o = Options::default();
        let s = strategy(4, 8, 10, 1, 2048);
        let slow = score(&seed001(14400, 80, 96), &cluster(40), &s, &p, &o)
            .unwrap()
            .0;
        let fast = score(&seed001(13824, 80, 64), &cluster(40), &s, &p, &o)
            .unwrap()
            .0;
        assert!(
            slow.tflops_per_gpu < 0.9 * fast.tflops_per_gpu,
            "{} vs {}",
            slow.tflops_per_gpu,
            fast.tflops_per_gpu
        );
        assert!(slow.warnings & warn::HEAD_DIM_MISALIGNED != 0);
        assert!(slow.warnings & warn::TILE_QUANTIZATION != 0);
    }

    #[test]
    fn breakdown_adds_up_to_the_step_time() {
        // Every term of the breakdown is non-negative and they sum to step_time_s, for dense and MoE
        // models, every recompute mode, ZeRO 1 and 3, pipeline and interleaving, uneven stages.
        let p = Profile::default();
        let o = Options::default();
        let moe = Model {
            experts: 8,
            topk: 2,
            moe_ffn_hidden: 11008,
            ..llama2_7b()
        };
        let models = [(seed001(14336, 70, 112), 48), (llama2_7b(), 2), (moe, 8)];
        for (m, nodes) in models {
            let gpus = nodes * 8;
            for (tp, pp, vpp, z) in [
                (1, 1, 1, 3),
                (8, 1, 1, 1),
                (4, 4, 1, 1),
                (2, 8, 2, 1),
                (8, 6, 1, 0),
            ] {
                if gpus % (tp * pp) != 0 || m.layers < pp * vpp {
                    continue;
                }
                for rc in [Recompute::None, Recompute::Selective, Recompute::Full] {
                    let dp = gpus / (tp * pp);
                    let ep = if m.is_moe() && dp % 2 == 0 { 2 } else { 1 };
                    let s = Strategy {
                        vpp,
                        zero_stage: z,
                        recompute: rc,
                        ep,
                        ..strategy(dp, tp, pp, 1, dp * 16)
                    };
                    let sc = score(&m, &cluster(nodes), &s, &p, &o).unwrap().0;
                    let parts = [
                        sc.compute_s,
                        sc.recompute_s,
                        sc.tp_comm_s,
                        sc.ep_comm_s,
                        sc.pp_comm_s,
                        sc.fsdp_comm_s,
                        sc.dp_comm_exposed_s,
                        sc.optimizer_s,
                        sc.overhead_s,
                        sc.bubble_s,
                    ];
                    assert!(parts.iter().all(|&x| x >= -1e-12), "{parts:?}");
                    let sum: f64 = parts.iter().sum();
                    assert!(
                        (sum / sc.step_time_s - 1.0).abs() < 1e-9,
                        "{sum} vs {} for tp{tp} pp{pp} vpp{vpp} z{z} {rc:?}",
                        sc.step_time_s
                    );
                    assert_eq!(sc.recompute_s == 0.0, rc == Recompute::None);
                    assert_eq!(sc.pp_comm_s == 0.0 && sc.bubble_s == 0.0, pp == 1);
                    assert!(
                        sc.fsdp_comm_s == 0.0 || z == 3,
                        "exposed ZeRO-3 gathers without ZeRO-3"
                    );
                }
            }
        }
    }
}
