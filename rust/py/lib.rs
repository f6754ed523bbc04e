//! pyo3 binding of toposcan-core: dict specs in, numpy columns out. No per-row Python objects.
//!
//! Every entry point releases the GIL while the core runs, catches panics (a Rust panic never
//! reaches Python as a panic) and maps core errors to `CoreError(code, field, message)`, which the
//! Python layer turns into `toposcan.errors.InputError`.

use numpy::IntoPyArray;
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::panic::{catch_unwind, AssertUnwindSafe};
use toposcan_core::columns::{self, Data, Row};
use toposcan_core::error::TopoError;
use toposcan_core::fit;
use toposcan_core::profile::Profile;
use toposcan_core::reduce::{Objective, Reducer};
use toposcan_core::rules::{warn, Reject};
use toposcan_core::score::{self, Options};
use toposcan_core::space::{self, Space};
use toposcan_core::spec::*;

create_exception!(
    _core,
    CoreError,
    PyValueError,
    "An input the core rejects: args are (code, field, message)."
);

fn core_err(e: TopoError) -> PyErr {
    CoreError::new_err((e.code, e.field, e.message))
}

fn guarded<T>(f: impl FnOnce() -> Result<T, TopoError>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(core_err),
        Err(_) => Err(CoreError::new_err((
            "internal_error",
            "",
            "internal error in the scoring core (a bug: please report the input)",
        ))),
    }
}

fn get<'py, T: for<'a> FromPyObject<'a, 'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    match d.get_item(key)? {
        Some(v) => v.extract::<T>().map_err(|_| {
            CoreError::new_err((
                "invalid_value",
                key.to_string(),
                format!("`{key}` has the wrong type or is out of range: {v}"),
            ))
        }),
        None => Err(CoreError::new_err((
            "missing_field",
            key.to_string(),
            format!("`{key}` is required"),
        ))),
    }
}

/// `key` of `d`, or `default` when the dict does not carry it.
fn get_or<'py, T: for<'a> FromPyObject<'a, 'py>>(
    d: &Bound<'py, PyDict>,
    key: &str,
    default: T,
) -> PyResult<T> {
    if d.get_item(key)?.is_some() {
        get(d, key)
    } else {
        Ok(default)
    }
}

fn enum_of<T: Copy>(d: &Bound<'_, PyDict>, key: &str, options: &[(&str, T)]) -> PyResult<T> {
    choose(key, &get::<String>(d, key)?, options)
}

/// The option named `v` of `key`, or a one-line error listing the allowed names.
fn choose<T: Copy>(key: &str, v: &str, options: &[(&str, T)]) -> PyResult<T> {
    options
        .iter()
        .find(|(n, _)| *n == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let allowed: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            CoreError::new_err((
                "invalid_value",
                key.to_string(),
                format!("`{key}` must be one of {{{}}}, got {v}", allowed.join(", ")),
            ))
        })
}

const RECOMPUTE: [(&str, Recompute); 3] = [
    ("none", Recompute::None),
    ("selective", Recompute::Selective),
    ("full", Recompute::Full),
];
const PRECISION: [(&str, Precision); 6] = [
    ("fp32", Precision::Fp32),
    ("fp16", Precision::Fp16),
    ("bf16", Precision::Bf16),
    ("fp8", Precision::Fp8),
    ("mxfp8", Precision::Mxfp8),
    ("nvfp4", Precision::Nvfp4),
];

const TASK: [(&str, Task); 3] = [
    ("pretrain", Task::Pretrain),
    ("sft", Task::Sft),
    ("lora", Task::Lora),
];
const OFFLOAD: [(&str, Offload); 3] = [
    ("none", Offload::None),
    ("optimizer", Offload::Optimizer),
    ("optimizer+params", Offload::OptimizerParams),
];
const SCHEDULE: [(&str, Schedule); 5] = [
    ("auto", Schedule::Auto),
    ("1f1b", Schedule::OneF1B),
    ("interleaved", Schedule::Interleaved),
    ("zero-bubble", Schedule::ZeroBubble),
    ("dualpipe", Schedule::DualPipe),
];
const CP_COMM: [(&str, CpComm); 2] = [("ring", CpComm::Ring), ("ulysses", CpComm::Ulysses)];
const FP8_RECIPE: [(&str, Fp8Recipe); 3] = [
    ("delayed", Fp8Recipe::Delayed),
    ("current", Fp8Recipe::Current),
    ("blockwise", Fp8Recipe::Blockwise),
];

/// An optional named option of a dict: `default` when the key is absent.
fn enum_or<T: Copy>(
    d: &Bound<'_, PyDict>,
    key: &str,
    options: &[(&str, T)],
    default: T,
) -> PyResult<T> {
    match get_or::<Option<String>>(d, key, None)? {
        Some(v) => choose(key, &v, options),
        None => Ok(default),
    }
}

/// The training-mode keys of a strategy or space dict; absent keys take [`Mode::default`].
fn mode(d: &Bound<'_, PyDict>) -> PyResult<Mode> {
    let z = Mode::default();
    Ok(Mode {
        task: enum_or(d, "task", &TASK, z.task)?,
        lora_rank: get_or(d, "lora_rank", z.lora_rank)?,
        offload: enum_or(d, "offload", &OFFLOAD, z.offload)?,
        fsdp_shard: get_or(d, "fsdp_shard", z.fsdp_shard)?,
        etp: get_or(d, "etp", z.etp)?,
        schedule: enum_or(d, "schedule", &SCHEDULE, z.schedule)?,
        cp_comm: enum_or(d, "cp_comm", &CP_COMM, z.cp_comm)?,
        fp8_recipe: enum_or(d, "fp8_recipe", &FP8_RECIPE, z.fp8_recipe)?,
    })
}

fn model(d: &Bound<'_, PyDict>) -> PyResult<Model> {
    let attention: String = get(d, "attention")?;
    let mla = if attention == "mla" {
        Some(Mla {
            q_lora_rank: get(d, "q_lora_rank")?,
            kv_lora_rank: get(d, "kv_lora_rank")?,
            qk_rope_head_dim: get(d, "qk_rope_head_dim")?,
            qk_nope_head_dim: get(d, "qk_nope_head_dim")?,
            v_head_dim: get(d, "v_head_dim")?,
        })
    } else {
        None
    };
    Ok(Model {
        layers: get(d, "layers")?,
        hidden: get(d, "hidden")?,
        heads: get(d, "heads")?,
        kv_heads: get(d, "kv_heads")?,
        head_dim: get(d, "head_dim")?,
        ffn_hidden: get(d, "ffn_hidden")?,
        activation: enum_of(
            d,
            "activation",
            &[("gelu", Activation::Gelu), ("swiglu", Activation::Swiglu)],
        )?,
        vocab: get(d, "vocab")?,
        seq_len: get(d, "seq_len")?,
        tied_embeddings: get(d, "tied_embeddings")?,
        position: enum_of(
            d,
            "position",
            &[
                ("learned", Position::Learned),
                ("rope", Position::Rope),
                ("alibi", Position::Alibi),
            ],
        )?,
        position_rows: get(d, "position_rows")?,
        norm: enum_of(
            d,
            "norm",
            &[("layernorm", Norm::LayerNorm), ("rmsnorm", Norm::RmsNorm)],
        )?,
        bias: get(d, "bias")?,
        embedding_norm: get(d, "embedding_norm")?,
        experts: get(d, "experts")?,
        topk: get(d, "topk")?,
        shared_experts: get(d, "shared_experts")?,
        moe_ffn_hidden: get(d, "moe_ffn_hidden")?,
        dense_layers: get(d, "dense_layers")?,
        mla,
        // Architecture fields newer than the dict shape: absent means the plain transformer.
        moe_layer_every: get_or(d, "moe_layer_every", 1)?,
        mtp_layers: get_or(d, "mtp_layers", 0)?,
        qk_norm: get_or(d, "qk_norm", false)?,
        attention_sinks: get_or(d, "attention_sinks", false)?,
        router_bias: get_or(d, "router_bias", false)?,
        qkv_bias: get_or(d, "qkv_bias", false)?,
        sandwich_norm: get_or(d, "sandwich_norm", false)?,
        sliding_window: get_or(d, "sliding_window", 0)?,
        full_attention_every: get_or(d, "full_attention_every", 0)?,
    })
}

fn cluster(d: &Bound<'_, PyDict>) -> PyResult<Cluster> {
    Ok(Cluster {
        gpu: Gpu {
            peak_fp32: get(d, "peak_fp32")?,
            peak_tf32: get(d, "peak_tf32")?,
            peak_fp16: get(d, "peak_fp16")?,
            peak_bf16: get(d, "peak_bf16")?,
            peak_fp8: get(d, "peak_fp8")?,
            peak_mxfp8: get_or(d, "peak_mxfp8", 0.0)?,
            peak_nvfp4: get_or(d, "peak_nvfp4", 0.0)?,
            vector_fp32: get(d, "vector_fp32")?,
            memory_bytes: get(d, "memory_bytes")?,
            memory_bw: get(d, "memory_bw")?,
            elementwise_bw: get(d, "elementwise_bw")?,
            sms: get(d, "sms")?,
            intra_node_bw: get(d, "intra_node_bw")?,
            inter_node_bw: get(d, "inter_node_bw")?,
            board_power_w: get(d, "board_power_w")?,
            nvlink_domain: get_or(d, "nvlink_domain", 0)?,
            host_link_bw: get_or(d, "host_link_bw", 0.0)?,
            host_memory_bw: get_or(d, "host_memory_bw", 0.0)?,
        },
        nodes: get(d, "nodes")?,
        gpus_per_node: get(d, "gpus_per_node")?,
    })
}

fn strategy(d: &Bound<'_, PyDict>) -> PyResult<Strategy> {
    Ok(Strategy {
        dp: get(d, "dp")?,
        tp: get(d, "tp")?,
        pp: get(d, "pp")?,
        vpp: get(d, "vpp")?,
        cp: get(d, "cp")?,
        ep: get(d, "ep")?,
        mbs: get(d, "mbs")?,
        gbs: get(d, "gbs")?,
        zero_stage: get(d, "zero_stage")?,
        recompute: enum_of(d, "recompute", &RECOMPUTE)?,
        sequence_parallel: get(d, "sequence_parallel")?,
        precision: enum_of(d, "precision", &PRECISION)?,
        flash_attention: get(d, "flash_attention")?,
        uneven_stages: get(d, "uneven_stages")?,
        vocab_multiple: get(d, "vocab_multiple")?,
        fused_kernels: get(d, "fused_kernels")?,
        flexible_pipeline: get_or(d, "flexible_pipeline", false)?,
        mode: mode(d)?,
    })
}

fn profile(d: &Bound<'_, PyDict>) -> PyResult<Profile> {
    Ok(Profile {
        gemm_efficiency: get(d, "gemm_efficiency")?,
        attention_efficiency: get(d, "attention_efficiency")?,
        memory_efficiency: get(d, "memory_efficiency")?,
        intra_link_efficiency: get(d, "intra_link_efficiency")?,
        inter_link_efficiency: get(d, "inter_link_efficiency")?,
        layer_overhead_s: get(d, "layer_overhead_s")?,
        dp_overlap: get(d, "dp_overlap")?,
        step_overhead_s: get(d, "step_overhead_s")?,
        memory_overhead_bytes: get(d, "memory_overhead_bytes")?,
        fragmentation: get(d, "fragmentation")?,
        grad_bytes: get(d, "grad_bytes")?,
        grad_shard_bytes: get(d, "grad_shard_bytes")?,
        logit_bytes: get(d, "logit_bytes")?,
        p2p_scatter_gather: get(d, "p2p_scatter_gather")?,
        zero1_allreduce: get(d, "zero1_allreduce")?,
        transient_gradients: get(d, "transient_gradients")?,
        fsdp_overlap: get(d, "fsdp_overlap")?,
    })
}

fn profile_dict<'py>(py: Python<'py>, p: &Profile) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("gemm_efficiency", p.gemm_efficiency)?;
    d.set_item("attention_efficiency", p.attention_efficiency)?;
    d.set_item("memory_efficiency", p.memory_efficiency)?;
    d.set_item("intra_link_efficiency", p.intra_link_efficiency)?;
    d.set_item("inter_link_efficiency", p.inter_link_efficiency)?;
    d.set_item("layer_overhead_s", p.layer_overhead_s)?;
    d.set_item("dp_overlap", p.dp_overlap)?;
    d.set_item("step_overhead_s", p.step_overhead_s)?;
    d.set_item("memory_overhead_bytes", p.memory_overhead_bytes)?;
    d.set_item("fragmentation", p.fragmentation)?;
    d.set_item("grad_bytes", p.grad_bytes)?;
    d.set_item("grad_shard_bytes", p.grad_shard_bytes)?;
    d.set_item("logit_bytes", p.logit_bytes)?;
    d.set_item("p2p_scatter_gather", p.p2p_scatter_gather)?;
    d.set_item("zero1_allreduce", p.zero1_allreduce)?;
    d.set_item("transient_gradients", p.transient_gradients)?;
    d.set_item("fsdp_overlap", p.fsdp_overlap)?;
    Ok(d)
}

fn options(d: &Bound<'_, PyDict>) -> PyResult<Options> {
    Ok(Options {
        headroom: get(d, "headroom")?,
        train_tokens: get(d, "train_tokens")?,
        allow_cross_node_tp: get(d, "allow_cross_node_tp")?,
        rampup: get(d, "rampup")?,
    })
}

fn objective(name: &str, descending: Option<bool>) -> PyResult<Objective> {
    let column = columns::find(name).ok_or_else(|| {
        CoreError::new_err((
            "invalid_value",
            "objective",
            format!(
                "`{name}` is not a column; one of: {}",
                columns::names().join(", ")
            ),
        ))
    })?;
    let better = match descending {
        Some(true) => columns::Better::Higher,
        Some(false) => columns::Better::Lower,
        None => column.better,
    };
    Ok(Objective { column, better })
}

/// Columns of `rows` as a dict name -> numpy array, plus labels of categorical columns.
fn export<'py>(
    py: Python<'py>,
    rows: &[Row],
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    let cols = PyDict::new(py);
    let labels = PyDict::new(py);
    for (name, data) in columns::to_columns(rows) {
        match data {
            Data::Int(v) => cols.set_item(name, v.into_pyarray(py))?,
            Data::Float(v) => cols.set_item(name, v.into_pyarray(py))?,
            Data::Bool(v) => cols.set_item(name, v.into_pyarray(py))?,
            Data::Cat(v, l) => {
                cols.set_item(name, v.into_pyarray(py))?;
                labels.set_item(name, PyList::new(py, l)?)?;
            }
        }
    }
    Ok((cols, labels))
}

/// What `evaluate` returns: columns of a one-row frame, labels, reject code or None, reject message,
/// per-stage memory as a list of dicts in bytes.
type Evaluated<'py> = (
    Bound<'py, PyDict>,
    Bound<'py, PyDict>,
    Option<&'static str>,
    Option<String>,
    Bound<'py, PyList>,
);

/// Scores one configuration (see [`Evaluated`]).
#[pyfunction]
fn evaluate<'py>(
    py: Python<'py>,
    model_d: &Bound<'py, PyDict>,
    cluster_d: &Bound<'py, PyDict>,
    strategy_d: &Bound<'py, PyDict>,
    profile_d: &Bound<'py, PyDict>,
    options_d: &Bound<'py, PyDict>,
) -> PyResult<Evaluated<'py>> {
    let (m, c, s, p, o) = (
        model(model_d)?,
        cluster(cluster_d)?,
        strategy(strategy_d)?,
        profile(profile_d)?,
        options(options_d)?,
    );
    let (sc, reject, stages) = py.detach(|| {
        guarded(|| {
            let (sc, reject) = score::score(&m, &c, &s, &p, &o)?;
            let pp = s.pp.min(m.layers);
            let safe = Strategy {
                pp,
                tp: s.tp.min(m.heads).max(1),
                ..s
            };
            let stages: Vec<_> = (0..pp)
                .map(|i| score::stage_memory(&m, &safe, &p, i))
                .collect();
            Ok((sc, reject, stages))
        })
    })?;
    let row = Row {
        index: 0,
        nodes: c.nodes,
        gpus_per_node: c.gpus_per_node,
        model: m,
        strategy: s,
        score: sc,
    };
    let (cols, labels) = export(py, &[row])?;
    let stage_list = PyList::empty(py);
    for (i, st) in stages.iter().enumerate() {
        let d = PyDict::new(py);
        d.set_item("stage", i)?;
        d.set_item(
            "layers",
            toposcan_core::formulas::params::stage_layers(m.layers, s.pp.min(m.layers), i as u32),
        )?;
        d.set_item("weights", st.weights)?;
        d.set_item("gradients", st.gradients)?;
        d.set_item("optimizer", st.optimizer)?;
        d.set_item("activations", st.activations)?;
        d.set_item("logits", st.logits)?;
        d.set_item("buffers", st.buffers)?;
        d.set_item("overhead", st.overhead)?;
        d.set_item("total", st.total())?;
        stage_list.append(d)?;
    }
    let msg = reject.map(|r| r.message(&m, &s, &c));
    Ok((cols, labels, reject.map(|r| r.code()), msg, stage_list))
}

fn u32_list(d: &Bound<'_, PyDict>, key: &str) -> PyResult<Vec<u32>> {
    get(d, key)
}

/// Enumerates a space. `reducer` is a dict: {"kind": "top"|"pareto"|"all", "k", "objective",
/// "descending", "a", "b", "cap"}. `progress(visited, total) -> bool` may stop the run.
#[pyfunction]
#[pyo3(signature = (space_d, model_d, cluster_d, profile_d, options_d, reducer_d, progress=None))]
#[allow(clippy::too_many_arguments)]
fn enumerate<'py>(
    py: Python<'py>,
    space_d: &Bound<'py, PyDict>,
    model_d: &Bound<'py, PyDict>,
    cluster_d: &Bound<'py, PyDict>,
    profile_d: &Bound<'py, PyDict>,
    options_d: &Bound<'py, PyDict>,
    reducer_d: &Bound<'py, PyDict>,
    progress: Option<Py<PyAny>>,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    let recompute: Vec<String> = get(space_d, "recompute")?;
    let recompute = recompute
        .iter()
        .map(|r| {
            RECOMPUTE
                .iter()
                .find(|(n, _)| n == r)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    CoreError::new_err((
                        "invalid_value",
                        "recompute",
                        format!("`recompute` must be one of {{none, selective, full}}, got {r}"),
                    ))
                })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let params_range: Option<(f64, f64)> = get(space_d, "params_range")?;
    let sp = Space {
        model: model(model_d)?,
        hidden: u32_list(space_d, "hidden")?,
        layers: u32_list(space_d, "layers")?,
        heads: u32_list(space_d, "heads")?,
        params_range,
        tp: u32_list(space_d, "tp")?,
        cp: u32_list(space_d, "cp")?,
        ep: u32_list(space_d, "ep")?,
        mbs: u32_list(space_d, "mbs")?,
        sequence_parallel: get(space_d, "sequence_parallel")?,
        recompute,
        pp: u32_list(space_d, "pp")?,
        vpp: u32_list(space_d, "vpp")?,
        gbs: u32_list(space_d, "gbs")?,
        zero_stage: get(space_d, "zero_stage")?,
        precision: enum_of(space_d, "precision", &PRECISION)?,
        flash_attention: get(space_d, "flash_attention")?,
        uneven_stages: get(space_d, "uneven_stages")?,
        vocab_multiple: get(space_d, "vocab_multiple")?,
        fused_kernels: get(space_d, "fused_kernels")?,
        flexible_pipeline: get_or(space_d, "flexible_pipeline", false)?,
        mode: mode(space_d)?,
        cluster: cluster(cluster_d)?,
        profile: profile(profile_d)?,
        options: options(options_d)?,
        keep_infeasible: get(space_d, "keep_infeasible")?,
    };
    let kind: String = get(reducer_d, "kind")?;
    let descending: Option<bool> = get(reducer_d, "descending")?;
    let reducer = match kind.as_str() {
        "top" => Reducer::TopK {
            k: get(reducer_d, "k")?,
            objective: objective(&get::<String>(reducer_d, "objective")?, descending)?,
        },
        "pareto" => Reducer::Pareto {
            a: objective(&get::<String>(reducer_d, "a")?, None)?,
            b: objective(&get::<String>(reducer_d, "b")?, None)?,
        },
        "all" => Reducer::All {
            cap: get(reducer_d, "cap")?,
            objective: objective(&get::<String>(reducer_d, "objective")?, descending)?,
        },
        other => {
            return Err(CoreError::new_err((
                "invalid_value",
                "reducer",
                format!("reducer must be one of {{top, pareto, all}}, got {other}"),
            )))
        }
    };
    let mut interrupted = false;
    let mut callback_error: Option<PyErr> = None;
    let (rows, stats) = py.detach(|| {
        guarded(|| {
            let mut cb = |visited: u64, total: u64| -> bool {
                Python::attach(|py| {
                    if py.check_signals().is_err() {
                        interrupted = true;
                        return false;
                    }
                    if let Some(f) = &progress {
                        match f.call1(py, (visited, total)) {
                            Ok(v) => v.extract::<bool>(py).unwrap_or(true),
                            Err(e) => {
                                callback_error = Some(e);
                                false
                            }
                        }
                    } else {
                        true
                    }
                })
            };
            space::enumerate(&sp, &reducer, &mut cb)
        })
    })?;
    if let Some(e) = callback_error {
        return Err(e);
    }
    let (cols, labels) = export(py, &rows)?;
    let st = PyDict::new(py);
    st.set_item("candidates", stats.candidates)?;
    st.set_item("visited", stats.visited)?;
    st.set_item("scored", stats.scored)?;
    let pruned = PyDict::new(py);
    for (r, n) in Reject::ALL.iter().zip(&stats.pruned) {
        if *n > 0 {
            pruned.set_item(r.code(), *n)?;
        }
    }
    st.set_item("pruned", pruned)?;
    st.set_item("seconds", stats.seconds)?;
    st.set_item("partial", stats.partial)?;
    st.set_item("interrupted", interrupted)?;
    st.set_item("truncated", stats.truncated)?;
    st.set_item("threads", rayon_threads())?;
    Ok((cols, labels, st))
}

fn rayon_threads() -> usize {
    toposcan_core::space::threads()
}

fn rayon_pool(n: usize) -> bool {
    toposcan_core::space::set_threads(n)
}

/// Fits a profile's time constants to measured step times. `rows` is a list of
/// (model, cluster, strategy) dicts; returns (profile dict, mape %, max error %, loo mape %).
#[pyfunction]
fn fit_profile<'py>(
    py: Python<'py>,
    rows: Vec<(Bound<'py, PyDict>, Bound<'py, PyDict>, Bound<'py, PyDict>)>,
    measured: Vec<f64>,
    free: Vec<bool>,
    start_d: &Bound<'py, PyDict>,
    options_d: &Bound<'py, PyDict>,
) -> PyResult<(Bound<'py, PyDict>, f64, f64, f64)> {
    let start = profile(start_d)?;
    let o = options(options_d)?;
    let specs = rows
        .iter()
        .map(|(m, c, s)| Ok((model(m)?, cluster(c)?, strategy(s)?)))
        .collect::<PyResult<Vec<_>>>()?;
    if specs.len() != measured.len() || specs.is_empty() {
        return Err(CoreError::new_err((
            "invalid_value",
            "rows",
            "rows and measured must be non-empty and of equal length",
        )));
    }
    if free.len() != Profile::TIME_PARAMS {
        return Err(CoreError::new_err((
            "invalid_value",
            "free",
            format!("free needs {} flags", Profile::TIME_PARAMS),
        )));
    }
    let mut mask = [false; Profile::TIME_PARAMS];
    mask.copy_from_slice(&free);
    let r = py.detach(|| {
        guarded(|| {
            for (m, c, s) in &specs {
                m.validate()?;
                c.validate()?;
                s.validate()?;
            }
            let predict = |p: &Profile, i: usize| {
                let (m, c, s) = &specs[i];
                score::score(m, c, s, p, &o)
                    .map(|x| x.0.step_time_s)
                    .unwrap_or(f64::INFINITY)
            };
            Ok(fit::fit(&start, &measured, &mask, &predict))
        })
    })?;
    Ok((
        profile_dict(py, &r.profile)?,
        r.mape,
        r.max_error,
        r.loo_mape,
    ))
}

/// Each named size from 1 to 2^`max_log2`, or a one-line error naming the first that is not.
fn sizes(named: &[(&str, u64)], max_log2: u32) -> PyResult<()> {
    match named.iter().find(|(_, v)| *v == 0 || *v > 1 << max_log2) {
        Some((name, v)) => Err(core_err(TopoError::new(
            "invalid_value",
            *name,
            format!("`{name}` must be from 1 to 2^{max_log2}, got {v}"),
        ))),
        None => Ok(()),
    }
}

/// Seconds of one (batched) GEMM `[m, k] x [k, n]` at 100% of the tensor peak, with the tile, wave
/// and alignment effects of the core's GEMM model (`formulas::gemm`); a profile's
/// `gemm_efficiency` divides it. `cluster_d` as for `evaluate`.
#[pyfunction]
fn gemm_time(
    cluster_d: &Bound<'_, PyDict>,
    precision: &str,
    m: u64,
    n: u64,
    k: u64,
    batch: u64,
) -> PyResult<f64> {
    let (c, p) = (
        cluster(cluster_d)?,
        choose("precision", precision, &PRECISION)?,
    );
    sizes(&[("m", m), ("n", n), ("k", k), ("batch", batch)], 40)?;
    Ok(toposcan_core::formulas::gemm::Gemm::new(m, n, k, batch).time(&c.gpu, p))
}

/// Seconds of causal flash attention's forward at 100% of the tensor peak (the core's model,
/// `formulas::gemm::flash_attention_fwd`; backward is 2.5x), for `batch_heads` problems of
/// `s_q` queries over `s_k` keys; with `window` > 0, sliding-window attention over a sequence of
/// `s_k` keys (`flash_attention_window_fwd`). A profile's `attention_efficiency` divides it.
#[pyfunction]
#[pyo3(signature = (cluster_d, precision, s_q, s_k, head_dim, batch_heads, window=0))]
fn attention_time(
    cluster_d: &Bound<'_, PyDict>,
    precision: &str,
    s_q: u64,
    s_k: u64,
    head_dim: u64,
    batch_heads: u64,
    window: u64,
) -> PyResult<f64> {
    let (c, p) = (
        cluster(cluster_d)?,
        choose("precision", precision, &PRECISION)?,
    );
    sizes(
        &[
            ("s_q", s_q),
            ("s_k", s_k),
            ("head_dim", head_dim),
            ("batch_heads", batch_heads),
        ],
        32,
    )?;
    if window > 1 << 32 {
        return Err(core_err(TopoError::too_large("window", window, 1u64 << 32)));
    }
    Ok(if window > 0 {
        toposcan_core::formulas::gemm::flash_attention_window_fwd(
            &c.gpu,
            p,
            s_q,
            s_k,
            window,
            head_dim,
            batch_heads,
        )
    } else {
        toposcan_core::formulas::gemm::flash_attention_fwd(
            &c.gpu,
            p,
            s_q,
            s_k,
            head_dim,
            batch_heads,
        )
    })
}

/// (name, type, doc) of every output column, in frame order.
#[pyfunction]
fn column_info() -> Vec<(&'static str, &'static str, &'static str)> {
    columns::COLUMNS
        .iter()
        .map(|c| {
            let k = match c.kind {
                columns::Kind::Int => "int",
                columns::Kind::Float => "float",
                columns::Kind::Bool => "bool",
                columns::Kind::Cat(_) => "cat",
            };
            (c.name, k, c.doc)
        })
        .collect()
}

/// Codes of the hard rules (rejection reasons), in statistics order.
#[pyfunction]
fn reject_codes() -> Vec<&'static str> {
    Reject::ALL.iter().map(|r| r.code()).collect()
}

/// (bit, code) of the soft-rule warnings.
#[pyfunction]
fn warning_codes() -> Vec<(u32, &'static str)> {
    warn::ALL.to_vec()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // `TOPOSCAN_THREADS=n` sizes rayon's pool (results never depend on it; speed does).
    if let Some(n) = std::env::var("TOPOSCAN_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        let _ = rayon_pool(n);
    }
    m.add("CoreError", m.py().get_type::<CoreError>())?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(enumerate, m)?)?;
    m.add_function(wrap_pyfunction!(fit_profile, m)?)?;
    m.add_function(wrap_pyfunction!(column_info, m)?)?;
    m.add_function(wrap_pyfunction!(gemm_time, m)?)?;
    m.add_function(wrap_pyfunction!(attention_time, m)?)?;
    m.add_function(wrap_pyfunction!(reject_codes, m)?)?;
    m.add_function(wrap_pyfunction!(warning_codes, m)?)?;
    Ok(())
}
