//! Reducing a stream of scored rows to what the user asked for: the top k by one column, the
//! Pareto front of two columns, or every row up to a cap. Each reducer keeps memory bounded by
//! its answer, merges associatively, and breaks ties by the row's index in the search space, so
//! the result is the same whatever the thread count.

use crate::columns::{Better, Column, Row};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

/// An objective: a column and its direction.
#[derive(Clone, Copy)]
pub struct Objective {
    pub column: &'static Column,
    pub better: Better,
}

impl Objective {
    /// Orientation so that smaller is better; NaN sorts last whichever the direction.
    pub fn key(&self, r: &Row) -> f64 {
        let v = (self.column.get)(r);
        let k = match self.better {
            Better::Lower => v,
            Better::Higher => -v,
        };
        // `+ 0.0` turns -0.0 into 0.0, so that `total_cmp` and `<=` agree on every key.
        if k.is_nan() {
            f64::INFINITY
        } else {
            k + 0.0
        }
    }
}

/// Total order on (key, index): smaller is better.
fn cmp_key(a: (f64, u64), b: (f64, u64)) -> Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

pub struct Ranked {
    key: f64,
    row: Row,
}

impl PartialEq for Ranked {
    fn eq(&self, o: &Self) -> bool {
        cmp_key((self.key, self.row.index), (o.key, o.row.index)) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ranked {
    fn cmp(&self, o: &Self) -> Ordering {
        cmp_key((self.key, self.row.index), (o.key, o.row.index))
    }
}

/// The k-th best key of a top-k run, shared by its threads. Any thread's own k-th best is an upper
/// bound on the final one, so a row with a worse key cannot enter the answer and need not be
/// kept: the result is the same, the threads just push fewer rows. Keys are stored as `u64`s whose
/// order is the order of the `f64`s, so `fetch_min` keeps the tightest bound.
pub struct SharedBound(AtomicU64);

impl Default for SharedBound {
    fn default() -> Self {
        SharedBound(AtomicU64::new(u64::MAX))
    }
}

impl SharedBound {
    fn encode(x: f64) -> u64 {
        let b = x.to_bits();
        if b >> 63 == 1 {
            !b
        } else {
            b | (1 << 63)
        }
    }

    /// A key no worse than the bound (ties kept: the row index decides them later).
    pub fn admits(&self, key: f64) -> bool {
        Self::encode(key) <= self.0.load(AtomicOrdering::Relaxed)
    }

    pub fn tighten(&self, key: f64) {
        self.0.fetch_min(Self::encode(key), AtomicOrdering::Relaxed);
    }
}

/// What to keep.
#[derive(Clone, Copy)]
pub enum Reducer {
    /// The `k` best rows by an objective.
    TopK { k: usize, objective: Objective },
    /// Rows not dominated in two objectives.
    Pareto { a: Objective, b: Objective },
    /// Every row, up to `cap` (the first ones in search order), sorted by an objective.
    All { cap: usize, objective: Objective },
}

/// A partial result of one reducer.
pub enum Acc {
    TopK {
        k: usize,
        objective: Objective,
        heap: BinaryHeap<Ranked>,
    },
    Pareto {
        a: Objective,
        b: Objective,
        front: Vec<(f64, f64, Row)>,
    },
    All {
        cap: usize,
        objective: Objective,
        rows: Vec<Row>,
        truncated: bool,
    },
}

impl Reducer {
    pub fn empty(&self) -> Acc {
        match *self {
            Reducer::TopK { k, objective } => Acc::TopK {
                k,
                objective,
                heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1),
            },
            Reducer::Pareto { a, b } => Acc::Pareto {
                a,
                b,
                front: Vec::new(),
            },
            Reducer::All { cap, objective } => Acc::All {
                cap,
                objective,
                rows: Vec::new(),
                truncated: false,
            },
        }
    }
}

fn dominates(x: (f64, f64, u64), y: (f64, f64, u64)) -> bool {
    let no_worse = x.0 <= y.0 && x.1 <= y.1;
    let better = x.0 < y.0 || x.1 < y.1;
    // Identical points: the earlier row wins, so exactly one survives.
    no_worse && (better || x.2 < y.2)
}

/// Whether a point of `front` dominates `p`. The front is sorted by its first key; along it the
/// second key strictly falls (two points with equal first keys cannot both be undominated), so
/// the only candidate is the last point whose first key is at most `p`'s.
fn pareto_dominated(front: &[(f64, f64, Row)], p: (f64, f64, u64)) -> bool {
    let j = front.partition_point(|(x, _, _)| x.total_cmp(&p.0) != Ordering::Greater);
    j > 0 && {
        let (x, y, q) = &front[j - 1];
        dominates((*x, *y, q.index), p)
    }
}

impl Acc {
    /// Would a row with this key be kept? Lets the caller skip building rows that cannot enter.
    pub fn wants(&self, r: &Row) -> bool {
        match self {
            Acc::TopK { k, objective, heap } => {
                heap.len() < *k
                    || heap.peek().is_some_and(|w| {
                        cmp_key((objective.key(r), r.index), (w.key, w.row.index)) == Ordering::Less
                    })
            }
            Acc::All { cap, rows, .. } => rows.len() < *cap,
            Acc::Pareto { a, b, front } => !pareto_dominated(front, (a.key(r), b.key(r), r.index)),
        }
    }

    /// [`Acc::wants`], also asking the threads' [`SharedBound`] (top-k only).
    pub fn wants_within(&self, r: &Row, bound: &SharedBound) -> bool {
        match self {
            Acc::TopK { objective, .. } => bound.admits(objective.key(r)) && self.wants(r),
            _ => self.wants(r),
        }
    }

    /// [`Acc::push`], then tightens the shared bound once this top-k is full.
    pub fn push_within(&mut self, r: Row, bound: &SharedBound) {
        self.push(r);
        if let Acc::TopK { k, heap, .. } = self {
            if heap.len() == *k {
                if let Some(w) = heap.peek() {
                    bound.tighten(w.key);
                }
            }
        }
    }

    pub fn push(&mut self, r: Row) {
        match self {
            Acc::TopK { k, objective, heap } => {
                if *k == 0 {
                    return;
                }
                heap.push(Ranked {
                    key: objective.key(&r),
                    row: r,
                });
                if heap.len() > *k {
                    heap.pop();
                }
            }
            Acc::Pareto { a, b, front } => {
                let p = (a.key(&r), b.key(&r), r.index);
                if pareto_dominated(front, p) {
                    return;
                }
                front.retain(|(x, y, q)| !dominates(p, (*x, *y, q.index)));
                let at = front.partition_point(|(x, _, q)| {
                    cmp_key((*x, q.index), (p.0, p.2)) == Ordering::Less
                });
                front.insert(at, (p.0, p.1, r));
            }
            Acc::All {
                cap,
                rows,
                truncated,
                ..
            } => {
                if rows.len() < *cap {
                    rows.push(r);
                } else {
                    *truncated = true;
                }
            }
        }
    }

    /// Merges a later partial result (`other` covers candidates after `self`'s in search order).
    pub fn merge(&mut self, other: Acc) {
        match other {
            Acc::TopK { heap, .. } => heap.into_iter().for_each(|x| self.push(x.row)),
            Acc::Pareto { front, .. } => front.into_iter().for_each(|(_, _, r)| self.push(r)),
            Acc::All {
                rows, truncated, ..
            } => {
                if truncated {
                    if let Acc::All { truncated: t, .. } = self {
                        *t = true;
                    }
                }
                rows.into_iter().for_each(|r| self.push(r));
            }
        }
    }

    pub fn truncated(&self) -> bool {
        matches!(
            self,
            Acc::All {
                truncated: true,
                ..
            }
        )
    }

    /// The final rows, best first (Pareto: by the first objective).
    pub fn finish(self) -> Vec<Row> {
        match self {
            Acc::TopK { heap, .. } => heap.into_sorted_vec().into_iter().map(|x| x.row).collect(),
            // Kept sorted by the first objective (then the index) as it was built.
            Acc::Pareto { front, .. } => front.into_iter().map(|(_, _, r)| r).collect(),
            Acc::All {
                objective,
                mut rows,
                ..
            } => {
                rows.sort_by(|x, y| {
                    cmp_key((objective.key(x), x.index), (objective.key(y), y.index))
                });
                rows
            }
        }
    }
}
