//! Divisibility and kernel rules. A broken hard rule rejects a candidate with a named reason;
//! a soft rule (a slower kernel, a quantization loss) becomes a warning flag on the row.

use crate::spec::{Cluster, CpComm, Model, Offload, Schedule, Strategy};

/// Why a candidate is out. The discriminant indexes [`Reject::ALL`] and the `pruned` statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    GpusMismatch,
    TpExceedsNode,
    HiddenNotDivisibleByHeads,
    HeadDimUnsupported,
    HeadsNotDivisibleByTp,
    KvHeadsNotDivisibleByTp,
    FfnNotDivisibleByTp,
    TooFewLayersForPp,
    LayersNotDivisibleByPp,
    LayersNotDivisibleByVpp,
    VppNeedsPp,
    MicroBatchesNotDivisibleByPp,
    GbsNotDivisibleByMbsDp,
    SequenceParallelNeedsTp,
    SeqNotDivisibleByCp,
    ExpertsNotDivisibleByEp,
    EpNeedsExperts,
    EpNotDivisibleIntoDp,
    Fp8Unsupported,
    ZeroWithPipeline,
    FsdpShardNotDivisor,
    ScheduleMismatch,
    DualPipeUneven,
    UlyssesHeads,
    OffloadUnsupported,
    Oom,
    ParamsOutOfBudget,
}

impl Reject {
    pub const ALL: [Reject; 27] = [
        Reject::GpusMismatch,
        Reject::TpExceedsNode,
        Reject::HiddenNotDivisibleByHeads,
        Reject::HeadDimUnsupported,
        Reject::HeadsNotDivisibleByTp,
        Reject::KvHeadsNotDivisibleByTp,
        Reject::FfnNotDivisibleByTp,
        Reject::TooFewLayersForPp,
        Reject::LayersNotDivisibleByPp,
        Reject::LayersNotDivisibleByVpp,
        Reject::VppNeedsPp,
        Reject::MicroBatchesNotDivisibleByPp,
        Reject::GbsNotDivisibleByMbsDp,
        Reject::SequenceParallelNeedsTp,
        Reject::SeqNotDivisibleByCp,
        Reject::ExpertsNotDivisibleByEp,
        Reject::EpNeedsExperts,
        Reject::EpNotDivisibleIntoDp,
        Reject::Fp8Unsupported,
        Reject::ZeroWithPipeline,
        Reject::FsdpShardNotDivisor,
        Reject::ScheduleMismatch,
        Reject::DualPipeUneven,
        Reject::UlyssesHeads,
        Reject::OffloadUnsupported,
        Reject::Oom,
        Reject::ParamsOutOfBudget,
    ];

    /// Stable slug, used in statistics, `topo check` and error codes.
    pub fn code(self) -> &'static str {
        match self {
            Reject::GpusMismatch => "gpus_mismatch",
            Reject::TpExceedsNode => "tp_exceeds_node",
            Reject::HiddenNotDivisibleByHeads => "hidden_not_divisible_by_heads",
            Reject::HeadDimUnsupported => "head_dim_unsupported",
            Reject::HeadsNotDivisibleByTp => "heads_not_divisible_by_tp",
            Reject::KvHeadsNotDivisibleByTp => "kv_heads_not_divisible_by_tp",
            Reject::FfnNotDivisibleByTp => "ffn_not_divisible_by_tp",
            Reject::TooFewLayersForPp => "too_few_layers_for_pp",
            Reject::LayersNotDivisibleByPp => "layers_not_divisible_by_pp",
            Reject::LayersNotDivisibleByVpp => "layers_not_divisible_by_pp_vpp",
            Reject::VppNeedsPp => "vpp_needs_pp",
            Reject::MicroBatchesNotDivisibleByPp => "micro_batches_not_divisible_by_pp",
            Reject::GbsNotDivisibleByMbsDp => "gbs_not_divisible_by_mbs_dp",
            Reject::SequenceParallelNeedsTp => "sequence_parallel_needs_tp",
            Reject::SeqNotDivisibleByCp => "seq_not_divisible_by_cp",
            Reject::ExpertsNotDivisibleByEp => "experts_not_divisible_by_ep",
            Reject::EpNeedsExperts => "ep_needs_experts",
            Reject::EpNotDivisibleIntoDp => "ep_not_divisor_of_dp",
            Reject::Fp8Unsupported => "precision_unsupported",
            Reject::ZeroWithPipeline => "zero_stage_with_pipeline",
            Reject::FsdpShardNotDivisor => "fsdp_shard_not_divisor_of_dp",
            Reject::ScheduleMismatch => "schedule_vpp_mismatch",
            Reject::DualPipeUneven => "dualpipe_needs_even_pp_and_micro_batches",
            Reject::UlyssesHeads => "heads_not_divisible_by_tp_cp",
            Reject::OffloadUnsupported => "offload_unsupported",
            Reject::Oom => "oom",
            Reject::ParamsOutOfBudget => "params_out_of_budget",
        }
    }

    /// One line: what is wrong and what to change.
    pub fn message(self, m: &Model, s: &Strategy, c: &Cluster) -> String {
        match self {
            Reject::GpusMismatch => format!(
                "dp*tp*pp*cp = {}*{}*{}*{} = {} does not equal the cluster's {} GPUs",
                s.dp, s.tp, s.pp, s.cp, s.gpus(), c.gpus()
            ),
            Reject::TpExceedsNode => format!("tp {} is larger than an NVLink domain ({} GPUs): tensor parallelism needs NVLink", s.tp, c.domain()),
            Reject::HiddenNotDivisibleByHeads => format!("hidden {} is not a multiple of heads {}", m.hidden, m.heads),
            Reject::HeadDimUnsupported => format!(
                "head dim {} has no flash-attention kernel (FlashAttention-2/3 and cuDNN take multiples of 8 up to {MAX_FLASH_HEAD_DIM})",
                attention_head_dim(m)
            ),
            Reject::HeadsNotDivisibleByTp => format!("heads {} is not a multiple of tp {}", m.heads, s.tp),
            Reject::KvHeadsNotDivisibleByTp => format!("kv_heads {} is not a multiple of tp {}", m.kv_heads, s.tp),
            Reject::FfnNotDivisibleByTp => format!("ffn_hidden {} is not a multiple of tp {}", m.ffn_hidden, s.tp),
            Reject::TooFewLayersForPp => format!("{} layers cannot fill {} pipeline stages", m.layers, s.pp),
            Reject::LayersNotDivisibleByPp => format!("layers {} is not a multiple of pp {} (uneven stages are off)", m.layers, s.pp),
            Reject::LayersNotDivisibleByVpp => format!("layers {} is not a multiple of pp*vpp = {}", m.layers, s.pp * s.vpp),
            Reject::VppNeedsPp => format!("vpp {} needs pp > 2 in this framework (interleaving with pp {})", s.vpp, s.pp),
            Reject::MicroBatchesNotDivisibleByPp => format!("the interleaved schedule needs micro batches ({}) to be a multiple of pp {}", s.grad_accum(), s.pp),
            Reject::GbsNotDivisibleByMbsDp => format!("gbs {} is not a multiple of mbs*dp = {}*{}", s.gbs, s.mbs, s.dp),
            Reject::SequenceParallelNeedsTp => "sequence parallelism needs tp > 1".to_string(),
            Reject::SeqNotDivisibleByCp => format!("seq_len {} is not a multiple of 2*cp = {}", m.seq_len, 2 * s.cp),
            Reject::ExpertsNotDivisibleByEp => format!("experts {} is not a multiple of ep {}", m.experts, s.ep),
            Reject::EpNeedsExperts => format!("ep {} needs a model with experts", s.ep),
            Reject::EpNotDivisibleIntoDp => {
                if s.etp() == s.tp {
                    format!("ep {} must divide dp*cp = {}", s.ep, s.dp * s.cp)
                } else {
                    format!("ep*etp = {}*{} must divide tp*dp*cp = {} (MoE parallel folding)", s.ep, s.etp(), s.tp as u64 * s.dp as u64 * s.cp as u64)
                }
            }
            Reject::Fp8Unsupported => format!("the GPU has no {} tensor cores", s.precision.label()),
            Reject::ZeroWithPipeline => format!("ZeRO stage {} shards gradients, which pipeline parallelism (pp {}) cannot combine with", s.zero_stage, s.pp),
            Reject::FsdpShardNotDivisor => format!("fsdp_shard {} must divide dp {}", s.mode.fsdp_shard, s.dp),
            Reject::ScheduleMismatch => match s.mode.schedule {
                Schedule::Interleaved => format!("the interleaved schedule needs vpp > 1, got vpp {}", s.vpp),
                _ => format!("vpp {} needs the interleaved schedule", s.vpp),
            },
            Reject::DualPipeUneven => format!("DualPipe needs an even pp and an even number of micro batches, got pp {} and {}", s.pp, s.grad_accum()),
            Reject::UlyssesHeads => format!("Ulysses context parallelism needs heads/tp = {} to be a multiple of cp {}", m.heads / s.tp.max(1), s.cp),
            Reject::OffloadUnsupported => {
                if s.mode.offload == Offload::OptimizerParams && s.zero_stage < 3 {
                    format!("offloading the weights needs ZeRO-3 / FSDP, got ZeRO stage {}", s.zero_stage)
                } else {
                    "offload needs the GPU's host link bandwidth (host_link_gbs in gpus.toml)".to_string()
                }
            }
            Reject::Oom => "does not fit in GPU memory".to_string(),
            Reject::ParamsOutOfBudget => "parameters outside the requested budget".to_string(),
        }
    }
}

/// Model-shape rules that do not depend on the strategy.
pub fn check_shape(m: &Model) -> Option<Reject> {
    // Only divisibility: a model may give its own head_dim (Qwen3: 16 heads of 128 on hidden 1024).
    if m.mla.is_none() && !m.hidden.is_multiple_of(m.heads) {
        return Some(Reject::HiddenNotDivisibleByHeads);
    }
    None
}

/// Widest query/key head the fused attention kernels run: FlashAttention-2 and -3 are built for
/// head dims up to 256 in multiples of 8 (`head_size % 8 == 0`, `<= 256` in their interfaces), as is
/// cuDNN's fused attention on Hopper.
pub const MAX_FLASH_HEAD_DIM: u32 = 256;

/// The query/key head width attention kernels see (MLA: `nope + rope`).
pub fn attention_head_dim(m: &Model) -> u32 {
    m.mla
        .map_or(m.head_dim, |x| x.qk_nope_head_dim + x.qk_rope_head_dim)
}

/// Kernel rules of the model's shape under the chosen attention: a flash kernel must exist for its
/// head dim (unfused attention runs any width, more slowly).
pub fn check_kernels(m: &Model, flash_attention: bool) -> Option<Reject> {
    let d = attention_head_dim(m);
    if flash_attention && (d > MAX_FLASH_HEAD_DIM || !d.is_multiple_of(8)) {
        return Some(Reject::HeadDimUnsupported);
    }
    None
}

/// Strategy rules for a given model and cluster, cheapest first. `None` when all hold.
pub fn check_strategy(
    m: &Model,
    s: &Strategy,
    c: &Cluster,
    allow_cross_node_tp: bool,
) -> Option<Reject> {
    if s.gpus() != c.gpus() {
        return Some(Reject::GpusMismatch);
    }
    if !allow_cross_node_tp && s.tp > c.domain() {
        return Some(Reject::TpExceedsNode);
    }
    if !m.heads.is_multiple_of(s.tp) {
        return Some(Reject::HeadsNotDivisibleByTp);
    }
    if !m.kv_heads.is_multiple_of(s.tp) {
        return Some(Reject::KvHeadsNotDivisibleByTp);
    }
    if !m.ffn_hidden.is_multiple_of(s.tp)
        || (m.is_moe() && !m.moe_ffn_hidden.is_multiple_of(s.etp()))
    {
        return Some(Reject::FfnNotDivisibleByTp);
    }
    check_layout(m, s, c).or_else(|| check_zero(s))
}

/// The strategy rules past the GPU count and tensor parallelism's divisibility (which enumeration
/// checks once per block of one (shape, tp)) and before the ZeRO stage's ([`check_zero`], which it
/// checks per stage).
pub fn check_layout(m: &Model, s: &Strategy, c: &Cluster) -> Option<Reject> {
    if m.layers < s.pp * s.vpp {
        return Some(Reject::TooFewLayersForPp);
    }
    if !s.uneven_stages && !m.layers.is_multiple_of(s.pp) {
        return Some(Reject::LayersNotDivisibleByPp);
    }
    if s.vpp > 1 {
        // Megatron-LM (2021) asserted pp > 2 for the interleaved schedule; Megatron-Core runs it at
        // pp 2 (NVIDIA's Qwen3-30B recipe: pp 2, vpp 12). `flexible_pipeline` marks those stacks.
        if s.pp <= 1 || (s.pp == 2 && !s.flexible_pipeline) {
            return Some(Reject::VppNeedsPp);
        }
        // Uneven chunks where the framework balances them (Megatron-Core's first/last-stage layer
        // counts; Llama 3 405B's 126 layers over pp 16).
        if !(s.uneven_stages && s.flexible_pipeline) && !m.layers.is_multiple_of(s.pp * s.vpp) {
            return Some(Reject::LayersNotDivisibleByVpp);
        }
    }
    if s.grad_accum() == 0 {
        return Some(Reject::GbsNotDivisibleByMbsDp);
    }
    if s.vpp > 1 && !s.grad_accum().is_multiple_of(s.pp) {
        return Some(Reject::MicroBatchesNotDivisibleByPp);
    }
    if s.sequence_parallel && s.tp == 1 {
        return Some(Reject::SequenceParallelNeedsTp);
    }
    if s.cp > 1 && !m.seq_len.is_multiple_of(2 * s.cp) {
        return Some(Reject::SeqNotDivisibleByCp);
    }
    if s.ep > 1 {
        if !m.is_moe() {
            return Some(Reject::EpNeedsExperts);
        }
        if !m.experts.is_multiple_of(s.ep) {
            return Some(Reject::ExpertsNotDivisibleByEp);
        }
        // Megatron-Core's MoE parallel folding: the expert grid etp x ep x edp covers the same
        // GPUs as tp x cp x dp (etp = tp: ep divides dp*cp).
        if !(s.tp as u64 * s.dp as u64 * s.cp as u64).is_multiple_of(s.ep as u64 * s.etp() as u64) {
            return Some(Reject::EpNotDivisibleIntoDp);
        }
    }
    // The training-mode rules; a plain mode (most of an enumeration's candidates) skips them.
    if s.mode.fsdp_shard != 0
        || s.mode.schedule != Schedule::Auto
        || s.mode.cp_comm != CpComm::Ring
        || s.mode.offload != Offload::None
    {
        if let Some(r) = check_mode(m, s, c) {
            return Some(r);
        }
    }
    if c.gpu.peak(s.precision) <= 0.0 {
        return Some(Reject::Fp8Unsupported);
    }
    None
}

/// Rules of the training-mode settings (HSDP groups, schedules, Ulysses, offload).
fn check_mode(m: &Model, s: &Strategy, c: &Cluster) -> Option<Reject> {
    if s.mode.fsdp_shard > 0 && !s.dp.is_multiple_of(s.mode.fsdp_shard) {
        return Some(Reject::FsdpShardNotDivisor);
    }
    let explicit_mismatch = match s.mode.schedule {
        Schedule::Auto => false,
        Schedule::Interleaved => s.vpp <= 1,
        _ => s.vpp > 1,
    };
    if explicit_mismatch {
        return Some(Reject::ScheduleMismatch);
    }
    if s.schedule() == Schedule::DualPipe
        && (!s.pp.is_multiple_of(2) || !s.grad_accum().is_multiple_of(2))
    {
        return Some(Reject::DualPipeUneven);
    }
    if s.cp > 1
        && s.mode.cp_comm == CpComm::Ulysses
        && !(m.heads / s.tp.max(1)).is_multiple_of(s.cp)
    {
        return Some(Reject::UlyssesHeads);
    }
    if s.mode.offload != Offload::None && c.gpu.host_link_bw <= 0.0 {
        return Some(Reject::OffloadUnsupported);
    }
    None
}

/// The rules that depend on the ZeRO stage (enumeration checks them per stage).
#[inline]
pub fn check_zero(s: &Strategy) -> Option<Reject> {
    // DeepSpeed's pipeline engine asserts "ZeRO-2 and ZeRO-3 are incompatible with pipeline
    // parallelism" (deepspeed/runtime/pipe/engine.py); Megatron-LM shards only optimizer states.
    if s.zero_stage >= 2 && s.pp > 1 && !s.flexible_pipeline {
        return Some(Reject::ZeroWithPipeline);
    }
    // Weights live on the host only where they are sharded and gathered per layer (ZeRO-Infinity,
    // FSDP's CPUOffload).
    if s.mode.offload == Offload::OptimizerParams && s.zero_stage < 3 {
        return Some(Reject::OffloadUnsupported);
    }
    None
}

/// The largest fraction of a precision's dense peak a GEMM reaches: 805 of 989.5 TFLOP/s (0.81) for
/// bf16 on an H200 and 797 on an H100 (data/measured/h200_gemm.csv, h100_gemm.csv); A100s reach more
/// of their lower peak, and three A100 profiles are fitted at 0.82-0.86. 0.9 is the fit's upper bound
/// on `gemm_efficiency` (fit.rs): a prediction above it is a modelling error, not a fast config.
pub const KERNEL_CEILING: f64 = 0.9;

/// Soft-rule flags (bit set). Each costs speed, none breaks training.
pub mod warn {
    /// Megatron's fused softmax cannot run: `(heads/tp)*mbs % 4 != 0` or the sequence is outside
    /// 16 < s <= 16384 (Megatron-LM `FusedScaleMaskSoftmax.is_kernel_available`).
    pub const FUSED_SOFTMAX_UNAVAILABLE: u32 = 1 << 0;
    /// Head dimension not a multiple of 8: attention GEMMs cannot use tensor cores.
    pub const HEAD_DIM_MISALIGNED: u32 = 1 << 1;
    /// hidden/tp or ffn/tp is not a multiple of 128 and the layer GEMMs lose more than 5%.
    pub const TILE_QUANTIZATION: u32 = 1 << 2;
    /// The layer GEMMs lose more than 5% to wave quantization on this GPU's SM count.
    pub const WAVE_QUANTIZATION: u32 = 1 << 3;
    /// Uneven pipeline stages (layers % pp != 0): the largest stage sets the pace.
    pub const UNEVEN_STAGES: u32 = 1 << 4;
    /// Batch ramp-up (seeds/001): needs dp % 4 == 0 and gbs % 32 == 0 for its 32-sample steps.
    pub const RAMPUP_INCOMPATIBLE: u32 = 1 << 5;
    /// The predicted hardware FLOP rate is above what measured kernels reach ([`super::KERNEL_CEILING`]
    /// of the precision's peak): a sanity flag on the model itself, not on the config.
    pub const ABOVE_KERNEL_CEILING: u32 = 1 << 6;

    pub const ALL: [(u32, &str); 7] = [
        (FUSED_SOFTMAX_UNAVAILABLE, "fused_softmax_unavailable"),
        (HEAD_DIM_MISALIGNED, "head_dim_misaligned"),
        (TILE_QUANTIZATION, "tile_quantization"),
        (WAVE_QUANTIZATION, "wave_quantization"),
        (UNEVEN_STAGES, "uneven_stages"),
        (RAMPUP_INCOMPATIBLE, "rampup_incompatible"),
        (ABOVE_KERNEL_CEILING, "above_kernel_ceiling"),
    ];
}

/// Whether Megatron's fused scale-mask-softmax kernel runs for this shape.
pub fn fused_softmax_available(m: &Model, s: &Strategy) -> bool {
    let local_heads = m.heads / s.tp.max(1);
    let seq = m.seq_len / s.cp.max(1);
    !s.flash_attention
        && seq > 16
        && seq <= 16384
        && (local_heads as u64 * s.mbs as u64).is_multiple_of(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::examples::*;
    use crate::spec::Cluster;

    fn cluster(nodes: u32) -> Cluster {
        Cluster {
            gpu: a100_80(),
            nodes,
            gpus_per_node: 8,
        }
    }

    #[test]
    fn bloom_trained_config_passes() {
        // BLOOM-176B: 48 nodes, TP 4, PP 12, DP 8, MBS 2, GBS 2048, 70 layers on 12 uneven stages.
        let s = strategy(8, 4, 12, 2, 2048);
        assert_eq!(check_strategy(&bloom_176b(), &s, &cluster(48), false), None);
        let even = Strategy {
            uneven_stages: false,
            ..s
        };
        assert_eq!(
            check_strategy(&bloom_176b(), &even, &cluster(48), false),
            Some(Reject::LayersNotDivisibleByPp)
        );
    }

    #[test]
    fn named_reasons() {
        let m = seed001(13824, 78, 108);
        let s = strategy(8, 8, 6, 4, 2048);
        // seeds/001: "NHEADS=108 breaks constraints" - 108 heads are not divisible by TP 8.
        assert_eq!(
            check_strategy(&m, &s, &cluster(48), false),
            Some(Reject::HeadsNotDivisibleByTp)
        );
        let m = seed001(14336, 72, 64);
        assert_eq!(
            check_strategy(&m, &strategy(8, 8, 6, 3, 2048), &cluster(48), false),
            Some(Reject::GbsNotDivisibleByMbsDp)
        );
        assert_eq!(
            check_strategy(&m, &strategy(8, 8, 5, 4, 2048), &cluster(48), false),
            Some(Reject::GpusMismatch)
        );
        assert_eq!(
            check_strategy(&m, &strategy(3, 16, 8, 4, 2046), &cluster(48), false),
            Some(Reject::TpExceedsNode)
        );
    }

    #[test]
    fn fused_softmax_rule_from_seed001() {
        // seeds/001 NHEADs section: the constraint is (HEADS/TP)*MBS % 4 == 0.
        let s = strategy(8, 8, 6, 4, 2048);
        assert!(fused_softmax_available(&seed001(14336, 72, 16), &s));
        assert!(!fused_softmax_available(
            &seed001(14336, 72, 16),
            &Strategy { mbs: 1, ..s }
        ));
    }
}
