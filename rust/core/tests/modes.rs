//! Training modes (issue 16): task, offload, HSDP, expert tensor parallelism, pipeline schedules,
//! context-parallel exchange, FP8 recipes, and the model features they time (windows, MTP). Each test
//! checks a number against its source, or a direction the mode must move a column in.

use toposcan_core::profile::Profile;
use toposcan_core::rules::Reject;
use toposcan_core::score::{score, Options, Score};
use toposcan_core::spec::examples::{a100_80, h200, llama2_7b, strategy};
use toposcan_core::spec::*;

fn run(m: &Model, c: &Cluster, s: &Strategy) -> (Score, Option<Reject>) {
    score(m, c, s, &Profile::default(), &Options::default()).unwrap()
}

fn h200s(nodes: u32) -> Cluster {
    Cluster {
        gpu: h200(),
        nodes,
        gpus_per_node: 8,
    }
}

fn with(s: Strategy, f: impl FnOnce(&mut Mode)) -> Strategy {
    let mut mode = s.mode;
    f(&mut mode);
    Strategy { mode, ..s }
}

fn moe() -> Model {
    // A Mixtral-like model on Llama-2-7B's attention: 8 experts, top 2.
    Model {
        experts: 8,
        topk: 2,
        moe_ffn_hidden: 11008,
        ..llama2_7b()
    }
}

#[test]
fn pipeline_schedules_shrink_the_bubble_as_published() {
    // 1F1B's fill and drain (p-1)(F+B); ZB-H1 (Qi et al. 2024) (p-1)(F+B-W) = a third of it with
    // F = B = W; DualPipe (DeepSeek-V3 report, Table 2) (p/2-1)(F&B+B-3W) = (p/2-1) 2/3 of a stage.
    let m = Model {
        layers: 32,
        ..llama2_7b()
    };
    let c = h200s(4);
    let base = Strategy {
        recompute: Recompute::Selective,
        flash_attention: true,
        ..strategy(4, 1, 8, 1, 256)
    };
    let bubble = |sch: Schedule| run(&m, &c, &with(base, |x| x.schedule = sch)).0.bubble_s;
    let one = bubble(Schedule::OneF1B);
    assert!(one > 0.0);
    assert!(
        (bubble(Schedule::ZeroBubble) / one - 1.0 / 3.0).abs() < 0.02,
        "{}",
        bubble(Schedule::ZeroBubble) / one
    );
    let dual = (8.0 / 2.0 - 1.0) * (2.0 / 3.0) / 7.0;
    assert!(
        (bubble(Schedule::DualPipe) / one - dual).abs() < 0.02,
        "{}",
        bubble(Schedule::DualPipe) / one
    );
    // DualPipe holds two stages' parameters: twice the weights and optimizer state.
    let w = |sch: Schedule| run(&m, &c, &with(base, |x| x.schedule = sch)).0.mem.weights;
    assert!(
        (w(Schedule::DualPipe) / w(Schedule::OneF1B) - 2.0).abs() < 1e-3,
        "{}",
        w(Schedule::DualPipe) / w(Schedule::OneF1B)
    );
    // Schedules that do not interleave refuse vpp > 1; DualPipe an odd pp.
    let vpp2 = Strategy { vpp: 2, ..base };
    assert_eq!(
        run(&m, &c, &with(vpp2, |x| x.schedule = Schedule::ZeroBubble)).1,
        Some(Reject::ScheduleMismatch)
    );
    assert_eq!(
        run(&m, &c, &with(base, |x| x.schedule = Schedule::Interleaved)).1,
        Some(Reject::ScheduleMismatch)
    );
    let odd = Strategy {
        pp: 4,
        dp: 8,
        ..strategy(8, 1, 4, 1, 264)
    };
    assert_eq!(
        run(&m, &c, &with(odd, |x| x.schedule = Schedule::DualPipe)).1,
        Some(Reject::DualPipeUneven)
    );
}

#[test]
fn hsdp_shards_within_groups_and_reduces_across_them() {
    // HSDP (fsdp_shard 8 of dp 64): ZeRO-3 states over 8 ranks, not 64, and a per-step all-reduce
    // of the shards across the 8 replicas that full sharding does not have.
    let m = llama2_7b();
    let c = h200s(8);
    let full = Strategy {
        zero_stage: 3,
        flash_attention: true,
        ..strategy(64, 1, 1, 1, 512)
    };
    let hsdp = with(full, |x| x.fsdp_shard = 8);
    let (a, b) = (run(&m, &c, &full).0, run(&m, &c, &hsdp).0);
    assert!((b.mem.optimizer / a.mem.optimizer - 8.0).abs() < 1e-9);
    assert!((b.mem.weights / a.mem.weights - 8.0).abs() < 1e-9);
    assert_eq!(a.dp_comm_s, 0.0);
    assert!(b.dp_comm_s > 0.0);
    // Within a node the gathers run on NVLink: HSDP's per-layer traffic is cheaper.
    assert!(b.fsdp_comm_s <= a.fsdp_comm_s);
    assert_eq!(
        run(&m, &c, &with(full, |x| x.fsdp_shard = 7)).1,
        Some(Reject::FsdpShardNotDivisor)
    );
}

#[test]
fn moe_parallel_folding_lets_ep_exceed_dp() {
    // Megatron-Bridge's Qwen3-235B on 256 H100s: tp 2, pp 8, ep 32 (dp 16): the expert grid
    // ep x etp = 32 x 1 covers tp x dp = 32 GPUs only with expert tensor parallelism 1.
    let m = Model {
        experts: 128,
        topk: 8,
        moe_ffn_hidden: 1536,
        ..llama2_7b()
    };
    let c = Cluster {
        gpu: h200(),
        nodes: 32,
        gpus_per_node: 8,
    };
    let s = Strategy {
        ep: 32,
        flash_attention: true,
        sequence_parallel: true,
        ..strategy(16, 2, 8, 1, 2048)
    };
    assert_eq!(
        run(&m, &c, &s).1.filter(|r| *r != Reject::Oom),
        Some(Reject::EpNotDivisibleIntoDp)
    );
    let folded = with(s, |x| x.etp = 1);
    let (sc, rej) = run(&m, &c, &folded);
    assert!(rej.is_none() || rej == Some(Reject::Oom), "{rej:?}");
    // Experts are split over ep*etp = 32 ranks (not ep*tp = 64): more expert weights per rank.
    let even = Strategy { ep: 16, ..s };
    assert!(sc.mem.weights > run(&m, &c, &even).0.mem.weights * 0.9);
}

#[test]
fn expert_all_to_all_has_its_own_column() {
    // At tp 1 there is no tensor-parallel traffic: the all-to-all shows as ep_comm_s, not tp_comm_s.
    let c = Cluster {
        gpu: a100_80(),
        nodes: 2,
        gpus_per_node: 8,
    };
    let s = Strategy {
        ep: 8,
        flash_attention: true,
        recompute: Recompute::None,
        ..strategy(16, 1, 1, 1, 64)
    };
    let sc = run(&moe(), &c, &s).0;
    assert_eq!(sc.tp_comm_s, 0.0);
    assert!(sc.ep_comm_s > 0.0);
    // DualPipe hides the all-to-all behind the other direction's compute (DeepSeek-V3 §3.2.1).
    let pp = Strategy {
        ep: 4,
        pp: 2,
        dp: 8,
        gbs: 64,
        ..s
    };
    let plain = run(&moe(), &c, &pp).0.ep_comm_s;
    let dual = run(&moe(), &c, &with(pp, |x| x.schedule = Schedule::DualPipe))
        .0
        .ep_comm_s;
    assert!(plain > 0.0 && dual < plain, "{dual} vs {plain}");
}

#[test]
fn ulysses_moves_less_than_the_ring_at_high_cp() {
    // Jacobs et al. 2023 (DeepSpeed-Ulysses §3): all-to-all volume per GPU falls as 1/cp, the ring's
    // K/V passes grow with cp - 1. Multi-head attention at cp 8: the ring moves 2 x 7 K/V blocks
    // forward, Ulysses 7/8 of Q, K, V and the output once.
    let m = Model {
        seq_len: 32768,
        ..llama2_7b()
    };
    let c = h200s(1);
    let ring = Strategy {
        cp: 8,
        flash_attention: true,
        ..strategy(1, 1, 1, 1, 8)
    };
    let uly = with(ring, |x| x.cp_comm = CpComm::Ulysses);
    assert!(run(&m, &c, &uly).0.tp_comm_s < 0.5 * run(&m, &c, &ring).0.tp_comm_s);
    // Ulysses splits heads: 32 heads over tp 8 leave 4, not a multiple of cp 8.
    let c64 = h200s(8);
    let bad = with(
        Strategy {
            tp: 8,
            cp: 8,
            sequence_parallel: true,
            ..strategy(1, 8, 1, 1, 8)
        },
        |x| x.cp_comm = CpComm::Ulysses,
    );
    assert_eq!(run(&m, &c64, &bad).1, Some(Reject::UlyssesHeads));
}

#[test]
fn optimizer_offload_matches_the_measured_round_trip() {
    // data/measured/h200_host.csv `roundtrip`: one ZeRO-Offload step of 2e8 parameters on our H200
    // (PCIe 5.0 x16, 63 GB/s nominal; host copy/triad with write-allocate 93.6-98.5 GB/s on 16
    // threads) took 104.7 ms end to end, phases in sequence.
    let gpu = Gpu {
        host_link_bw: 63e9,
        host_memory_bw: 98.5e9 / 0.8,
        ..h200()
    };
    let c = Cluster {
        gpu,
        nodes: 1,
        gpus_per_node: 1,
    };
    // A dense model of about 2e8 parameters on one GPU, so the shard is the whole model.
    let m = Model {
        layers: 12,
        hidden: 1152,
        heads: 9,
        kv_heads: 9,
        ffn_hidden: 4608,
        vocab: 32000,
        ..llama2_7b()
    };
    let s = Strategy {
        zero_stage: 1,
        flash_attention: true,
        ..strategy(1, 1, 1, 1, 1)
    };
    let off = with(s, |x| x.offload = Offload::Optimizer);
    let (a, b) = (run(&m, &c, &s).0, run(&m, &c, &off).0);
    let measured_per_param = 0.1047 / 2e8;
    let predicted_per_param = b.optimizer_s / b.params;
    assert!(
        (predicted_per_param / measured_per_param - 1.0).abs() < 0.15,
        "{predicted_per_param} vs {measured_per_param}"
    );
    // The states leave the GPU; the weights stay unless they are offloaded too (ZeRO-3 only).
    assert_eq!(b.mem.optimizer, 0.0);
    assert!(a.mem.optimizer > 0.0 && b.mem.weights == a.mem.weights);
    let params = with(s, |x| x.offload = Offload::OptimizerParams);
    assert_eq!(run(&m, &c, &params).1, Some(Reject::OffloadUnsupported));
    let z3 = Strategy {
        zero_stage: 3,
        ..params
    };
    assert_eq!(run(&m, &c, &z3).0.mem.weights, 0.0);
}

#[test]
fn lora_trains_adapters_only() {
    // Hu et al. 2021: frozen base weights keep no gradients or optimizer state, skip their
    // weight-gradient GEMMs; the adapters (rank 16, all linear layers) train.
    let m = llama2_7b();
    let c = h200s(1);
    let full = Strategy {
        zero_stage: 0,
        flash_attention: true,
        ..strategy(8, 1, 1, 1, 64)
    };
    let lora = with(full, |x| x.task = Task::Lora);
    let (a, b) = (run(&m, &c, &full).0, run(&m, &c, &lora).0);
    let adapters = toposcan_core::formulas::params::lora_total(&m, 16, false);
    // Megatron-Core's fused adapters on Llama-2-7B at rank 16: r (h + 3h) + r (h + h) + r (h + 2f) + r (f + h) a layer.
    let (h, f) = (4096.0, 11008.0);
    assert_eq!(
        adapters,
        32.0 * 16.0 * (4.0 * h + 2.0 * h + h + 2.0 * f + f + h)
    );
    // fp32 main_grad (4 B, the default profile) and Adam's 12 B for the adapters alone.
    assert!(
        (b.mem.optimizer - adapters * 12.0).abs() < 1.0,
        "{} vs {}",
        b.mem.optimizer,
        adapters * 12.0
    );
    assert!(b.mem.gradients < 0.01 * a.mem.gradients);
    assert!(
        b.step_time_s < a.step_time_s && b.compute_s > 0.55 * a.compute_s,
        "{} {} {} {}",
        b.step_time_s,
        a.step_time_s,
        b.compute_s,
        a.compute_s
    );
    // SFT is full training: the same cost per token.
    assert_eq!(
        run(&m, &c, &with(full, |x| x.task = Task::Sft))
            .0
            .step_time_s,
        a.step_time_s
    );
}

#[test]
fn fp8_recipes_follow_the_measured_gemm_rates() {
    // data/measured/h200_gemm_fp8.csv medians over 240 layer shapes: per-tensor 1253.5, block-scaled
    // 1083 TFLOP/s: blockwise GEMMs are slower than delayed scaling's.
    let m = llama2_7b();
    let c = h200s(1);
    let s = Strategy {
        precision: Precision::Fp8,
        flash_attention: true,
        ..strategy(8, 1, 1, 1, 64)
    };
    let t = |r: Fp8Recipe| run(&m, &c, &with(s, |x| x.fp8_recipe = r)).0.compute_s;
    assert!(
        t(Fp8Recipe::Delayed) < t(Fp8Recipe::Current)
            && t(Fp8Recipe::Current) < t(Fp8Recipe::Blockwise)
    );
}

#[test]
fn windowed_layers_and_mtp_are_timed() {
    // GPT-OSS alternates 128-token windows with full attention: at 32k tokens half the layers'
    // attention is nearly free. DeepSeek-V3's MTP module is one more layer, projection and head.
    let c = h200s(1);
    let s = Strategy {
        flash_attention: true,
        ..strategy(8, 1, 1, 1, 8)
    };
    let full = Model {
        seq_len: 32768,
        ..llama2_7b()
    };
    let windowed = Model {
        sliding_window: 128,
        full_attention_every: 2,
        ..full
    };
    let (a, b) = (run(&full, &c, &s).0, run(&windowed, &c, &s).0);
    assert!(b.compute_s < a.compute_s);
    assert_eq!(a.flops_per_iter_6n, b.flops_per_iter_6n);
    let mtp = Model {
        mtp_layers: 1,
        ..llama2_7b()
    };
    let (x, y) = (run(&llama2_7b(), &c, &s).0, run(&mtp, &c, &s).0);
    let layer = x.compute_s / 32.0;
    assert!(
        y.compute_s - x.compute_s > layer && y.compute_s - x.compute_s < 3.0 * layer,
        "{} {}",
        y.compute_s - x.compute_s,
        layer
    );
}
