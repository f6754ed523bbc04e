//! Engine benchmarks: scorer ns/candidate and enumerate-and-reduce throughput on fixed spaces.
//!
//! Run: `cargo bench -p toposcan-core` (optionally `-- 1e8` to include the 10^8 space). Prints a
//! Markdown table; results are recorded in benches/RESULTS.md with the machine they ran on.
//! A hand-rolled harness (median of repeats, `std::time`) keeps the test build free of a
//! benchmarking crate.

use std::hint::black_box;
use std::time::Instant;
use toposcan_core::columns;
use toposcan_core::profile::Profile;
use toposcan_core::reduce::{Objective, Reducer};
use toposcan_core::score::{assemble, memory_peak, score, LayerCost, Options};
use toposcan_core::space::{enumerate, Space};
use toposcan_core::spec::examples::{a100_80 as a100, bloom_176b as bloom, strategy};
use toposcan_core::spec::*;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A shape-search space on 48 nodes of A100-80 whose size is about `target` candidates.
fn space(target: f64) -> Space {
    let heads = vec![16, 32, 64, 96, 128];
    let mut hidden: Vec<u32> = (96..=128).map(|k| k * 128).collect();
    let per_hidden = 41.0 * heads.len() as f64 * 4.0 * 4.0 * 2.0 * 3.0 * 12.0 * 4.0;
    let want = (target / per_hidden).round().max(1.0) as usize;
    while hidden.len() < want {
        let extra: Vec<u32> = hidden.iter().map(|h| h + 64).collect();
        hidden.extend(extra);
    }
    hidden.truncate(want);
    Space {
        model: bloom(),
        hidden,
        layers: (60..=100).collect(),
        heads,
        params_range: None,
        tp: vec![1, 2, 4, 8],
        cp: vec![1],
        ep: vec![1],
        mbs: vec![1, 2, 4, 8],
        sequence_parallel: vec![false, true],
        recompute: vec![Recompute::None, Recompute::Selective, Recompute::Full],
        pp: vec![1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64],
        vpp: vec![1],
        gbs: vec![2048],
        zero_stage: vec![0, 1, 2, 3],
        precision: Precision::Bf16,
        flash_attention: false,
        uneven_stages: true,
        vocab_multiple: 128,
        fused_kernels: true,
        flexible_pipeline: false,
        mode: Mode::default(),
        cluster: Cluster {
            gpu: a100(),
            nodes: 48,
            gpus_per_node: 8,
        },
        profile: Profile::default(),
        options: Options::default(),
        keep_infeasible: false,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let big = args.iter().any(|a| a == "1e8");
    if args.iter().any(|a| a == "profile") {
        // One 10^8 top-100 run (on TOPO_THREADS threads, default 1), for `perf record`.
        let col = columns::find("step_time_s").unwrap();
        let r = Reducer::TopK {
            k: 100,
            objective: Objective {
                column: col,
                better: col.better,
            },
        };
        let n = std::env::var("TOPO_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap();
        let (_, st) = pool.install(|| enumerate(&space(1e8), &r, &mut |_, _| true).unwrap());
        println!(
            "{} candidates, {} scored, {:.3} s",
            st.candidates, st.scored, st.seconds
        );
        return;
    }
    let c = Cluster {
        gpu: a100(),
        nodes: 48,
        gpus_per_node: 8,
    };
    let s = strategy(8, 4, 12, 2, 2048);
    let p = Profile::default();
    let o = Options::default();
    let m = bloom();

    println!("| benchmark | result |\n|---|---:|");
    // Full scorer, one candidate from scratch (validation + LayerCost + assemble).
    let n = 200_000;
    let t = median(
        (0..5)
            .map(|_| {
                let t0 = Instant::now();
                for i in 0..n {
                    let s = Strategy {
                        mbs: 1 + (i % 4) as u32,
                        ..s
                    };
                    black_box(score(black_box(&m), &c, &s, &p, &o).unwrap());
                }
                t0.elapsed().as_secs_f64() / n as f64
            })
            .collect(),
    );
    println!(
        "| score(): one candidate from scratch | {:.0} ns |",
        t * 1e9
    );
    // Assembly with a cached LayerCost: what enumeration pays per candidate.
    let lc = LayerCost::new(&m, &c, &s);
    let n = 2_000_000;
    let t = median(
        (0..5)
            .map(|_| {
                let t0 = Instant::now();
                for i in 0..n {
                    let s = Strategy {
                        zero_stage: (i % 4) as u8,
                        ..s
                    };
                    let mem = memory_peak(&m, &c, &s, &p, &o);
                    black_box(assemble(&lc, black_box(&m), &c, &s, &p, &o, mem));
                }
                t0.elapsed().as_secs_f64() / n as f64
            })
            .collect(),
    );
    println!(
        "| memory_peak + assemble (cached LayerCost) | {:.0} ns |",
        t * 1e9
    );

    let col = columns::find("step_time_s").unwrap();
    let obj = Objective {
        column: col,
        better: col.better,
    };
    let memc = columns::find("mem_gb").unwrap();
    let mem_obj = Objective {
        column: memc,
        better: memc.better,
    };
    let mut sizes = vec![1e6, 1e7];
    if big {
        sizes.push(1e8);
    }
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for &size in &sizes {
            let sp = space(size);
            for (name, r) in [
                (
                    "top-100",
                    Reducer::TopK {
                        k: 100,
                        objective: obj,
                    },
                ),
                ("pareto", Reducer::Pareto { a: obj, b: mem_obj }),
            ] {
                // Median of three runs (by wall time).
                let mut runs: Vec<_> = (0..3)
                    .map(|_| pool.install(|| enumerate(&sp, &r, &mut |_, _| true).unwrap()))
                    .collect();
                runs.sort_by(|a, b| a.1.seconds.total_cmp(&b.1.seconds));
                let (rows, st) = runs.swap_remove(1);
                println!(
                    "| enumerate {name}, {} candidates, {threads} thread(s) | {:.3} s: {:.1} M candidates/s, {:.2} M scored/s ({} scored, {} rows) |",
                    st.candidates,
                    st.seconds,
                    st.candidates as f64 / st.seconds / 1e6,
                    st.scored as f64 / st.seconds / 1e6,
                    st.scored,
                    rows.len()
                );
            }
        }
    }
}
