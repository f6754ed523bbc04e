//! Fitting a profile's time constants to measured step times.
//!
//! # Procedure
//! Minimize the sum of squared log errors `sum_i ln(pred_i / meas_i)^2` over the time constants
//! of [`Profile`], each kept inside [`Profile::TIME_BOUNDS`], with a small ridge term (change over
//! the width of the allowed range, squared, times [`RIDGE`]) pulling every constant toward its
//! starting value (so constants the data cannot identify stay
//! where they started instead of drifting). The optimizer is Nelder-Mead on the box-clamped
//! parameters, restarted from the best point until it stops improving, from several starts (the
//! given one, and the given one with each free constant moved to the middle of its range, one at a
//! time) to avoid a poor local minimum. Leave-one-out refits start from the full fit.
//! Deterministic: no random numbers.

use crate::profile::Profile;

/// Ridge weight on each constant's change, measured in widths of its allowed range.
pub const RIDGE: f64 = 1e-3;

/// Result of a fit: the profile and its errors.
#[derive(Debug, Clone)]
pub struct FitResult {
    pub profile: Profile,
    /// Mean absolute percentage error of the fitted predictions, %.
    pub mape: f64,
    /// Largest absolute percentage error, %.
    pub max_error: f64,
    /// Mean absolute percentage error when each row is predicted by a fit without it, %.
    pub loo_mape: f64,
}

fn clamp(v: &mut [f64; Profile::TIME_PARAMS]) {
    for (x, (lo, hi)) in v.iter_mut().zip(Profile::TIME_BOUNDS) {
        *x = x.clamp(lo, hi);
    }
}

/// Fits `start`'s time constants so that `predict(profile, i)` matches `measured[i]`.
/// `free[j] == false` holds constant `j` at its start value.
pub fn fit(
    start: &Profile,
    measured: &[f64],
    free: &[bool; Profile::TIME_PARAMS],
    predict: &dyn Fn(&Profile, usize) -> f64,
) -> FitResult {
    let x0 = start.time_vector();
    let mut starts = vec![x0];
    for j in (0..Profile::TIME_PARAMS).filter(|&j| free[j]) {
        let (lo, hi) = Profile::TIME_BOUNDS[j];
        let mut v = x0;
        v[j] = 0.5 * (lo + hi);
        starts.push(v);
    }
    let mut profile = *start;
    let mut best = f64::INFINITY;
    for v in starts {
        let p = fit_rows_from(start, &v, measured, free, predict, None);
        let l = loss_of(start, &p, measured, free, predict, None);
        if l < best {
            best = l;
            profile = p;
        }
    }
    let errs: Vec<f64> = (0..measured.len())
        .map(|i| (predict(&profile, i) / measured[i] - 1.0).abs() * 100.0)
        .collect();
    let loo: Vec<f64> = (0..measured.len())
        .map(|i| {
            let p = fit_rows_from(
                start,
                &profile.time_vector(),
                measured,
                free,
                predict,
                Some(i),
            );
            (predict(&p, i) / measured[i] - 1.0).abs() * 100.0
        })
        .collect();
    let n = measured.len().max(1) as f64;
    FitResult {
        profile,
        mape: errs.iter().sum::<f64>() / n,
        max_error: errs.iter().cloned().fold(0.0, f64::max),
        loo_mape: loo.iter().sum::<f64>() / n,
    }
}

/// The fit objective at `p`: squared log errors plus the ridge toward `start`.
fn loss_of(
    start: &Profile,
    p: &Profile,
    measured: &[f64],
    free: &[bool; Profile::TIME_PARAMS],
    predict: &dyn Fn(&Profile, usize) -> f64,
    skip: Option<usize>,
) -> f64 {
    let x0 = start.time_vector();
    let v = p.time_vector();
    let mut l = 0.0;
    for (i, &meas) in measured.iter().enumerate() {
        if Some(i) == skip {
            continue;
        }
        let pred = predict(p, i);
        let e = if pred.is_finite() && pred > 0.0 {
            (pred / meas).ln()
        } else {
            10.0
        };
        l += e * e;
    }
    for j in (0..Profile::TIME_PARAMS).filter(|&j| free[j]) {
        let (lo, hi) = Profile::TIME_BOUNDS[j];
        l += RIDGE * ((v[j] - x0[j]) / (hi - lo)).powi(2);
    }
    l
}

/// Minimizes [`loss_of`] (ridge centred on `start`) from the point `from`.
fn fit_rows_from(
    start: &Profile,
    from: &[f64; Profile::TIME_PARAMS],
    measured: &[f64],
    free: &[bool; Profile::TIME_PARAMS],
    predict: &dyn Fn(&Profile, usize) -> f64,
    skip: Option<usize>,
) -> Profile {
    let x0 = *from;
    let idx: Vec<usize> = (0..Profile::TIME_PARAMS).filter(|&j| free[j]).collect();
    let to_full = |y: &[f64]| {
        let mut v = x0;
        for (k, &j) in idx.iter().enumerate() {
            v[j] = y[k];
        }
        clamp(&mut v);
        v
    };
    let loss = |y: &[f64]| {
        loss_of(
            start,
            &start.with_time_vector(&to_full(y)),
            measured,
            free,
            predict,
            skip,
        )
    };
    let mut best: Vec<f64> = idx.iter().map(|&j| x0[j]).collect();
    let mut best_l = loss(&best);
    for _ in 0..6 {
        let (y, l) = nelder_mead(&loss, &best, 400);
        if l >= best_l - 1e-12 {
            break;
        }
        best = y;
        best_l = l;
    }
    start.with_time_vector(&to_full(&best))
}

/// Plain Nelder-Mead (reflection 1, expansion 2, contraction 0.5, shrink 0.5).
fn nelder_mead(f: &dyn Fn(&[f64]) -> f64, x0: &[f64], iters: usize) -> (Vec<f64>, f64) {
    let n = x0.len();
    if n == 0 {
        return (vec![], f(x0));
    }
    let mut simplex: Vec<(Vec<f64>, f64)> = vec![(x0.to_vec(), f(x0))];
    for i in 0..n {
        let mut x = x0.to_vec();
        x[i] = if x[i] != 0.0 { x[i] * 1.2 } else { 1e-4 };
        let v = f(&x);
        simplex.push((x, v));
    }
    for _ in 0..iters {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let centroid: Vec<f64> = (0..n)
            .map(|j| simplex[..n].iter().map(|p| p.0[j]).sum::<f64>() / n as f64)
            .collect();
        let worst = simplex[n].clone();
        let at = |t: f64| -> Vec<f64> {
            (0..n)
                .map(|j| centroid[j] + t * (worst.0[j] - centroid[j]))
                .collect()
        };
        let xr = at(-1.0);
        let fr = f(&xr);
        if fr < simplex[0].1 {
            let xe = at(-2.0);
            let fe = f(&xe);
            simplex[n] = if fe < fr { (xe, fe) } else { (xr, fr) };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (xr, fr);
        } else {
            let xc = at(0.5);
            let fc = f(&xc);
            if fc < worst.1 {
                simplex[n] = (xc, fc);
            } else {
                let b = simplex[0].0.clone();
                for p in simplex.iter_mut().skip(1) {
                    p.0 = (0..n).map(|j| b[j] + 0.5 * (p.0[j] - b[j])).collect();
                    p.1 = f(&p.0);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    simplex.swap_remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_known_constants() {
        // Synthetic truth: time_i = w_i / gemm_efficiency + 0.1 * layer_overhead_s * 1e4.
        let truth = Profile {
            gemm_efficiency: 0.6,
            layer_overhead_s: 2e-4,
            ..Profile::default()
        };
        let work = [1.0, 2.0, 3.0, 5.0, 8.0, 13.0];
        let f = |p: &Profile, i: usize| {
            work[i] / p.gemm_efficiency + p.layer_overhead_s * 1e4 * (i as f64 + 1.0)
        };
        let measured: Vec<f64> = (0..work.len()).map(|i| f(&truth, i)).collect();
        let mut free = [false; Profile::TIME_PARAMS];
        free[0] = true;
        free[4] = true;
        let r = fit(&Profile::default(), &measured, &free, &f);
        assert!(
            (r.profile.gemm_efficiency - 0.6).abs() < 0.01,
            "{:?}",
            r.profile
        );
        assert!(r.mape < 0.5);
    }
}
