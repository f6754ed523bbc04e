//! Collective and point-to-point communication times (bandwidth plus per-step latency).
//!
//! # Formula
//! Ring all-reduce of `B` bytes over `n` ranks: `2 (n-1)/n * B / bw + 2 (n-1) * alpha`;
//! all-gather and reduce-scatter: half of that; point-to-point: `B / bw + alpha`.
//!
//! # Source
//! Patarasuk & Yuan 2009 (bandwidth-optimal ring all-reduce); NCCL's ring algorithm
//! (NVIDIA nccl-tests "Performance" doc: bus bandwidth = algbw * 2(n-1)/n for all-reduce).

/// Per-step latency of an NCCL ring step inside a node (NVLink), seconds. nccl-tests on DGX A100
/// show ~10-20 us for small all-reduces over 8 GPUs (14 steps), about 1 us per step.
pub const ALPHA_INTRA_S: f64 = 1.0e-6;
/// Per-step latency across nodes (InfiniBand / RoCE), seconds: ~5 us per hop.
pub const ALPHA_INTER_S: f64 = 5.0e-6;

pub fn all_reduce(bytes: f64, n: u64, bw: f64, alpha: f64) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let n_f = n as f64;
    2.0 * (n_f - 1.0) / n_f * bytes / bw + 2.0 * (n_f - 1.0) * alpha
}

pub fn all_gather(bytes: f64, n: u64, bw: f64, alpha: f64) -> f64 {
    all_reduce(bytes, n, bw, alpha) / 2.0
}

pub fn p2p(bytes: f64, bw: f64, alpha: f64) -> f64 {
    bytes / bw + alpha
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_all_reduce_bus_factor() {
        // 8 ranks: 2*7/8 = 1.75 x bytes / bw (nccl-tests busbw definition), latency excluded.
        let t = all_reduce(1e9, 8, 1e9, 0.0);
        assert!((t - 1.75).abs() < 1e-12);
        assert_eq!(all_reduce(1e9, 1, 1e9, 1e-6), 0.0);
        assert!((all_gather(1e9, 8, 1e9, 0.0) - 0.875).abs() < 1e-12);
    }
}
