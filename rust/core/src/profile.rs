//! Efficiency constants of one hardware/software profile.
//!
//! A first-principles model still needs a few numbers no formula gives: how close the best GEMM
//! kernels come to the tensor peak, how much of HBM and link bandwidth real kernels reach, what a
//! layer costs in launches and framework work, how much data-parallel reduction hides behind
//! backward, and what memory the CUDA context and framework hold. They live in
//! `python/toposcan/data/profiles.toml`, one set per profile, each fitted to measured step times
//! by [`crate::fit`] and stored with its fit error.

/// The constants. Rates are fractions of the catalog's peak; times are seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Fraction of the dense tensor peak that a perfectly quantized GEMM sustains.
    pub gemm_efficiency: f64,
    /// Fraction of the tensor peak the attention core sustains (flash attention or the batched
    /// score/context GEMMs), usually below large GEMMs (FlashAttention-2 paper, Fig. 5-6).
    pub attention_efficiency: f64,
    /// Fraction of HBM bandwidth that elementwise kernels (norms, softmax, optimizer) sustain.
    pub memory_efficiency: f64,
    /// Fraction of the intra-node link bandwidth collectives reach (NCCL bus bandwidth / link).
    pub intra_link_efficiency: f64,
    /// Fraction of the inter-node bandwidth per GPU collectives reach.
    pub inter_link_efficiency: f64,
    /// Fixed time per layer and micro batch (kernel launches, framework work), seconds.
    pub layer_overhead_s: f64,
    /// Fraction of the data-parallel gradient reduction hidden behind backward.
    pub dp_overlap: f64,
    /// Fraction of ZeRO-3 / FSDP weight gathers and gradient reduce-scatters hidden behind the
    /// layers' compute (1: only the excess over compute shows).
    pub fsdp_overlap: f64,
    /// Fixed time per iteration (logging, scheduler, barriers), seconds.
    pub step_overhead_s: f64,
    /// Fixed memory per GPU: CUDA context, cuBLAS/NCCL workspaces, framework buffers, bytes.
    pub memory_overhead_bytes: f64,
    /// Allocator fragmentation and transient buffers, as a fraction of activation memory.
    pub fragmentation: f64,
    /// Bytes per parameter of the full-size gradient buffer (sharded only by ZeRO-2/3): 4 for
    /// Megatron-LM's fp32 `main_grad`, 2 for DeepSpeed's 16-bit gradients.
    pub grad_bytes: f64,
    /// Bytes per parameter of an extra fp32 gradient partition the optimizer keeps, divided over
    /// DP (DeepSpeed ZeRO-1/2 `single_partition_of_fp32_groups` gradients: 4; Megatron: 0).
    pub grad_shard_bytes: f64,
    /// Bytes per LM-head logit the loss holds at its peak (see
    /// [`crate::formulas::memory::stage_activations`]): 10 for Megatron-LM's cross entropy, 2 for a
    /// fused in-place one.
    pub logit_bytes: f64,
    /// ZeRO-1 all-reduces the gradients (then each rank steps its optimizer shard) instead of
    /// reduce-scattering them: DeepSpeed's engine under pipeline parallelism
    /// (`allreduce_gradients` -> `buffered_allreduce_fallback` for stage 1); Megatron-LM's distributed
    /// optimizer and ZeRO-2 reduce-scatter.
    pub zero1_allreduce: bool,
    /// Gradients are allocated during backward and freed by the optimizer step (plain PyTorch,
    /// `zero_grad(set_to_none=True)`, the default since 2.0), so with one micro batch per step they
    /// grow into the memory the freed activations return; frameworks with persistent gradient
    /// buffers (Megatron-LM's `main_grad`, DeepSpeed's contiguous gradients) hold both at once.
    pub transient_gradients: bool,
    /// Megatron-LM's pipeline sends split activations over TP ranks (scatter/gather); DeepSpeed's
    /// pipeline engine sends the full tensor from every TP rank.
    pub p2p_scatter_gather: bool,
}

impl Profile {
    /// Number of fitted time constants, in the order of [`Profile::time_vector`].
    pub const TIME_PARAMS: usize = 9;

    pub fn time_vector(&self) -> [f64; Self::TIME_PARAMS] {
        [
            self.gemm_efficiency,
            self.memory_efficiency,
            self.intra_link_efficiency,
            self.inter_link_efficiency,
            self.layer_overhead_s,
            self.dp_overlap,
            self.step_overhead_s,
            self.attention_efficiency,
            self.fsdp_overlap,
        ]
    }

    pub fn with_time_vector(&self, v: &[f64; Self::TIME_PARAMS]) -> Self {
        Self {
            gemm_efficiency: v[0],
            memory_efficiency: v[1],
            intra_link_efficiency: v[2],
            inter_link_efficiency: v[3],
            layer_overhead_s: v[4],
            dp_overlap: v[5],
            step_overhead_s: v[6],
            attention_efficiency: v[7],
            fsdp_overlap: v[8],
            ..*self
        }
    }

    /// Allowed range of each time constant: fits stay physical. No GEMM or attention kernel
    /// sustains more than ~90% of the dense tensor peak (the best cuBLAS GEMMs reach ~280 of
    /// A100's 312 TFLOP/s); a fixed per-iteration cost above 2 s would be a stall, not overhead.
    pub const TIME_BOUNDS: [(f64, f64); Self::TIME_PARAMS] = [
        (0.2, 0.9),
        (0.2, 1.0),
        (0.05, 1.0),
        (0.02, 1.0),
        (0.0, 5e-2),
        (0.0, 1.0),
        (0.0, 2.0),
        (0.05, 0.9),
        (0.0, 1.0),
    ];

    pub fn validate(&self) -> crate::error::Result<()> {
        for (i, (name, v)) in [
            "gemm_efficiency",
            "memory_efficiency",
            "intra_link_efficiency",
            "inter_link_efficiency",
            "layer_overhead_s",
            "dp_overlap",
            "step_overhead_s",
            "attention_efficiency",
            "fsdp_overlap",
        ]
        .iter()
        .zip(self.time_vector())
        .enumerate()
        {
            let (lo, hi) = Self::TIME_BOUNDS[i];
            if !(v.is_finite() && v >= lo && v <= hi) {
                return Err(crate::error::TopoError::new(
                    "invalid_value",
                    *name,
                    format!("profile `{name}` must be between {lo} and {hi}, got {v}"),
                ));
            }
        }
        for (name, v) in [
            ("memory_overhead_bytes", self.memory_overhead_bytes),
            ("fragmentation", self.fragmentation),
            ("grad_bytes", self.grad_bytes),
            ("grad_shard_bytes", self.grad_shard_bytes),
            ("logit_bytes", self.logit_bytes),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(crate::error::TopoError::not_finite(name, v));
            }
        }
        Ok(())
    }
}

impl Default for Profile {
    /// Generic defaults (used by unit tests and as the fit's starting point): typical A100-era
    /// Megatron numbers, ~75% of peak on large GEMMs, ~80% of HBM and NVLink, ~60% of IB.
    fn default() -> Self {
        Self {
            gemm_efficiency: 0.75,
            attention_efficiency: 0.5,
            memory_efficiency: 0.8,
            intra_link_efficiency: 0.8,
            inter_link_efficiency: 0.6,
            layer_overhead_s: 1e-4,
            dp_overlap: 0.5,
            fsdp_overlap: 1.0,
            step_overhead_s: 0.1,
            memory_overhead_bytes: 3.0 * 1024f64.powi(3),
            fragmentation: 0.1,
            grad_bytes: 4.0,
            grad_shard_bytes: 0.0,
            logit_bytes: 10.0,
            zero1_allreduce: false,
            transient_gradients: false,
            p2p_scatter_gather: true,
        }
    }
}
