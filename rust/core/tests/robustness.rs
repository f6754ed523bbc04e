//! Hostile inputs through the public entry points: every value at the edges of what validation
//! allows. `cargo test` builds with overflow checks on, so an integer overflow anywhere in the
//! formulas fails this test as a panic. Deterministic (a fixed xorshift seed); `TOPOSCAN_FUZZ=N`
//! runs N times as many cases from a seed of N (a longer, bounded fuzz run).

use toposcan_core::columns;
use toposcan_core::profile::Profile;
use toposcan_core::reduce::{Objective, Reducer};
use toposcan_core::score::{score, Options};
use toposcan_core::space::{enumerate, Space};
use toposcan_core::spec::examples::{a100_80, bloom_176b, llama2_7b};
use toposcan_core::spec::*;

/// (scale, seed) from `TOPOSCAN_FUZZ`.
fn fuzz() -> (u64, u64) {
    let n = std::env::var("TOPOSCAN_FUZZ")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    (n.max(1), n)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in 1..=max, skewed to the edges: 1, small, a power of two, max, or uniform.
    fn edge(&mut self, max: u64) -> u64 {
        match self.next() % 6 {
            0 => 1,
            1 => max,
            2 => 1 + self.next() % 8.min(max),
            3 => 1 << (self.next() % (64 - max.leading_zeros() as u64)),
            _ => 1 + self.next() % max,
        }
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[(self.next() % v.len() as u64) as usize]
    }
}

fn random_model(r: &mut Rng) -> Model {
    let base = if r.next().is_multiple_of(2) {
        bloom_176b()
    } else {
        llama2_7b()
    };
    let heads = r.edge(1 << 16) as u32;
    let head_dim = r.edge(1 << 16).min((1 << 22) / heads as u64).max(1) as u32;
    let kv_heads = if r.next().is_multiple_of(2) { heads } else { 1 };
    let moe = r.next().is_multiple_of(3);
    // Past the limit too (u32::MAX): validation must refuse it, not overflow on it.
    let max_experts = if r.next().is_multiple_of(8) {
        u32::MAX as u64
    } else {
        1 << 16
    };
    let experts = if moe { r.edge(max_experts) as u32 } else { 0 };
    let layers = r.edge(1 << 20) as u32;
    Model {
        layers,
        hidden: heads * head_dim,
        heads,
        kv_heads,
        head_dim,
        ffn_hidden: r.edge(1 << 24) as u32,
        activation: r.pick(&[Activation::Gelu, Activation::Swiglu]),
        vocab: r.edge(1 << 26) as u32,
        seq_len: r.edge(1 << 26) as u32,
        position_rows: r.edge(1 << 26) as u32,
        experts,
        topk: if moe {
            r.edge(experts as u64) as u32
        } else {
            0
        },
        shared_experts: if moe { r.edge(1 << 8) as u32 } else { 0 },
        moe_ffn_hidden: if moe { r.edge(1 << 24) as u32 } else { 0 },
        dense_layers: if moe {
            (r.next() % (layers as u64 + 1)) as u32
        } else {
            0
        },
        ..base
    }
}

fn random_strategy(r: &mut Rng) -> Strategy {
    Strategy {
        dp: r.edge(1 << 24) as u32,
        tp: r.edge(1 << 12) as u32,
        pp: r.edge(1 << 16) as u32,
        vpp: r.edge(1 << 10) as u32,
        cp: r.edge(1 << 12) as u32,
        ep: r.edge(1 << 16) as u32,
        mbs: r.edge(1 << 20) as u32,
        gbs: r.edge(1 << 31) as u32,
        zero_stage: (r.next() % 4) as u8,
        recompute: r.pick(&Recompute::ALL),
        sequence_parallel: r.next().is_multiple_of(2),
        precision: r.pick(&[
            Precision::Fp32,
            Precision::Fp16,
            Precision::Bf16,
            Precision::Fp8,
            Precision::Mxfp8,
            Precision::Nvfp4,
        ]),
        flash_attention: r.next().is_multiple_of(2),
        uneven_stages: r.next().is_multiple_of(2),
        vocab_multiple: [1, 8, 128, 1 << 16][(r.next() % 4) as usize],
        fused_kernels: r.next().is_multiple_of(2),
        flexible_pipeline: r.next().is_multiple_of(2),
        mode: random_mode(r),
    }
}

fn random_mode(r: &mut Rng) -> Mode {
    Mode {
        task: r.pick(&[Task::Pretrain, Task::Sft, Task::Lora]),
        lora_rank: r.edge(1 << 16) as u32,
        offload: r.pick(&[Offload::None, Offload::Optimizer, Offload::OptimizerParams]),
        fsdp_shard: (r.next() % 3) as u32 * r.edge(1 << 24) as u32,
        etp: (r.next() % 2) as u32 * r.edge(1 << 12) as u32,
        schedule: r.pick(&[
            Schedule::Auto,
            Schedule::OneF1B,
            Schedule::Interleaved,
            Schedule::ZeroBubble,
            Schedule::DualPipe,
        ]),
        cp_comm: r.pick(&[CpComm::Ring, CpComm::Ulysses]),
        fp8_recipe: r.pick(&[Fp8Recipe::Delayed, Fp8Recipe::Current, Fp8Recipe::Blockwise]),
    }
}

#[test]
fn score_never_panics_on_edge_values() {
    let (scale, seed) = fuzz();
    let mut r = Rng(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let p = Profile::default();
    let o = Options::default();
    let (mut ok, mut err) = (0, 0);
    for _ in 0..20_000 * scale {
        let m = random_model(&mut r);
        let s = random_strategy(&mut r);
        let c = Cluster {
            gpu: a100_80(),
            nodes: r.edge(1 << 20) as u32,
            gpus_per_node: r.edge(1 << 10) as u32,
        };
        match score(&m, &c, &s, &p, &o) {
            Ok((sc, reject)) => {
                ok += 1;
                // A candidate that breaks no rule has real numbers (a broken rule, e.g. fp8 on a
                // chip without it, may leave a rate at zero and its time undefined).
                if reject.is_none() || reject == Some(toposcan_core::rules::Reject::Oom) {
                    for v in [
                        sc.step_time_s,
                        sc.mem_gb,
                        sc.params,
                        sc.flops_per_iter_megatron,
                        sc.tflops_per_gpu,
                    ] {
                        assert!(!v.is_nan(), "{m:?} {s:?} {c:?}: {sc:?}");
                    }
                }
            }
            Err(_) => err += 1,
        }
    }
    assert!(
        ok > 1_000 && err > 1_000,
        "both outcomes exercised: {ok} scored, {err} refused"
    );
}

#[test]
fn enumerate_never_panics_on_edge_lists() {
    let (scale, seed) = fuzz();
    let mut r = Rng(0xD1B5_4A32_D192_ED03 ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let col = columns::find("step_time_s").unwrap();
    let reducer = Reducer::TopK {
        k: 3,
        objective: Objective {
            column: col,
            better: col.better,
        },
    };
    for _ in 0..200 * scale {
        let m = random_model(&mut r);
        let mut list = |max: u64| {
            (0..1 + r.next() % 3)
                .map(|_| r.edge(max) as u32)
                .collect::<Vec<u32>>()
        };
        let space = Space {
            model: m,
            hidden: list(1 << 22),
            layers: list(1 << 20),
            heads: list(1 << 16),
            params_range: None,
            tp: list(1 << 12),
            cp: list(1 << 12),
            ep: list(1 << 16),
            mbs: list(1 << 20),
            sequence_parallel: vec![false, true],
            recompute: Recompute::ALL.to_vec(),
            pp: list(1 << 16),
            vpp: list(1 << 10),
            gbs: list(1 << 31),
            zero_stage: vec![0, 1, 2, 3],
            precision: Precision::Bf16,
            flash_attention: r.next().is_multiple_of(2),
            uneven_stages: true,
            vocab_multiple: 128,
            fused_kernels: true,
            flexible_pipeline: false,
            mode: random_mode(&mut r),
            cluster: Cluster {
                gpu: a100_80(),
                nodes: r.edge(1 << 20) as u32,
                gpus_per_node: r.edge(1 << 10) as u32,
            },
            profile: Profile::default(),
            options: Options::default(),
            keep_infeasible: r.next().is_multiple_of(4),
        };
        if let Ok((rows, stats)) = enumerate(&space, &reducer, &mut |_, _| true) {
            assert!(
                rows.len() <= 3
                    && stats.pruned.iter().sum::<u64>() + stats.scored == stats.candidates
            );
        }
    }
}
