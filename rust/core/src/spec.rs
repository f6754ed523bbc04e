//! The inputs of a candidate: model, cluster (GPU), strategy. Plain data, validated once.

use crate::error::{Result, TopoError};

/// MLP activation: GELU uses two matrices (up, down); SwiGLU three (gate, up, down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    Gelu,
    Swiglu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Norm {
    LayerNorm,
    RmsNorm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    Learned,
    Rope,
    Alibi,
}

/// Multi-head latent attention (DeepSeek-V2) dimensions; all zero for ordinary (GQA) attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mla {
    pub q_lora_rank: u32,
    pub kv_lora_rank: u32,
    pub qk_rope_head_dim: u32,
    pub qk_nope_head_dim: u32,
    pub v_head_dim: u32,
}

/// A decoder-only transformer. Sizes are element counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Model {
    pub layers: u32,
    pub hidden: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub ffn_hidden: u32,
    pub activation: Activation,
    pub vocab: u32,
    pub seq_len: u32,
    pub tied_embeddings: bool,
    pub position: Position,
    /// Rows of the learned position table (0 unless `position` is learned).
    pub position_rows: u32,
    pub norm: Norm,
    pub bias: bool,
    pub embedding_norm: bool,
    pub experts: u32,
    pub topk: u32,
    pub shared_experts: u32,
    pub moe_ffn_hidden: u32,
    /// Leading layers that stay dense in an MoE model.
    pub dense_layers: u32,
    /// `Some` for multi-head latent attention.
    pub mla: Option<Mla>,
    /// Spacing of the MoE layers after the `dense_layers`: layer `i` carries routed experts when
    /// `(i + 1) % moe_layer_every == 0`. 0 or 1: every one (DeepSeek, Mixtral, Qwen3-MoE); 2: every
    /// other, the rest dense with `ffn_hidden` (Llama 4 Maverick's `interleave_moe_layer_step`).
    pub moe_layer_every: u32,
    /// Multi-token-prediction modules after the last layer (DeepSeek-V3 §2.2: 1). Each holds one
    /// decoder layer of the last layer's kind, a `2h x h` projection and three norms, and shares
    /// the word embedding and output head with the main model.
    pub mtp_layers: u32,
    /// Per-head RMSNorm on queries and keys (Qwen3 `q_norm`/`k_norm`): `2 * head_dim` weights a layer.
    pub qk_norm: bool,
    /// One learned sink logit per head (GPT-OSS): `heads` weights a layer.
    pub attention_sinks: bool,
    /// One router bias per expert (GPT-OSS's router `Linear` bias; DeepSeek-V3's
    /// `e_score_correction_bias`): `experts` weights an MoE layer.
    pub router_bias: bool,
    /// Biases on the query, key and value projections only (Qwen2, Qwen2.5); `bias` implies them.
    pub qkv_bias: bool,
    /// Norms after attention and after the MLP as well as before them (Gemma 2/3, Grok-1): four
    /// norms a layer instead of two.
    pub sandwich_norm: bool,
    /// Keys a windowed (local) attention layer sees; 0 = every layer attends to the whole sequence.
    pub sliding_window: u32,
    /// With a window: layer `i` attends to the whole sequence when `(i + 1) % full_attention_every
    /// == 0` and to the window otherwise (GPT-OSS and Gemma 2: 2, alternating from a windowed
    /// layer 0; Gemma 3: 6); 0 = every layer windowed (Mistral 7B).
    pub full_attention_every: u32,
}

impl Model {
    pub fn is_moe(&self) -> bool {
        self.experts > 0
    }

    /// Layers that carry routed experts.
    pub fn moe_layers(&self) -> u32 {
        self.moe_layers_in(0, self.layers)
    }

    /// Whether layer `i` (from 0) carries routed experts: past the leading `dense_layers`, every
    /// `moe_layer_every`-th.
    pub fn is_moe_layer(&self, i: u32) -> bool {
        self.is_moe()
            && i >= self.dense_layers
            && i < self.layers
            && (self.moe_layer_every <= 1 || (i + 1).is_multiple_of(self.moe_layer_every))
    }

    /// MoE layers among layers `first .. first + n` (a pipeline stage), without walking them.
    pub fn moe_layers_in(&self, first: u32, n: u32) -> u32 {
        if !self.is_moe() {
            return 0;
        }
        let end = first.saturating_add(n).min(self.layers) as u64;
        let start = (first.max(self.dense_layers) as u64).min(end);
        let k = self.moe_layer_every.max(1) as u64;
        // Layers i in [start, end) with (i + 1) % k == 0: multiples of k in [start + 1, end].
        (end / k - start / k) as u32
    }

    /// Layers whose attention is windowed (see `sliding_window`, `full_attention_every`).
    pub fn windowed_layers(&self) -> u32 {
        self.windowed_layers_in(0, self.layers)
    }

    /// Whether layer `i` attends only to the last `sliding_window` keys.
    pub fn is_windowed_layer(&self, i: u32) -> bool {
        self.sliding_window > 0
            && (self.full_attention_every == 0
                || !(i + 1).is_multiple_of(self.full_attention_every))
    }

    /// Windowed layers among layers `first .. first + n`.
    pub fn windowed_layers_in(&self, first: u32, n: u32) -> u32 {
        let end = first.saturating_add(n).min(self.layers);
        let start = first.min(end);
        if self.sliding_window == 0 {
            return 0;
        }
        if self.full_attention_every == 0 {
            return end - start;
        }
        let k = self.full_attention_every;
        (end - start) - (end / k - start / k)
    }

    /// Keys each query of a layer sees in the llm-foundry convention (no causal halving): the
    /// sequence, or the window where the layer is windowed and the window is shorter.
    pub fn attended_keys(&self, windowed: bool) -> u32 {
        if windowed && self.sliding_window > 0 {
            self.sliding_window.min(self.seq_len)
        } else {
            self.seq_len
        }
    }

    /// Checks sizes; the message names the field and what is allowed.
    pub fn validate(&self) -> Result<()> {
        positive("layers", self.layers as u64, 1 << 20)?;
        positive("hidden", self.hidden as u64, 1 << 22)?;
        positive("heads", self.heads as u64, 1 << 16)?;
        positive("kv_heads", self.kv_heads as u64, 1 << 16)?;
        positive("head_dim", self.head_dim as u64, 1 << 16)?;
        positive("ffn_hidden", self.ffn_hidden as u64, 1 << 24)?;
        positive("vocab", self.vocab as u64, 1 << 26)?;
        positive("seq_len", self.seq_len as u64, 1 << 26)?;
        if self.kv_heads > self.heads || !self.heads.is_multiple_of(self.kv_heads) {
            return Err(TopoError::new(
                "kv_heads_not_divisor_of_heads",
                "kv_heads",
                format!(
                    "`kv_heads` must divide `heads` ({}), got {}",
                    self.heads, self.kv_heads
                ),
            ));
        }
        if self.is_moe() {
            if self.experts > 1 << 16 {
                return Err(TopoError::too_large("experts", self.experts, 1 << 16));
            }
            if self.topk == 0 || self.topk > self.experts {
                return Err(TopoError::new(
                    "invalid_value",
                    "topk",
                    format!(
                        "`topk` must be between 1 and `experts` ({}), got {}",
                        self.experts, self.topk
                    ),
                ));
            }
            positive("moe_ffn_hidden", self.moe_ffn_hidden as u64, 1 << 24)?;
            if self.dense_layers > self.layers {
                return Err(TopoError::too_large(
                    "dense_layers",
                    self.dense_layers,
                    self.layers,
                ));
            }
            if self.shared_experts > 1 << 16 {
                return Err(TopoError::too_large(
                    "shared_experts",
                    self.shared_experts,
                    1 << 16,
                ));
            }
            if self.moe_layer_every > 1 << 20 {
                return Err(TopoError::too_large(
                    "moe_layer_every",
                    self.moe_layer_every,
                    1 << 20,
                ));
            }
        }
        if self.mtp_layers > 1 << 10 {
            return Err(TopoError::too_large("mtp_layers", self.mtp_layers, 1 << 10));
        }
        if self.sliding_window > 1 << 26 {
            return Err(TopoError::too_large(
                "sliding_window",
                self.sliding_window,
                1 << 26,
            ));
        }
        if self.full_attention_every > 1 << 20 {
            return Err(TopoError::too_large(
                "full_attention_every",
                self.full_attention_every,
                1 << 20,
            ));
        }
        // Parameter counts are reported exactly (as f64 and i64): at most 2^53, ~9e15, 50000 times
        // the largest published dense models.
        let total = crate::formulas::params::total(self);
        if total > 1 << 53 {
            return Err(TopoError::new(
                "model_too_large",
                "layers",
                format!("the model (`layers` {} x `hidden` {}) would have {:.2e} parameters; at most 2^53 (9.0e15)", self.layers, self.hidden, total as f64),
            ));
        }
        Ok(())
    }
}

/// One accelerator type. Rates are in FLOP/s and B/s (already multiplied out from the catalog).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gpu {
    /// Dense tensor peak per dtype, FLOP/s; 0 where the chip has none.
    pub peak_fp32: f64,
    pub peak_tf32: f64,
    pub peak_fp16: f64,
    pub peak_bf16: f64,
    pub peak_fp8: f64,
    /// Blackwell's block-scaled formats (OCP MX FP8, NVFP4); 0 where the chip has none.
    pub peak_mxfp8: f64,
    pub peak_nvfp4: f64,
    /// Non-tensor (SIMT) FP32 rate, FLOP/s: what a GEMM that cannot use tensor cores runs at.
    pub vector_fp32: f64,
    pub memory_bytes: f64,
    /// HBM peak, B/s: what streaming kernels (GEMM operands, the optimizer step) are bounded by.
    pub memory_bw: f64,
    /// B/s the normalization, dropout, activation and softmax kernels of a layer reach together,
    /// where measured: on a fast HBM the SMs bind before the bandwidth (H200: 2.95 of 4.8 TB/s, while
    /// a plain copy reaches 4.0; H100: 2.54 of 3.35). The HBM peak where not measured.
    pub elementwise_bw: f64,
    pub sms: u32,
    pub intra_node_bw: f64,
    pub inter_node_bw: f64,
    pub board_power_w: f64,
    /// GPUs that reach each other over NVLink at `intra_node_bw`: 72 in a GB200/GB300 NVL72 rack,
    /// else the node (0 = the node).
    pub nvlink_domain: u32,
    /// The GPU's own link to host memory, B/s per direction (PCIe, NVLink-C2C); 0 = unknown.
    pub host_link_bw: f64,
    /// This GPU's share of the host CPUs' memory bandwidth, B/s (the node's over its GPUs): what a
    /// CPU optimizer step streams at; 0 = unknown.
    pub host_memory_bw: f64,
}

impl Gpu {
    /// Dense peak for a precision, FLOP/s.
    pub fn peak(&self, p: Precision) -> f64 {
        match p {
            Precision::Fp32 => self.peak_tf32.max(self.peak_fp32),
            Precision::Fp16 => self.peak_fp16,
            Precision::Bf16 => self.peak_bf16,
            Precision::Fp8 => self.peak_fp8,
            Precision::Mxfp8 => self.peak_mxfp8,
            Precision::Nvfp4 => self.peak_nvfp4,
        }
    }

    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("peak_fp16", self.peak_fp16),
            ("vector_fp32", self.vector_fp32),
            ("memory_bytes", self.memory_bytes),
            ("memory_bw", self.memory_bw),
            ("elementwise_bw", self.elementwise_bw),
            ("intra_node_bw", self.intra_node_bw),
            ("inter_node_bw", self.inter_node_bw),
            ("board_power_w", self.board_power_w),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(TopoError::not_finite(name, v));
            }
        }
        for (name, v) in [
            ("host_link_bw", self.host_link_bw),
            ("host_memory_bw", self.host_memory_bw),
            ("peak_fp32", self.peak_fp32),
            ("peak_tf32", self.peak_tf32),
            ("peak_bf16", self.peak_bf16),
            ("peak_fp8", self.peak_fp8),
            ("peak_mxfp8", self.peak_mxfp8),
            ("peak_nvfp4", self.peak_nvfp4),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(TopoError::not_finite(name, v));
            }
        }
        positive("sms", self.sms as u64, 1 << 16)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cluster {
    pub gpu: Gpu,
    pub nodes: u32,
    pub gpus_per_node: u32,
}

impl Cluster {
    pub fn gpus(&self) -> u64 {
        self.nodes as u64 * self.gpus_per_node as u64
    }

    /// GPUs one NVLink domain holds: the node, or the rack where NVLink spans nodes (NVL72).
    /// Collectives within it run at the NVLink rate; tensor parallelism stays within it.
    pub fn domain(&self) -> u32 {
        self.gpu.nvlink_domain.max(self.gpus_per_node)
    }

    pub fn validate(&self) -> Result<()> {
        self.gpu.validate()?;
        positive("nodes", self.nodes as u64, 1 << 20)?;
        positive("gpus_per_node", self.gpus_per_node as u64, 1 << 10)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Recompute {
    None = 0,
    Selective = 1,
    Full = 2,
}

impl Recompute {
    pub const ALL: [Recompute; 3] = [Recompute::None, Recompute::Selective, Recompute::Full];
    pub fn label(self) -> &'static str {
        ["none", "selective", "full"][self as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    Fp32 = 0,
    Fp16 = 1,
    Bf16 = 2,
    Fp8 = 3,
    /// OCP microscaling FP8 (32-element blocks with an 8-bit scale), Blackwell.
    Mxfp8 = 4,
    /// NVFP4 (16-element blocks with an FP8 scale), Blackwell.
    Nvfp4 = 5,
}

impl Precision {
    pub fn label(self) -> &'static str {
        ["fp32", "fp16", "bf16", "fp8", "mxfp8", "nvfp4"][self as usize]
    }

    /// The fraction of its peak a low-precision GEMM reaches relative to a 16-bit one on the same
    /// shape: scaled operands cost the kernel time. Measured on an H200 (data/measured/
    /// h200_gemm_fp8.csv, 240 transformer layer shapes, torch 2.11, medians): bf16 655.8 TFLOP/s
    /// (0.663 of 989.5); fp8 with one scale per tensor 1253.5 (0.633 of 1979: 0.955), with a scale
    /// per row 1216 (0.614: 0.93), with 1x128 / 128x128 block scales 1083 (0.547: 0.826).
    /// Delayed scaling runs the per-tensor kernel; current scaling too, after an amax pass over
    /// each operand, which we take at the row-scaled rate (0.93, the factor the `megatron-core`
    /// profile was fitted with); blockwise the block-scaled kernel. MXFP8 and NVFP4 (32- and
    /// 16-element blocks, scaled in hardware on Blackwell) at the row-scaled factor until measured.
    #[inline]
    pub fn gemm_rate_factor(self, recipe: Fp8Recipe) -> f64 {
        match self {
            Precision::Fp8 => match recipe {
                Fp8Recipe::Delayed => 0.955,
                Fp8Recipe::Current => 0.93,
                Fp8Recipe::Blockwise => 0.826,
            },
            Precision::Mxfp8 | Precision::Nvfp4 => 0.93,
            _ => 1.0,
        }
    }

    /// Whether GEMMs run in a sub-16-bit format while attention and the rest stay in 16 bits
    /// (TransformerEngine's recipes).
    pub fn low_precision_gemm(self) -> bool {
        matches!(self, Precision::Fp8 | Precision::Mxfp8 | Precision::Nvfp4)
    }

    /// Bytes of one activation / weight element as stored for compute.
    pub fn compute_bytes(self) -> f64 {
        match self {
            Precision::Fp32 => 4.0,
            _ => 2.0,
        }
    }

    /// Elements a tensor-core GEMM dimension must be a multiple of (16 bytes), per NVIDIA's
    /// "Matrix Multiplication Background" guide, "Tensor Core Requirements".
    pub fn tensor_core_alignment(self) -> u64 {
        match self {
            Precision::Fp32 => 4,
            Precision::Fp16 | Precision::Bf16 => 8,
            Precision::Fp8 | Precision::Mxfp8 => 16,
            Precision::Nvfp4 => 32,
        }
    }
}

/// What is trained: the whole model from scratch or from a checkpoint (supervised fine-tuning costs
/// the same per token; packed sequences are priced as one causal sequence, an upper bound on
/// attention), or low-rank adapters on a frozen base (Hu et al. 2021, LoRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Task {
    #[default]
    Pretrain = 0,
    Sft = 1,
    Lora = 2,
}

/// Where the optimizer (and the weights) live between steps: ZeRO-Offload (Ren et al. 2021) and
/// Megatron-Core's `--optimizer-cpu-offload` keep the fp32 master weights, moments and an fp32
/// gradient copy in host memory and step on the CPU; ZeRO-Infinity / FSDP `CPUOffload` also keep the
/// 16-bit weights there and stream each layer's in for forward and backward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Offload {
    #[default]
    None = 0,
    Optimizer = 1,
    OptimizerParams = 2,
}

/// The pipeline schedule. `Auto` is what `vpp` implies (1F1B, or interleaved 1F1B for vpp > 1).
/// Zero-bubble is ZB-H1 (Qi et al. 2024, "Zero Bubble Pipeline Parallelism"): weight-gradient
/// GEMMs fill the drain, 1F1B's memory. DualPipe (DeepSeek-V3 report, §3.2.1, Table 2): two
/// directions at once, twice the parameters, `pp + 1` micro batches of activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Schedule {
    #[default]
    Auto = 0,
    OneF1B = 1,
    Interleaved = 2,
    ZeroBubble = 3,
    DualPipe = 4,
}

/// Context parallelism's exchange: ring attention passes K/V blocks around the cp ranks (Megatron
/// `p2p`); Ulysses (Jacobs et al. 2023) re-shards Q, K, V and the output by heads with all-to-alls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CpComm {
    #[default]
    Ring = 0,
    Ulysses = 1,
}

/// How FP8 GEMM operands are scaled (TransformerEngine's recipes): one scale per tensor from the
/// amax history (delayed) or from the tensor itself (current), or one per 1x128 / 128x128 block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fp8Recipe {
    #[default]
    Delayed = 0,
    Current = 1,
    Blockwise = 2,
}

/// Training-mode settings an enumeration holds fixed (they are asked, not searched).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode {
    pub task: Task,
    /// LoRA rank (with `Task::Lora`).
    pub lora_rank: u32,
    pub offload: Offload,
    /// Hybrid sharding (HSDP, Megatron's `--num-distributed-optimizer-instances`): ZeRO shards within
    /// groups of this many data-parallel ranks and replicates across groups; 0 = all of dp.
    pub fsdp_shard: u32,
    /// Expert tensor parallelism (Megatron-Core's MoE parallel folding); 0 = tp.
    pub etp: u32,
    pub schedule: Schedule,
    pub cp_comm: CpComm,
    pub fp8_recipe: Fp8Recipe,
}

impl Default for Mode {
    fn default() -> Self {
        Self {
            task: Task::Pretrain,
            lora_rank: 16,
            offload: Offload::None,
            fsdp_shard: 0,
            etp: 0,
            schedule: Schedule::Auto,
            cp_comm: CpComm::Ring,
            fp8_recipe: Fp8Recipe::Delayed,
        }
    }
}

pub const TASKS: &[&str] = &["pretrain", "sft", "lora"];
pub const OFFLOADS: &[&str] = &["none", "optimizer", "optimizer+params"];
pub const SCHEDULES: &[&str] = &["auto", "1f1b", "interleaved", "zero-bubble", "dualpipe"];
pub const CP_COMMS: &[&str] = &["ring", "ulysses"];
pub const FP8_RECIPES: &[&str] = &["delayed", "current", "blockwise"];

/// A parallel strategy for one model on one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Strategy {
    pub dp: u32,
    pub tp: u32,
    pub pp: u32,
    /// Virtual pipeline stages per rank (interleaved 1F1B); 1 = plain 1F1B.
    pub vpp: u32,
    pub cp: u32,
    pub ep: u32,
    pub mbs: u32,
    pub gbs: u32,
    pub zero_stage: u8,
    pub recompute: Recompute,
    pub sequence_parallel: bool,
    pub precision: Precision,
    /// Flash attention: no s^2 activations, attention as one fused kernel.
    pub flash_attention: bool,
    /// Allow `layers % pp != 0` (Megatron-DeepSpeed balances uneven stages; Megatron-LM does not).
    pub uneven_stages: bool,
    /// The framework pads the vocabulary to a multiple of `vocab_multiple * tp` rows (Megatron-LM's
    /// `--make-vocab-size-divisible-by`, 128); 1 where the model's own vocabulary is used as is (plain
    /// PyTorch, Hugging Face), which matters when it is not a multiple of 8 (GPT-2's 50257): the LM
    /// head then cannot use tensor cores.
    pub vocab_multiple: u32,
    /// Elementwise work runs in fused kernels (Megatron-LM, TransformerEngine: fused bias-SwiGLU,
    /// fused rotary embedding, grouped-query attention without copies). False for eager PyTorch
    /// reference code (Hugging Face's Llama): SwiGLU keeps `silu(gate)` for backward and makes two
    /// more passes over the MLP width, the rotate-half rotary embedding makes about nine passes over
    /// Q and K instead of two, and `repeat_kv` copies K and V to every query head, which attention
    /// then saves for backward.
    pub fused_kernels: bool,
    /// The framework's pipeline is the flexible kind of Megatron-Core and torchtitan: ZeRO-2/3
    /// (FSDP) sharding under pp > 1, interleaving at pp 2, uneven interleaved chunks. Megatron-LM
    /// (2021) and DeepSpeed's pipeline engine refuse all three.
    pub flexible_pipeline: bool,
    pub mode: Mode,
}

impl Strategy {
    pub fn gpus(&self) -> u64 {
        self.dp as u64 * self.tp as u64 * self.pp as u64 * self.cp as u64
    }

    /// The schedule that runs: `Auto` resolved by `vpp`.
    #[inline]
    pub fn schedule(&self) -> Schedule {
        match self.mode.schedule {
            Schedule::Auto | Schedule::OneF1B | Schedule::Interleaved if self.vpp > 1 => {
                Schedule::Interleaved
            }
            Schedule::Auto => Schedule::OneF1B,
            other => other,
        }
    }

    /// Expert tensor-parallel size: `etp`, or tp when not set.
    #[inline]
    pub fn etp(&self) -> u32 {
        if self.mode.etp == 0 {
            self.tp
        } else {
            self.mode.etp
        }
    }

    /// Data-parallel ranks one ZeRO shard group spans: `fsdp_shard`, or all of dp.
    #[inline]
    pub fn shard_group(&self) -> u32 {
        if self.mode.fsdp_shard == 0 {
            self.dp
        } else {
            self.mode.fsdp_shard.min(self.dp)
        }
    }

    /// The fraction of its peak a GEMM reaches relative to a 16-bit one on the same shape
    /// ([`Precision::gemm_rate_factor`] with the FP8 recipe's scaling granularity).
    #[inline]
    pub fn gemm_rate_factor(&self) -> f64 {
        self.precision.gemm_rate_factor(self.mode.fp8_recipe)
    }

    /// Micro batches per iteration and replica (gradient accumulation steps); 0 if `gbs` is not
    /// a multiple of `mbs * dp`.
    #[inline]
    pub fn grad_accum(&self) -> u32 {
        let per = self.mbs as u64 * self.dp as u64;
        if per == 0 || !(self.gbs as u64).is_multiple_of(per) {
            0
        } else {
            (self.gbs as u64 / per) as u32
        }
    }

    pub fn validate(&self) -> Result<()> {
        positive("dp", self.dp as u64, 1 << 24)?;
        positive("tp", self.tp as u64, 1 << 12)?;
        positive("pp", self.pp as u64, 1 << 16)?;
        positive("vpp", self.vpp as u64, 1 << 10)?;
        positive("cp", self.cp as u64, 1 << 12)?;
        positive("ep", self.ep as u64, 1 << 16)?;
        positive("mbs", self.mbs as u64, 1 << 20)?;
        positive("gbs", self.gbs as u64, 1 << 31)?;
        positive("vocab_multiple", self.vocab_multiple as u64, 1 << 16)?;
        positive("lora_rank", self.mode.lora_rank as u64, 1 << 16)?;
        if self.mode.etp > 1 << 12 {
            return Err(TopoError::too_large("etp", self.mode.etp, 1 << 12));
        }
        if self.mode.fsdp_shard > 1 << 24 {
            return Err(TopoError::too_large(
                "fsdp_shard",
                self.mode.fsdp_shard,
                1 << 24,
            ));
        }
        let gpus = self.dp as u128 * self.tp as u128 * self.pp as u128 * self.cp as u128;
        if gpus > 1 << 40 {
            return Err(TopoError::new(
                "invalid_value",
                "dp",
                format!("dp*tp*pp*cp = {gpus} GPUs; at most 2^40"),
            ));
        }
        if self.zero_stage > 3 {
            return Err(TopoError::new(
                "invalid_value",
                "zero_stage",
                format!(
                    "`zero_stage` must be one of {{0, 1, 2, 3}}, got {}",
                    self.zero_stage
                ),
            ));
        }
        Ok(())
    }
}

fn positive(field: &str, v: u64, max: u64) -> Result<()> {
    if v == 0 {
        Err(TopoError::too_small(field, v, 1))
    } else if v > max {
        Err(TopoError::too_large(field, v, max))
    } else {
        Ok(())
    }
}

pub mod examples {
    //! Reference specs with their sources, shared by the unit tests and the benchmarks.
    use super::*;

    /// BLOOM-176B, from bigscience/bloom config.json (n_layer 70, hidden 14336, n_head 112,
    /// vocab 250880, ALiBi, word-embedding LayerNorm, tied).
    pub fn bloom_176b() -> Model {
        Model {
            layers: 70,
            hidden: 14336,
            heads: 112,
            kv_heads: 112,
            head_dim: 128,
            ffn_hidden: 4 * 14336,
            activation: Activation::Gelu,
            vocab: 250880,
            seq_len: 2048,
            tied_embeddings: true,
            position: Position::Alibi,
            position_rows: 0,
            norm: Norm::LayerNorm,
            bias: true,
            embedding_norm: true,
            experts: 0,
            topk: 0,
            shared_experts: 0,
            moe_ffn_hidden: 0,
            dense_layers: 0,
            mla: None,
            moe_layer_every: 1,
            mtp_layers: 0,
            qk_norm: false,
            attention_sinks: false,
            router_bias: false,
            qkv_bias: false,
            sandwich_norm: false,
            sliding_window: 0,
            full_attention_every: 0,
        }
    }

    /// The seeds/001 model family: BLOOM architecture with another hidden/layers/heads.
    pub fn seed001(hidden: u32, layers: u32, heads: u32) -> Model {
        Model {
            hidden,
            layers,
            heads,
            kv_heads: heads,
            head_dim: hidden / heads,
            ffn_hidden: 4 * hidden,
            ..bloom_176b()
        }
    }

    /// Llama-2-7B, meta-llama/Llama-2-7b-hf config.json.
    pub fn llama2_7b() -> Model {
        Model {
            layers: 32,
            hidden: 4096,
            heads: 32,
            kv_heads: 32,
            head_dim: 128,
            ffn_hidden: 11008,
            activation: Activation::Swiglu,
            vocab: 32000,
            seq_len: 4096,
            tied_embeddings: false,
            position: Position::Rope,
            position_rows: 0,
            norm: Norm::RmsNorm,
            bias: false,
            embedding_norm: false,
            experts: 0,
            topk: 0,
            shared_experts: 0,
            moe_ffn_hidden: 0,
            dense_layers: 0,
            mla: None,
            // The architecture fields newer than both models are the plain transformer's.
            ..bloom_176b()
        }
    }

    /// A100 80GB SXM: NVIDIA A100 datasheet (312 TFLOP/s bf16 dense, 19.5 FP32, 2039 GB/s,
    /// 108 SMs, NVLink3 300 GB/s per direction, 400 W).
    pub fn a100_80() -> Gpu {
        Gpu {
            peak_fp32: 19.5e12,
            peak_tf32: 156e12,
            peak_fp16: 312e12,
            peak_bf16: 312e12,
            peak_fp8: 0.0,
            peak_mxfp8: 0.0,
            peak_nvfp4: 0.0,
            vector_fp32: 19.5e12,
            memory_bytes: 80.0 * 1024f64.powi(3),
            memory_bw: 2039e9,
            elementwise_bw: 2039e9,
            sms: 108,
            intra_node_bw: 300e9,
            inter_node_bw: 25e9,
            board_power_w: 400.0,
            nvlink_domain: 0,
            host_link_bw: 32e9,
            host_memory_bw: 51.2e9,
        }
    }

    /// H200 141GB SXM: NVIDIA H200 datasheet (989.5 TFLOP/s bf16 dense, 67 FP32, 4.8 TB/s,
    /// 132 SMs, NVLink4 450 GB/s per direction, 700 W).
    pub fn h200() -> Gpu {
        Gpu {
            peak_fp32: 67e12,
            peak_tf32: 494.5e12,
            peak_fp16: 989.5e12,
            peak_bf16: 989.5e12,
            peak_fp8: 1979e12,
            peak_mxfp8: 0.0,
            peak_nvfp4: 0.0,
            vector_fp32: 67e12,
            memory_bytes: 141.0 * 1024f64.powi(3),
            memory_bw: 4800e9,
            elementwise_bw: 2953e9,
            sms: 132,
            intra_node_bw: 450e9,
            inter_node_bw: 50e9,
            board_power_w: 700.0,
            nvlink_domain: 0,
            host_link_bw: 64e9,
            host_memory_bw: 76.8e9,
        }
    }

    pub fn strategy(dp: u32, tp: u32, pp: u32, mbs: u32, gbs: u32) -> Strategy {
        Strategy {
            dp,
            tp,
            pp,
            vpp: 1,
            cp: 1,
            ep: 1,
            mbs,
            gbs,
            zero_stage: 1,
            recompute: Recompute::Full,
            sequence_parallel: false,
            precision: Precision::Bf16,
            flash_attention: false,
            uneven_stages: true,
            vocab_multiple: 128,
            fused_kernels: true,
            flexible_pipeline: false,
            mode: Mode::default(),
        }
    }
}
