//! GEMM time from tile and wave quantization.
//!
//! # Formula
//! A GEMM `C[m,n] = A[m,k] B[k,n]` (times `batch`) is cut into output tiles `tm x tn`; each SM
//! computes one tile at a time, so the kernel runs in `waves = ceil(tiles / SMs)` waves of
//! `2 tm tn k / (peak / SMs)` seconds each, a smaller tile running at a lower fraction of the SM's
//! peak. The library picks the tile that finishes first. A dimension that is not a multiple of the
//! tile wastes the remainder (tile quantization); a last wave with fewer tiles than SMs idles the
//! rest (wave quantization). A dimension that is not a multiple of 16 bytes keeps the kernel off the
//! vectorized (16-byte) operand loads: since cuBLAS 11 such a GEMM still runs on tensor cores, but at
//! [`MISALIGNED_FRACTION`] of the aligned rate. The result is bounded below by the time to move the
//! operands through HBM.
//!
//! # Source
//! NVIDIA, "Matrix Multiplication Background User's Guide" (Deep Learning Performance docs):
//! sections "Tile Quantization", "Wave Quantization" and "Tensor Core Requirements";
//! seeds/001 "tile and wave quantization" applies it to A100 (108 SMs) and TP=8.

use crate::spec::{Gpu, Precision};

/// Output tile shapes (rows, cols) cuBLAS/CUTLASS kernels commonly use, with the fraction of an
/// SM's tensor peak each sustains. Smaller tiles reuse each loaded operand less; the relative
/// values are a model assumption (CUTLASS's default tile set), the absolute level is fitted
/// per profile as `gemm_efficiency`.
pub const TILES: [(u64, u64, f64); 6] = [
    (256, 128, 1.0),
    (128, 256, 1.0),
    (128, 128, 0.94),
    (128, 64, 0.86),
    (64, 128, 0.86),
    (64, 64, 0.72),
];

/// Rate of a GEMM with a dimension that is not a multiple of 16 bytes, as a fraction of the same
/// GEMM aligned. Measured on an H200 (benches/device/measure.py `--set kernels`, 2026-11-26,
/// PyTorch 2.11, CUDA 13; python/toposcan/data/measured/h200_lm_head.csv): the LM head's three
/// GEMMs for vocabulary 50257 against 50304, 8192-16384 tokens, hidden 768 and 2048: forward 0.15,
/// input gradient 0.20, weight gradient 0.21 of the aligned rate; one rate serves all three here,
/// so the time-weighted pool, 0.184. Hopper's fast kernels (TMA, wgmma) need 16-byte aligned
/// operands; on older GPUs the penalty is likely smaller (not measured here).
pub const MISALIGNED_FRACTION: f64 = 0.184;

/// `ceil(x / tile)` for a power-of-two `tile`.
#[inline]
fn ceil_shift(x: u64, tile: u64) -> u64 {
    let sh = tile.trailing_zeros();
    (x + tile - 1) >> sh
}

/// One (batched) GEMM shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gemm {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub batch: u64,
}

impl Gemm {
    pub const fn new(m: u64, n: u64, k: u64, batch: u64) -> Self {
        Self { m, n, k, batch }
    }

    /// Useful floating-point operations: `2 m n k batch`.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.batch as f64
    }

    /// True when every dimension is a multiple of 16 bytes, so tensor cores can run it.
    pub fn tensor_core_aligned(&self, p: Precision) -> bool {
        let a = p.tensor_core_alignment();
        self.m.is_multiple_of(a) && self.n.is_multiple_of(a) && self.k.is_multiple_of(a)
    }

    /// Seconds at 100% of the tensor peak, with tile and wave quantization and the HBM bound, for a
    /// 16-bit (or fp32) GEMM; [`Gemm::time_at`] for a scaled low-precision one.
    pub fn time(&self, gpu: &Gpu, p: Precision) -> f64 {
        self.time_at(gpu, p, 1.0)
    }

    /// [`Gemm::time`] with the tensor rate scaled by `rate_factor`
    /// ([`crate::spec::Strategy::gemm_rate_factor`]: what scaled fp8/fp4 operands cost the kernel).
    pub fn time_at(&self, gpu: &Gpu, p: Precision, rate_factor: f64) -> f64 {
        if self.m == 0 || self.n == 0 || self.k == 0 || self.batch == 0 {
            return 0.0;
        }
        let (m, n, k) = (self.m as f64, self.n as f64, self.k as f64);
        let bytes = p.compute_bytes() * self.batch as f64 * (m * k + k * n + m * n);
        let memory_bound = bytes / gpu.memory_bw;
        let per_sm = gpu.peak(p) * rate_factor / gpu.sms as f64
            * if self.tensor_core_aligned(p) {
                1.0
            } else {
                MISALIGNED_FRACTION
            };
        let sms = gpu.sms as f64;
        let mut best = f64::INFINITY;
        for (tm, tn, eff) in TILES {
            // Tile sizes are powers of two: shifts instead of divisions (this is the hot loop of
            // enumeration); tile counts in f64: exact below 2^53, and no overflow above.
            let tiles =
                ceil_shift(self.m, tm) as f64 * ceil_shift(self.n, tn) as f64 * self.batch as f64;
            let waves = (tiles / sms).ceil();
            let t = waves * 2.0 * (tm * tn) as f64 * self.k as f64 / (per_sm * eff);
            best = best.min(t);
        }
        best.max(memory_bound)
    }

    /// Useful FLOPs over peak time: 1.0 for a perfectly quantized, compute-bound shape.
    pub fn efficiency(&self, gpu: &Gpu, p: Precision) -> f64 {
        let t = self.time(gpu, p);
        if t == 0.0 {
            1.0
        } else {
            self.flops() / (gpu.peak(p) * t)
        }
    }
}

/// Flash attention (one fused kernel per layer) forward time at peak, with wave quantization over
/// query blocks of 128 rows, for `batch_heads` (micro batch x local heads) attention problems.
/// Causal masking skips half the blocks. Backward costs 2.5x forward (FlashAttention-2 paper §3.1:
/// 5 matmuls against 2 in forward).
///
/// # Source
/// Dao 2023, "FlashAttention-2", §3 (work partitioning over query blocks and heads).
pub fn flash_attention_fwd(
    gpu: &Gpu,
    p: Precision,
    s_q: u64,
    s_k: u64,
    head_dim: u64,
    batch_heads: u64,
) -> f64 {
    flash_tiles(gpu, p, s_q, 0.5 * s_k as f64, head_dim, batch_heads)
}

/// [`flash_attention_fwd`] for sliding-window attention over a sequence of `s_k` keys: a
/// block-sparse kernel (FlashAttention's `window_size`, FlexAttention's block masks, 128 x 128
/// blocks) computes every key block holding one unmasked pair, `min(i + 1, ceil(w / 128) + 1)` for
/// query block `i`; the keys a query block reads are that count averaged over the sequence (a window
/// of 128 costs two blocks, not one: the far edge's partial block is computed whole). The counts equal
/// torch 2.11's `create_block_mask` on seq 4096-32768, windows 128-2048 (tests/test_window_attention.py).
pub fn flash_attention_window_fwd(
    gpu: &Gpu,
    p: Precision,
    s_q: u64,
    s_k: u64,
    window: u64,
    head_dim: u64,
    batch_heads: u64,
) -> f64 {
    let block = 128u128;
    let n = (s_k as u128).div_ceil(block).max(1);
    let kb = (window as u128).div_ceil(block) + 1;
    let blocks = if n <= kb {
        n * (n + 1) / 2
    } else {
        kb * (kb + 1) / 2 + (n - kb) * kb
    };
    let keys = blocks as f64 / n as f64 * block as f64;
    flash_tiles(gpu, p, s_q, keys.min(s_k as f64), head_dim, batch_heads)
}

/// The flash kernel's time for query blocks of 128 rows that each read `keys` keys on average.
fn flash_tiles(
    gpu: &Gpu,
    p: Precision,
    s_q: u64,
    keys: f64,
    head_dim: u64,
    batch_heads: u64,
) -> f64 {
    // Attention runs in 16-bit even under fp8 training (TransformerEngine keeps it in bf16).
    let p = if p.low_precision_gemm() {
        Precision::Bf16
    } else {
        p
    };
    let block = 128u64;
    let tiles = s_q.div_ceil(block) * batch_heads;
    let waves = tiles.div_ceil(gpu.sms as u64);
    // The kernels are compiled for head dimensions in steps of 32 (FlashAttention-2's
    // hdim32 ... hdim256 instantiations); another size runs the next one up, padded (80 runs as 96).
    let kernel_dim = head_dim.div_ceil(32) * 32;
    let flops_per_tile = 4.0 * block as f64 * keys * kernel_dim as f64;
    let aligned = head_dim.is_multiple_of(p.tensor_core_alignment());
    let rate = if aligned {
        gpu.peak(p) / gpu.sms as f64
    } else {
        gpu.vector_fp32 / gpu.sms as f64
    };
    waves as f64 * flops_per_tile / rate
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::examples::a100_80;

    #[test]
    fn aligned_large_gemm_is_near_peak() {
        // 108 SMs: 8192 x 13824 output with 256x128 tiles = 32 x 108 tiles = exactly 32 waves.
        let g = Gemm::new(8192, 13824, 8192, 1);
        assert!(g.efficiency(&a100_80(), Precision::Bf16) > 0.99);
    }

    #[test]
    fn tile_quantization_wastes_the_remainder() {
        // n = 1800 (hidden 14400 / TP 8, seeds/001) leaves 8 columns in a last, nearly empty
        // column of tiles; n = 1792 (14336 / 8) is 14 x 128.
        let gpu = a100_80();
        // Many waves (m = 65536) so wave quantization does not mask the tile loss.
        let good = Gemm::new(65536, 1792, 14400, 1).efficiency(&gpu, Precision::Bf16);
        let bad = Gemm::new(65536, 1800, 14400, 1).efficiency(&gpu, Precision::Bf16);
        assert!(bad < good, "{bad} !< {good}");
    }

    #[test]
    fn wave_quantization_idles_sms() {
        // 12 x 9 = 108 tiles of 256x128 fill exactly one wave on 108 SMs; one more column of tiles
        // (11% more work) needs a second wave or smaller tiles, and costs far more than 11%.
        let gpu = a100_80();
        let one_wave = Gemm::new(3072, 1152, 8192, 1).time(&gpu, Precision::Bf16);
        let two_waves = Gemm::new(3072, 1280, 8192, 1).time(&gpu, Precision::Bf16);
        assert!(two_waves > 1.3 * one_wave, "{two_waves} vs {one_wave}");
    }

    #[test]
    fn misaligned_head_dim_runs_at_the_misaligned_rate() {
        // seeds/001 NHEADS table: hidden 13824 with 128 heads gives head_dim 108 (not a multiple of
        // 8), measured 162.7 s against 121-125 s for 64 and 96 heads (lines 410-412). The aligned
        // score GEMM is bound by HBM; the misaligned one by its lower rate.
        let gpu = a100_80();
        let aligned = Gemm::new(2048, 2048, 112, 64).time(&gpu, Precision::Bf16);
        let odd = Gemm::new(2048, 2048, 108, 64).time(&gpu, Precision::Bf16);
        assert!(odd > 3.0 * aligned, "{odd} vs {aligned}");
        // Compute-bound: same tiles, 4100/4096 of the work, at MISALIGNED_FRACTION of the rate.
        let aligned = Gemm::new(4096, 4096, 4096, 1).time(&gpu, Precision::Bf16);
        let odd = Gemm::new(4096, 4096, 4100, 1).time(&gpu, Precision::Bf16);
        let expected = 4100.0 / 4096.0 / MISALIGNED_FRACTION;
        assert!(
            (odd / aligned / expected - 1.0).abs() < 1e-9,
            "{} vs {expected}",
            odd / aligned
        );
    }

    #[test]
    fn unpadded_gpt2_vocabulary_slows_the_lm_head_as_measured() {
        // data/measured/h200_lm_head.csv (H200, 2026-11-26): the LM head's forward, input-gradient
        // and weight-gradient GEMMs, 8192 tokens x hidden 2048, took 15.65 + 12.04 + 11.72 ms for
        // vocabulary 50257 against 2.51 + 2.39 + 2.56 ms for 50304.
        let gpu = crate::spec::examples::h200();
        let three = |v: u64| {
            let g = Gemm::new(8192, v, 2048, 1);
            g.time(&gpu, Precision::Bf16)
                + Gemm::new(8192, 2048, v, 1).time(&gpu, Precision::Bf16)
                + Gemm::new(2048, v, 8192, 1).time(&gpu, Precision::Bf16)
        };
        let measured = (15.65 + 12.04 + 11.72) / (2.51 + 2.39 + 2.56);
        assert!(
            (three(50257) / three(50304) / measured - 1.0).abs() < 0.15,
            "{} vs measured {measured}",
            three(50257) / three(50304)
        );
    }

    #[test]
    fn flash_attention_pads_the_head_dimension_to_its_kernel() {
        // FlashAttention-2 has kernels for head dims 32, 64, ..., 256: 80 runs as 96, 96 as itself.
        let gpu = a100_80();
        let t = |d| flash_attention_fwd(&gpu, Precision::Bf16, 4096, 4096, d, 64);
        assert_eq!(t(80), t(96));
        assert!(t(64) < t(80));
    }
}
