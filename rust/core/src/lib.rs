//! toposcan-core: the pure-Rust engine behind toposcan.
//!
//! The pipeline, in the order data flows through it:
//!
//! 1. **spec** ([`spec`]): a model ([`spec::Model`]), a cluster ([`spec::Cluster`] with its
//!    [`spec::Gpu`]) and a parallel strategy ([`spec::Strategy`]), validated by [`error`].
//! 2. **rules** ([`rules`]): divisibility and kernel rules; a broken rule rejects a candidate with
//!    a named [`rules::Reject`] reason, so a user can ask why a config is out.
//! 3. **formulas** ([`formulas`]): one pure function per quantity (parameters, FLOPs, memory,
//!    GEMM tile/wave quantization, communication, time, energy), each documented with its source.
//! 4. **score** ([`score`]): assembles the formulas for one candidate into a [`score::Score`].
//!    `evaluate`, `enumerate`, `check` and `validate` all go through [`score::score`].
//! 5. **space** ([`space`]): the search space, enumerated lazily and in parallel (rayon), pruned
//!    by the rules before scoring, and reduced by [`reduce`] (top-k, Pareto, all rows up to a cap).
//! 6. **columns** ([`columns`]): the result as one vector per column, ready to hand to Python.
//! 7. **fit** ([`fit`]): the few efficiency constants of a [`profile::Profile`], fitted to measured
//!    step times.
//!
//! The core never panics on user input: every entry point returns [`error::TopoError`].

pub mod columns;
pub mod error;
pub mod fit;
pub mod formulas;
pub mod profile;
pub mod reduce;
pub mod rules;
pub mod score;
pub mod space;
pub mod spec;
