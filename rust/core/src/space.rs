//! The search space and its enumeration.
//!
//! A space is a Cartesian product of value lists: model shape (hidden, layers, heads) and
//! strategy (tp, cp, ep, mbs, sequence parallel, recompute, pp, vpp, gbs, ZeRO stage); dp follows
//! from the GPU count. `candidates` counts that whole product, as a naive loop would visit it.
//! Enumeration walks it lazily in blocks of one (shape, tp) each, in parallel with rayon, pruning
//! as early as the rules allow (a shape or a tp that breaks a rule removes its whole block
//! uncounted by the scorer) and memory before time; per block it builds the [`LayerCost`] once per
//! (cp, ep, mbs, sp, recompute) and assembles the rest per candidate. Blocks are reduced locally
//! and merged in block order, so results do not depend on the thread count.

use crate::columns::Row;
use crate::error::{Result, TopoError};
use crate::formulas::memory;
use crate::formulas::params;
use crate::profile::Profile;
use crate::reduce::{Acc, Reducer, SharedBound};
use crate::rules::{self, Reject};
use crate::score::{
    assemble, memory_peak_parts, stage_activations, stage_params, LayerBase, LayerCost, Options,
};
use crate::spec::{Cluster, Mode, Model, Precision, Recompute, Strategy};
use rayon::prelude::*;
use std::collections::HashMap;
use std::time::Instant;

/// Every list must be non-empty; single values are one-element lists.
#[derive(Debug, Clone)]
pub struct Space {
    /// The model whose other fields (vocab, activation, ...) every shape keeps.
    pub model: Model,
    pub hidden: Vec<u32>,
    pub layers: Vec<u32>,
    pub heads: Vec<u32>,
    /// Keep only shapes whose total parameters fall in `[lo, hi]`.
    pub params_range: Option<(f64, f64)>,
    pub tp: Vec<u32>,
    pub cp: Vec<u32>,
    pub ep: Vec<u32>,
    pub mbs: Vec<u32>,
    pub sequence_parallel: Vec<bool>,
    pub recompute: Vec<Recompute>,
    pub pp: Vec<u32>,
    pub vpp: Vec<u32>,
    pub gbs: Vec<u32>,
    pub zero_stage: Vec<u8>,
    pub precision: Precision,
    pub flash_attention: bool,
    pub uneven_stages: bool,
    /// See [`Strategy::vocab_multiple`].
    pub vocab_multiple: u32,
    /// See [`Strategy::fused_kernels`].
    pub fused_kernels: bool,
    pub flexible_pipeline: bool,
    /// Training-mode settings every candidate shares (task, offload, HSDP, etp, schedule, ...).
    pub mode: Mode,
    pub cluster: Cluster,
    pub profile: Profile,
    pub options: Options,
    /// Keep rows that break a rule or do not fit (scored anyway), for `check`'s neighbours and tests.
    pub keep_infeasible: bool,
}

/// What an enumeration did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Size of the whole space (the Cartesian product).
    pub candidates: u64,
    /// Candidates that reached the full cost model.
    pub scored: u64,
    /// Candidates removed, per reason (indexed like [`Reject::ALL`]).
    pub pruned: Vec<u64>,
    pub seconds: f64,
    /// Stopped early (cancelled); the rows are what was found so far.
    pub partial: bool,
    /// `All` reducer hit its cap.
    pub truncated: bool,
    /// Candidates visited (equals `candidates` unless partial).
    pub visited: u64,
}

const LIST_MAX: usize = 1 << 20;

fn check_list<T>(name: &str, v: &[T]) -> Result<()> {
    if v.is_empty() {
        return Err(TopoError::new(
            "invalid_value",
            name,
            format!("`{name}` needs at least one value"),
        ));
    }
    if v.len() > LIST_MAX {
        return Err(TopoError::too_large(name, v.len(), LIST_MAX));
    }
    Ok(())
}

impl Space {
    fn dims(&self) -> [u64; 13] {
        [
            self.hidden.len() as u64,
            self.layers.len() as u64,
            self.heads.len() as u64,
            self.tp.len() as u64,
            self.cp.len() as u64,
            self.ep.len() as u64,
            self.mbs.len() as u64,
            self.sequence_parallel.len() as u64,
            self.recompute.len() as u64,
            self.pp.len() as u64,
            self.vpp.len() as u64,
            self.gbs.len() as u64,
            self.zero_stage.len() as u64,
        ]
    }

    /// Size of the Cartesian product, or an error when it does not fit in 64 bits.
    pub fn size(&self) -> Result<u64> {
        self.dims()
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                TopoError::new(
                    "space_too_large",
                    "space",
                    "the search space has more than 2^64 candidates; narrow a range",
                )
            })
    }

    pub fn validate(&self) -> Result<()> {
        check_list("hidden", &self.hidden)?;
        check_list("layers", &self.layers)?;
        check_list("heads", &self.heads)?;
        check_list("tp", &self.tp)?;
        check_list("cp", &self.cp)?;
        check_list("ep", &self.ep)?;
        check_list("mbs", &self.mbs)?;
        check_list("sequence_parallel", &self.sequence_parallel)?;
        check_list("recompute", &self.recompute)?;
        check_list("pp", &self.pp)?;
        check_list("vpp", &self.vpp)?;
        check_list("gbs", &self.gbs)?;
        check_list("zero_stage", &self.zero_stage)?;
        for (name, v) in [
            ("tp", &self.tp),
            ("cp", &self.cp),
            ("ep", &self.ep),
            ("mbs", &self.mbs),
            ("pp", &self.pp),
            ("vpp", &self.vpp),
            ("gbs", &self.gbs),
            ("hidden", &self.hidden),
            ("layers", &self.layers),
            ("heads", &self.heads),
        ] {
            if let Some(bad) = v.iter().find(|&&x| x == 0) {
                return Err(TopoError::too_small(name, bad, 1));
            }
        }
        if let Some(z) = self.zero_stage.iter().find(|&&z| z > 3) {
            return Err(TopoError::new(
                "invalid_value",
                "zero_stage",
                format!("`zero_stage` must be one of {{0, 1, 2, 3}}, got {z}"),
            ));
        }
        self.cluster.validate()?;
        self.profile.validate()?;
        self.size()?;
        Ok(())
    }

    /// The model for one (hidden, layers, heads): the KV-group ratio and the FFN/hidden ratio of the
    /// base model kept (FFN rounded to a multiple of 128 unless the base is exactly 4x). The head
    /// dim is hidden/heads where the base ties them (GPT, Llama), and the base's own where it does
    /// not (MLA, Qwen3's 128-wide heads): the same rule as `toposcan.spec.model_dict`, so a shape
    /// scores the same here and in `evaluate`. `Err` when a tied head dim does not divide.
    pub fn shape(
        &self,
        hidden: u32,
        layers: u32,
        heads: u32,
    ) -> std::result::Result<Model, Reject> {
        let b = &self.model;
        if hidden == b.hidden && layers == b.layers && heads == b.heads {
            return Ok(*b);
        }
        // hidden % heads for every non-MLA model, as `rules::check_shape` (Megatron asserts it).
        if b.mla.is_none() && !hidden.is_multiple_of(heads) {
            return Err(Reject::HiddenNotDivisibleByHeads);
        }
        let tied = b.mla.is_none() && b.head_dim as u64 * b.heads as u64 == b.hidden as u64;
        let head_dim = if tied { hidden / heads } else { b.head_dim };
        let group = (b.heads / b.kv_heads.max(1)).max(1);
        let kv_heads = if heads.is_multiple_of(group) {
            heads / group
        } else {
            heads
        };
        let ffn = if b.ffn_hidden == 4 * b.hidden {
            4 * hidden
        } else if hidden == b.hidden {
            b.ffn_hidden
        } else {
            let f = b.ffn_hidden as f64 * hidden as f64 / b.hidden as f64;
            // Saturates far above the FFN limit, which validation then reports.
            (f / 128.0).round().clamp(1.0, (u32::MAX / 128) as f64) as u32 * 128
        };
        Ok(Model {
            hidden,
            layers,
            heads,
            kv_heads,
            head_dim,
            ffn_hidden: ffn,
            ..*b
        })
    }
}

struct BlockOut {
    acc: Acc,
    scored: u64,
    pruned: Vec<u64>,
    /// Layer timings per (heads, tp) and (cp, ep, mbs), kept while one hidden size is walked:
    /// blocks run layers outside heads and tp, and the timings do not depend on the number of
    /// layers. Only timings some candidate needed are stored.
    bases: HashMap<(u32, u32), LayerBases>,
    bases_hidden: u32,
}

/// Layer timings of one (heads, tp), per (cp, ep, mbs).
type LayerBases = HashMap<(u32, u32, u32), LayerBase>;

impl BlockOut {
    fn new(reducer: &Reducer) -> Self {
        BlockOut {
            acc: reducer.empty(),
            scored: 0,
            pruned: vec![0; Reject::ALL.len()],
            bases: HashMap::new(),
            bases_hidden: 0,
        }
    }

    /// Merges the result of later blocks.
    fn absorb(&mut self, o: BlockOut) {
        self.acc.merge(o.acc);
        self.scored += o.scored;
        for (t, x) in self.pruned.iter_mut().zip(o.pruned) {
            *t += x;
        }
    }
}

/// Enumerates, scores and reduces the space. `progress(visited, total)` is called between
/// chunks; returning `false` stops early and the result is marked partial.
pub fn enumerate(
    space: &Space,
    reducer: &Reducer,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<(Vec<Row>, Stats)> {
    space.validate()?;
    let start = Instant::now();
    let total = space.size()?;
    let d = space.dims();
    let per_block: u64 = d[4..].iter().product();
    let n_tp = d[3];
    let n_blocks = d[0] * d[1] * d[2] * n_tp;
    let mut acc = reducer.empty();
    let mut stats = Stats {
        candidates: total,
        pruned: vec![0; Reject::ALL.len()],
        ..Default::default()
    };
    let chunk = (n_blocks / 256).clamp(16, 4096);
    let bound = SharedBound::default();
    let mut b0 = 0u64;
    while b0 < n_blocks {
        let b1 = (b0 + chunk).min(n_blocks);
        // Each rayon split folds its blocks into one accumulator; splits merge in block order.
        let out = (b0..b1)
            .into_par_iter()
            .fold(
                || BlockOut::new(reducer),
                |mut o, b| {
                    run_block(space, b, per_block, &bound, &mut o);
                    o
                },
            )
            .reduce(
                || BlockOut::new(reducer),
                |mut a, b| {
                    a.absorb(b);
                    a
                },
            );
        acc.merge(out.acc);
        stats.scored += out.scored;
        for (t, x) in stats.pruned.iter_mut().zip(out.pruned) {
            *t += x;
        }
        stats.visited = b1 * per_block;
        b0 = b1;
        if b0 < n_blocks && !progress(stats.visited, total) {
            stats.partial = true;
            break;
        }
    }
    stats.truncated = acc.truncated();
    stats.seconds = start.elapsed().as_secs_f64();
    Ok((acc.finish(), stats))
}

fn run_block(space: &Space, block: u64, per_block: u64, bound: &SharedBound, out: &mut BlockOut) {
    let d = space.dims();
    let ti = (block % d[3]) as usize;
    let shape_i = block / d[3];
    let ai = (shape_i % d[2]) as usize;
    let li = ((shape_i / d[2]) % d[1]) as usize;
    let hi = (shape_i / (d[2] * d[1])) as usize;
    let prune_all = |out: &mut BlockOut, r: Reject, n: u64| out.pruned[r as usize] += n;
    let out = &mut *out;

    let m = match space.shape(space.hidden[hi], space.layers[li], space.heads[ai]) {
        Ok(m) => m,
        Err(r) => {
            prune_all(out, r, per_block);
            return;
        }
    };
    if let Some(r) = rules::check_kernels(&m, space.flash_attention) {
        prune_all(out, r, per_block);
        return;
    }
    if m.validate().is_err() {
        // hidden % heads is checked above: what validation refuses here is a shape too large to
        // represent (FFN or head size over its limit, more than 2^53 parameters): out of any budget.
        prune_all(out, Reject::ParamsOutOfBudget, per_block);
        return;
    }
    if let Some((lo, hi_p)) = space.params_range {
        let p = params::total(&m) as f64;
        if p < lo || p > hi_p {
            prune_all(out, Reject::ParamsOutOfBudget, per_block);
            return;
        }
    }
    let c = &space.cluster;
    let counts = params::LayerCounts::new(&m);
    let gpus = c.gpus();
    let tp = space.tp[ti];
    // Block-level rules, in the precedence of `rules::check_strategy`.
    let tp_reject = if !gpus.is_multiple_of(tp as u64) {
        Some(Reject::GpusMismatch)
    } else if !space.options.allow_cross_node_tp && tp > c.domain() {
        Some(Reject::TpExceedsNode)
    } else if m.heads % tp != 0 {
        Some(Reject::HeadsNotDivisibleByTp)
    } else if m.kv_heads % tp != 0 {
        Some(Reject::KvHeadsNotDivisibleByTp)
    } else if m.ffn_hidden % tp != 0
        || (m.is_moe()
            && m.moe_ffn_hidden
                % if space.mode.etp == 0 {
                    tp
                } else {
                    space.mode.etp
                }
                != 0)
    {
        Some(Reject::FfnNotDivisibleByTp)
    } else {
        None
    };
    if let Some(r) = tp_reject {
        if !space.keep_infeasible {
            prune_all(out, r, per_block);
            return;
        }
    }
    let (p_total, p_active) = (params::total(&m) as f64, params::active(&m) as f64);
    if out.bases_hidden != m.hidden {
        out.bases.clear();
        out.bases_hidden = m.hidden;
    }
    let mut bases = out.bases.remove(&(m.heads, tp)).unwrap_or_default();
    // Parameters per rank of the first and last stage, per (ep, pp).
    let stage_p: Vec<Vec<(f64, f64)>> = space
        .ep
        .iter()
        .map(|&ep| {
            let expert_split = ep
                * if space.mode.etp == 0 {
                    tp.min(m.heads)
                } else {
                    space.mode.etp
                };
            space
                .pp
                .iter()
                .map(|&pp| {
                    stage_params(
                        &counts,
                        &m,
                        tp.min(m.heads),
                        expert_split,
                        pp.min(m.layers),
                        space.vocab_multiple,
                    )
                })
                .collect()
        })
        .collect();
    let inner_after_cp: u64 = d[5..].iter().product();
    let inner_after_pp: u64 = d[10..].iter().product();
    let mut index = block * per_block;
    for &cp in &space.cp {
        if !gpus.is_multiple_of(tp as u64 * cp as u64) && !space.keep_infeasible {
            prune_all(out, Reject::GpusMismatch, inner_after_cp);
            index += inner_after_cp;
            continue;
        }
        for (ei, &ep) in space.ep.iter().enumerate() {
            for &mbs in &space.mbs {
                for &sp in &space.sequence_parallel {
                    for &rc in &space.recompute {
                        let proto = Strategy {
                            dp: 1,
                            tp,
                            pp: 1,
                            vpp: 1,
                            cp,
                            ep,
                            mbs,
                            gbs: 1,
                            zero_stage: 0,
                            recompute: rc,
                            sequence_parallel: sp,
                            precision: space.precision,
                            flash_attention: space.flash_attention,
                            uneven_stages: space.uneven_stages,
                            vocab_multiple: space.vocab_multiple,
                            fused_kernels: space.fused_kernels,
                            flexible_pipeline: space.flexible_pipeline,
                            mode: space.mode,
                        };
                        let mut lc: Option<LayerCost> = None;
                        // Per-layer activations depend on (tp, cp, mbs, sp, recompute) only.
                        let safe_proto = Strategy {
                            tp: tp.min(m.heads),
                            ..proto
                        };
                        let acts = memory::layer_activations(&m, &safe_proto);
                        for (pi, &pp) in space.pp.iter().enumerate() {
                            let denom = tp as u64 * cp as u64 * pp as u64;
                            if !space.keep_infeasible
                                && (!gpus.is_multiple_of(denom) || m.layers < pp)
                            {
                                let r = if !gpus.is_multiple_of(denom) {
                                    Reject::GpusMismatch
                                } else {
                                    Reject::TooFewLayersForPp
                                };
                                prune_all(out, r, inner_after_pp);
                                index += inner_after_pp;
                                continue;
                            }
                            let dp = (gpus / denom).max(1) as u32;
                            let params = stage_p[ei][pi];
                            for &vpp in &space.vpp {
                                for &gbs in &space.gbs {
                                    // Only the ZeRO-with-pipeline rule depends on the ZeRO stage: check the
                                    // rest once for all stages.
                                    let s0 = Strategy {
                                        dp,
                                        pp,
                                        vpp,
                                        gbs,
                                        zero_stage: 0,
                                        ..proto
                                    };
                                    // The GPU count and tp's rules hold here unless infeasible
                                    // rows are kept (the block-level checks above).
                                    let rule = if space.keep_infeasible {
                                        rules::check_strategy(
                                            &m,
                                            &s0,
                                            c,
                                            space.options.allow_cross_node_tp,
                                        )
                                    } else {
                                        rules::check_layout(&m, &s0, c)
                                    };
                                    if let Some(r) = rule {
                                        if !space.keep_infeasible {
                                            let nz = space.zero_stage.len() as u64;
                                            out.pruned[r as usize] += nz;
                                            index += nz;
                                            continue;
                                        }
                                    }
                                    // Activations and logits do not depend on the ZeRO stage either.
                                    let safe0 = Strategy {
                                        pp: pp.min(m.layers),
                                        tp: tp.min(m.heads),
                                        ..s0
                                    };
                                    let act = stage_activations(&m, &safe0, &space.profile, acts);
                                    for &z in &space.zero_stage {
                                        let s = Strategy {
                                            zero_stage: z,
                                            ..s0
                                        };
                                        let idx = index;
                                        index += 1;
                                        if let Some(r) = rules::check_zero(&s) {
                                            if !space.keep_infeasible {
                                                out.pruned[r as usize] += 1;
                                                continue;
                                            }
                                        }
                                        let safe = Strategy {
                                            zero_stage: z,
                                            ..safe0
                                        };
                                        let mem = memory_peak_parts(
                                            &m,
                                            c,
                                            &safe,
                                            &space.profile,
                                            &space.options,
                                            params,
                                            act,
                                        );
                                        if !mem.fits && !space.keep_infeasible {
                                            out.pruned[Reject::Oom as usize] += 1;
                                            continue;
                                        }
                                        let lc = lc.get_or_insert_with(|| {
                                            let b =
                                                bases.entry((cp, ep, mbs)).or_insert_with(|| {
                                                    LayerBase::new(
                                                        &m,
                                                        c,
                                                        &Strategy {
                                                            tp: tp.min(m.heads),
                                                            ..proto
                                                        },
                                                    )
                                                });
                                            b.cost(sp, rc, (p_total, p_active))
                                        });
                                        let score = assemble(
                                            lc,
                                            &m,
                                            c,
                                            &safe,
                                            &space.profile,
                                            &space.options,
                                            mem,
                                        );
                                        out.scored += 1;
                                        let row = Row {
                                            index: idx,
                                            nodes: c.nodes,
                                            gpus_per_node: c.gpus_per_node,
                                            model: m,
                                            strategy: s,
                                            score,
                                        };
                                        if out.acc.wants_within(&row, bound) {
                                            out.acc.push_within(row, bound);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out.bases.insert((m.heads, tp), bases);
}

/// Threads the enumeration uses (rayon's global pool).
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Sizes rayon's global pool; only the first call before any parallel work takes effect.
pub fn set_threads(n: usize) -> bool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns;
    use crate::reduce::Objective;
    use crate::score::score;
    use crate::spec::examples::*;

    fn small_space() -> Space {
        Space {
            model: seed001(14336, 72, 64),
            hidden: vec![12288, 13824, 14336],
            layers: vec![70, 72],
            heads: vec![64, 96, 112],
            params_range: None,
            tp: vec![1, 2, 4, 8],
            cp: vec![1],
            ep: vec![1],
            mbs: vec![1, 2, 4],
            sequence_parallel: vec![false, true],
            recompute: vec![Recompute::Full, Recompute::Selective],
            pp: vec![4, 6, 8, 12],
            vpp: vec![1],
            gbs: vec![2048],
            zero_stage: vec![1, 3],
            precision: Precision::Bf16,
            flash_attention: false,
            uneven_stages: true,
            vocab_multiple: 128,
            fused_kernels: true,
            flexible_pipeline: false,
            mode: Mode::default(),
            cluster: Cluster {
                gpu: a100_80(),
                nodes: 48,
                gpus_per_node: 8,
            },
            profile: Profile::default(),
            options: Options::default(),
            keep_infeasible: false,
        }
    }

    fn objective(name: &str) -> Objective {
        let c = columns::find(name).unwrap();
        Objective {
            column: c,
            better: c.better,
        }
    }

    #[test]
    fn pruning_never_drops_a_feasible_candidate() {
        // Oracle: score every candidate of the product with `score` and keep the feasible ones.
        let sp = small_space();
        let all = Reducer::All {
            cap: usize::MAX,
            objective: objective("step_time_s"),
        };
        let (rows, stats) = enumerate(&sp, &all, &mut |_, _| true).unwrap();
        let mut oracle = 0u64;
        for &h in &sp.hidden {
            for &l in &sp.layers {
                for &a in &sp.heads {
                    let Ok(m) = sp.shape(h, l, a) else { continue };
                    for &tp in &sp.tp {
                        for &mbs in &sp.mbs {
                            for &seq_par in &sp.sequence_parallel {
                                for &rc in &sp.recompute {
                                    for &pp in &sp.pp {
                                        for &z in &sp.zero_stage {
                                            let dp = (384 / (tp * pp)).max(1);
                                            let s = Strategy {
                                                dp,
                                                tp,
                                                pp,
                                                mbs,
                                                gbs: 2048,
                                                zero_stage: z,
                                                recompute: rc,
                                                sequence_parallel: seq_par,
                                                ..strategy(1, 1, 1, 1, 1)
                                            };
                                            let (_, rej) = score(
                                                &m,
                                                &sp.cluster,
                                                &s,
                                                &sp.profile,
                                                &sp.options,
                                            )
                                            .unwrap();
                                            if rej.is_none() {
                                                oracle += 1;
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(rows.len() as u64, oracle);
        assert_eq!(stats.scored, oracle);
        assert_eq!(stats.candidates, 3 * 2 * 3 * 4 * 3 * 2 * 2 * 4 * 2);
        assert_eq!(
            stats.pruned.iter().sum::<u64>() + stats.scored,
            stats.candidates
        );
    }

    #[test]
    fn top_k_and_pareto_match_the_full_frame() {
        let sp = small_space();
        let obj = objective("step_time_s");
        let (all, _) = enumerate(
            &sp,
            &Reducer::All {
                cap: usize::MAX,
                objective: obj,
            },
            &mut |_, _| true,
        )
        .unwrap();
        let (top, _) = enumerate(
            &sp,
            &Reducer::TopK {
                k: 25,
                objective: obj,
            },
            &mut |_, _| true,
        )
        .unwrap();
        assert_eq!(
            top.iter().map(|r| r.index).collect::<Vec<_>>(),
            all[..25].iter().map(|r| r.index).collect::<Vec<_>>()
        );
        let mem = objective("mem_gb");
        let (front, _) =
            enumerate(&sp, &Reducer::Pareto { a: obj, b: mem }, &mut |_, _| true).unwrap();
        // Brute force: a row is on the front when no other row is at least as good in both.
        let mut expect: Vec<u64> = all
            .iter()
            .filter(|r| {
                !all.iter().any(|o| {
                    o.index != r.index
                        && obj.key(o) <= obj.key(r)
                        && mem.key(o) <= mem.key(r)
                        && (obj.key(o) < obj.key(r) || mem.key(o) < mem.key(r) || o.index < r.index)
                })
            })
            .map(|r| r.index)
            .collect();
        let mut got: Vec<u64> = front.iter().map(|r| r.index).collect();
        expect.sort();
        got.sort();
        assert_eq!(got, expect);
    }

    #[test]
    fn same_result_with_one_or_two_threads() {
        let sp = small_space();
        let r = Reducer::TopK {
            k: 50,
            objective: objective("step_time_s"),
        };
        let run = |n| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap();
            pool.install(|| enumerate(&sp, &r, &mut |_, _| true).unwrap().0)
        };
        assert_eq!(run(1), run(2));
    }

    #[test]
    fn cancelling_returns_partial() {
        let mut sp = small_space();
        sp.hidden = (12288..14336).step_by(128).collect();
        let r = Reducer::TopK {
            k: 5,
            objective: objective("step_time_s"),
        };
        let mut calls = 0;
        let (_, stats) = enumerate(&sp, &r, &mut |_, _| {
            calls += 1;
            false
        })
        .unwrap();
        assert!(stats.partial && calls == 1 && stats.visited < stats.candidates);
    }
}
