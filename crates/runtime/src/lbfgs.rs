//! Full-batch L-BFGS (two-loop recursion) with a backtracking Armijo line search, as Spark
//! ML's MultilayerPerceptronClassifier trains by default. Works on one flat parameter vector.

use std::collections::VecDeque;

use crate::error::RunError;

/// Curvature history kept across epochs.
#[derive(Debug, Clone, Default)]
pub struct LbfgsState {
    pub(crate) s: VecDeque<Vec<f32>>,
    pub(crate) y: VecDeque<Vec<f32>>,
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// The function being minimised: (loss, gradient) at a point.
pub type Objective<'a> = dyn FnMut(&[f32]) -> Result<(f32, Vec<f32>), RunError> + 'a;

/// Runs up to `cfg.max_iter` iterations from `x`; `f` returns (loss, gradient) at a point.
/// Returns the final point, its loss and the number of iterations done.
pub fn minimize(
    cfg: &weft_dsl::Lbfgs,
    st: &mut LbfgsState,
    mut x: Vec<f32>,
    f: &mut Objective<'_>,
) -> Result<(Vec<f32>, f32, usize), RunError> {
    let (mut loss, mut g) = f(&x)?;
    let mut iters = 0;
    for _ in 0..cfg.max_iter {
        let gmax = g.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if f64::from(gmax) <= cfg.tolerance_grad {
            break;
        }
        // Two-loop recursion: d = -H g.
        let mut q: Vec<f64> = g.iter().map(|v| f64::from(*v)).collect();
        let mut alphas = Vec::with_capacity(st.s.len());
        for (s, y) in st.s.iter().zip(&st.y).rev() {
            let rho = 1.0 / dot(y, s);
            let a = rho
                * s.iter()
                    .zip(&q)
                    .map(|(s, q)| f64::from(*s) * q)
                    .sum::<f64>();
            for (qi, yi) in q.iter_mut().zip(y) {
                *qi -= a * f64::from(*yi);
            }
            alphas.push((a, rho));
        }
        let gamma = match (st.s.back(), st.y.back()) {
            (Some(s), Some(y)) => dot(s, y) / dot(y, y),
            // First step: a small step along the gradient, scaled like torch's L-BFGS.
            _ => (1.0f64).min(1.0 / g.iter().map(|v| f64::from(v.abs())).sum::<f64>().max(1e-12)),
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y), (a, rho)) in st.s.iter().zip(&st.y).zip(alphas.into_iter().rev()) {
            let b = rho
                * y.iter()
                    .zip(&q)
                    .map(|(y, q)| f64::from(*y) * q)
                    .sum::<f64>();
            for (qi, si) in q.iter_mut().zip(s) {
                *qi += (a - b) * f64::from(*si);
            }
        }
        let d: Vec<f32> = q.iter().map(|v| -*v as f32).collect();
        let slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction (bad curvature): restart from steepest descent.
            st.s.clear();
            st.y.clear();
            continue;
        }
        // Backtracking line search (Armijo condition, c1 = 1e-4).
        let mut t = cfg.lr;
        let mut accepted = None;
        for _ in 0..25 {
            let xn: Vec<f32> = x.iter().zip(&d).map(|(x, d)| x + (t as f32) * d).collect();
            let (ln, gn) = f(&xn)?;
            if ln.is_finite() && f64::from(ln) <= f64::from(loss) + 1e-4 * t * slope {
                accepted = Some((xn, ln, gn));
                break;
            }
            t *= 0.5;
        }
        let Some((xn, ln, gn)) = accepted else { break };
        let s: Vec<f32> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f32> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
        if dot(&s, &y) > 1e-10 {
            st.s.push_back(s);
            st.y.push_back(y);
            if st.s.len() > cfg.history {
                st.s.pop_front();
                st.y.pop_front();
            }
        }
        let change = (loss - ln).abs();
        x = xn;
        loss = ln;
        g = gn;
        iters += 1;
        if f64::from(change) < cfg.tolerance_change {
            break;
        }
    }
    Ok((x, loss, iters))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_the_rosenbrock_function() {
        let cfg = weft_dsl::Lbfgs {
            lr: 1.0,
            max_iter: 200,
            history: 10,
            tolerance_grad: 1e-6,
            tolerance_change: 0.0,
        };
        let mut f = |x: &[f32]| -> Result<(f32, Vec<f32>), RunError> {
            let (a, b) = (f64::from(x[0]), f64::from(x[1]));
            let loss = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
            let ga = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            let gb = 200.0 * (b - a * a);
            Ok((loss as f32, vec![ga as f32, gb as f32]))
        };
        let (x, loss, _) =
            minimize(&cfg, &mut LbfgsState::default(), vec![-1.2, 1.0], &mut f).unwrap();
        assert!(loss < 1e-4, "loss {loss} at {x:?}");
        assert!(
            (x[0] - 1.0).abs() < 0.02 && (x[1] - 1.0).abs() < 0.04,
            "{x:?}"
        );
    }
}
