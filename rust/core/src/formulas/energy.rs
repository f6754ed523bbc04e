//! Energy and GPU-hours.
//!
//! # Formula
//! `J/token = P * t_step * GPUs / tokens_per_step`, with `P` the board power: measured GPU power
//! under dense training sits close to TDP. GPU-hours for `T` tokens: `T / (tokens/s) * GPUs / 3600`.
//!
//! # Source
//! seeds/003 (TorchCAP benchmark): its measured J/token equals board power x runtime / tokens
//! (230 W RTX A5000, 300 W RTX A6000), checked in tests/test_validate.py.

pub fn joules_per_token(power_w: f64, step_s: f64, gpus: f64, tokens_per_step: f64) -> f64 {
    power_w * step_s * gpus / tokens_per_step
}

pub fn gpu_hours(train_tokens: f64, tokens_per_s: f64, gpus: f64) -> f64 {
    train_tokens / tokens_per_s * gpus / 3600.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn a5000_opt_1_3b_row() {
        // seeds/003 single GPU, opt-1.3b on RTX A5000: 693.77 ms for 16 x 1024 tokens, 0.010 J/token.
        let j = super::joules_per_token(230.0, 0.69377, 1.0, 16384.0);
        assert!((j - 0.010).abs() < 0.0005, "{j}");
    }
}
