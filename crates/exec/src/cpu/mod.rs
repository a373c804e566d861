//! The CPU executor: runs a plan's schedules over ndarray buffers, one kernel per node.
//!
//! Each node owns a buffer that is reused from step to step (no allocation in the steady
//! state); parameters and optimizer state live here for the whole run.

pub mod conv;
pub mod kernels;
pub mod matmul;
pub mod simd;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView1, ArrayView2};
use weft_common::rng::uniform_at;
use weft_planner::{Op, Phase, Plan, Schedules};

use crate::error::ExecError;
use crate::init::init_param;
use crate::optim::{self, OptimState, State};
use crate::{check_batch, check_labels, check_params, Executor};
use kernels::{ensure, flat, flat_mut};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Train,
    Eval,
}

pub struct CpuExecutor {
    plan: Plan,
    vals: Vec<Array2<f32>>,
    opt: Vec<State>,
    /// Batch-norm running (mean, var) by node id.
    running: HashMap<usize, (Vec<f32>, Vec<f32>)>,
    param_index: HashMap<usize, usize>,
    /// The update part of the train schedule (grad norm, optimizer updates).
    updates: Vec<usize>,
    /// Gradient node → parameter index, to report each gradient once it is final.
    grad_param: HashMap<usize, usize>,
    /// Time and calls per node, kept when `RUST_LOG=debug` (reported when dropped).
    profile: Option<Vec<(Duration, u64)>>,
    /// The batch rows' weights (`set_sample_weights`).
    sample_w: Option<Vec<f32>>,
}

impl CpuExecutor {
    /// Sets up buffers and initialises parameters from the plan's seed.
    pub fn new(plan: &Plan) -> CpuExecutor {
        let mut vals: Vec<Array2<f32>> = vec![Array2::zeros((0, 0)); plan.nodes.len()];
        for p in &plan.params {
            if let Op::Param { init } = &plan.nodes[p.node].op {
                let rows = p.shape.rows_at(1);
                vals[p.node] = init_param(init, rows, p.shape.cols, plan.seed);
            }
        }
        CpuExecutor {
            param_index: plan
                .params
                .iter()
                .enumerate()
                .map(|(i, p)| (p.node, i))
                .collect(),
            opt: vec![State::default(); plan.params.len()],
            grad_param: plan
                .params
                .iter()
                .enumerate()
                .map(|(i, p)| (p.grad, i))
                .collect(),
            updates: plan
                .schedules
                .train
                .iter()
                .copied()
                .filter(|&id| plan.nodes[id].phase == Phase::Update)
                .collect(),
            running: HashMap::new(),
            profile: tracing::enabled!(tracing::Level::DEBUG)
                .then(|| vec![(Duration::ZERO, 0); plan.nodes.len()]),
            sample_w: None,
            vals,
            plan: plan.clone(),
        }
    }

    /// Runs one of the plan's schedules on a batch (the schedule is lent out while it runs).
    #[allow(clippy::too_many_arguments)]
    fn run_schedule(
        &mut self,
        pick: fn(&mut Schedules) -> &mut Vec<usize>,
        x: ArrayView2<f32>,
        y: Option<ArrayView1<f32>>,
        mode: Mode,
        step: u64,
        lr: f32,
        ready: Option<Ready>,
    ) -> Result<(), ExecError> {
        check_batch(&self.plan, &x)?;
        if let Some(y) = &y {
            check_labels(&x, y)?;
        }
        let ids = std::mem::take(pick(&mut self.plan.schedules));
        let r = self.run(&ids, x, y, mode, step, lr, ready);
        *pick(&mut self.plan.schedules) = ids;
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        ids: &[usize],
        x: ArrayView2<f32>,
        y: Option<ArrayView1<f32>>,
        mode: Mode,
        step: u64,
        lr: f32,
        mut ready: Option<Ready>,
    ) -> Result<(), ExecError> {
        for &id in ids {
            let started = self.profile.is_some().then(Instant::now);
            let mut out = std::mem::take(&mut self.vals[id]);
            let r = self.node(id, &mut out, x, y, mode, step, lr);
            self.vals[id] = out;
            if let (Some(p), Some(t)) = (&mut self.profile, started) {
                p[id].0 += t.elapsed();
                p[id].1 += 1;
            }
            r?;
            if let (Some(f), Some(&i)) = (ready.as_mut(), self.grad_param.get(&id)) {
                f(i, &self.vals[id]);
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn node(
        &mut self,
        id: usize,
        out: &mut Array2<f32>,
        x: ArrayView2<f32>,
        y: Option<ArrayView1<f32>>,
        mode: Mode,
        step: u64,
        lr: f32,
    ) -> Result<(), ExecError> {
        let node = &self.plan.nodes[id];
        let v = &self.vals;
        let input = |i: usize| &v[node.inputs[i]];
        let weights = kernels::LossWeights {
            class: self.plan.class_weights.as_deref(),
            rows: self
                .sample_w
                .as_deref()
                .filter(|_| self.plan.sample_weighted),
        };
        match &node.op {
            Op::Input { columns } => {
                // `check_batch` has made sure x has every feature column.
                ensure(out, x.nrows(), columns.len());
                if columns.len() == x.ncols() && columns.iter().enumerate().all(|(i, c)| i == *c) {
                    match (x.as_slice(), out.as_slice_mut()) {
                        // One memcpy (vectorised by libc at run time).
                        (Some(src), Some(dst)) => dst.copy_from_slice(src),
                        _ => out.assign(&x),
                    }
                } else {
                    for (j, c) in columns.iter().enumerate() {
                        out.column_mut(j).assign(&x.column(*c));
                    }
                }
            }
            Op::Target => {
                let y =
                    y.ok_or_else(|| ExecError::Internal("labels needed but not given".into()))?;
                ensure(out, y.len(), 1);
                out.column_mut(0).assign(&y);
            }
            Op::Param { .. } => {}
            Op::MatMul { ta, tb } => {
                matmul::matmul(input(0).view(), input(1).view(), *ta, *tb, out)
            }
            Op::BiasAdd => kernels::bias_add(input(0), input(1), out),
            Op::Act(a) => kernels::activation(*a, input(0), out),
            Op::BiasAct(a) => kernels::bias_activation(*a, input(0), input(1), out),
            // A GPU plan's epilogue, run by the CPU too: the product, then bias and
            // activation in place.
            Op::MatMulBias { ta, tb, act } => {
                matmul::matmul(input(0).view(), input(1).view(), *ta, *tb, out);
                kernels::bias_activation_in_place(*act, input(2), out);
            }
            Op::Dropout { rate, stream } | Op::DropoutGrad { rate, stream } => {
                let a = input(0);
                ensure(out, a.nrows(), a.ncols());
                if mode == Mode::Eval || *rate == 0.0 {
                    out.assign(a);
                } else {
                    let keep = 1.0 / (1.0 - rate);
                    let seed = self.plan.seed;
                    for (i, (o, &v)) in flat_mut(out).iter_mut().zip(flat(a)).enumerate() {
                        let u = uniform_at(seed, *stream, (step << 32) | i as u64);
                        *o = if u < *rate { 0.0 } else { v * keep };
                    }
                }
            }
            Op::Norm {
                axis,
                eps,
                momentum,
            } => {
                let (a, gamma, beta) = (input(0), input(1), input(2));
                let groups = axis.groups(a.nrows(), a.ncols());
                let (mean, inv) = match mode {
                    // Before any training step the running statistics are their initial
                    // values (mean 0, variance 1), so an eval row never depends on its batch.
                    Mode::Eval if axis.running() => match self.running.get(&id) {
                        Some((m, var)) => (
                            m.clone(),
                            var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect(),
                        ),
                        None => (vec![0.0; groups], vec![1.0 / (1.0 + eps).sqrt(); groups]),
                    },
                    _ => kernels::norm_stats(*axis, a.view(), *eps),
                };
                kernels::norm_apply(*axis, a, &mean, &inv, gamma, beta, out);
                if axis.running() && mode == Mode::Train {
                    let var: Vec<f32> = inv.iter().map(|i| 1.0 / (i * i) - eps).collect();
                    let m = *momentum;
                    let entry = self
                        .running
                        .entry(id)
                        .or_insert_with(|| (vec![0.0; mean.len()], vec![1.0; mean.len()]));
                    for j in 0..mean.len() {
                        entry.0[j] = (1.0 - m) * entry.0[j] + m * mean[j];
                        entry.1[j] = (1.0 - m) * entry.1[j] + m * var[j];
                    }
                }
            }
            Op::Add => {
                let first = input(0);
                ensure(out, first.nrows(), first.ncols());
                out.assign(first);
                for i in 1..node.inputs.len() {
                    *out += input(i);
                }
            }
            Op::Concat => {
                let rows = input(0).nrows();
                ensure(out, rows, node.shape.cols);
                let mut start = 0;
                for i in 0..node.inputs.len() {
                    let a = input(i);
                    out.slice_mut(ndarray::s![.., start..start + a.ncols()])
                        .assign(a);
                    start += a.ncols();
                }
            }
            Op::Loss(kind) => {
                ensure(out, 1, 1);
                out[[0, 0]] = kernels::loss(*kind, input(0), input(1), weights);
            }
            Op::ActGrad(a) => kernels::activation_grad(*a, input(0), input(1), input(2), out),
            Op::SumRows => {
                let a = input(0);
                ensure(out, 1, a.ncols());
                let c = a.ncols();
                let o = flat_mut(out);
                o.fill(0.0);
                for row in flat(a).chunks_exact(c) {
                    for j in 0..c {
                        o[j] += row[j];
                    }
                }
            }
            Op::NormGrad { axis, eps, part } => {
                kernels::norm_grad(*axis, *part, *eps, input(0), input(1), input(2), out)
            }
            Op::Slice { start, end } => {
                let a = input(0);
                ensure(out, a.nrows(), end - start);
                out.assign(&a.slice(ndarray::s![.., *start..*end]));
            }
            Op::LossGrad(kind) => kernels::loss_grad(*kind, input(0), input(1), weights, out),
            Op::Conv2d { win, filters, act } => conv::conv2d(
                input(0),
                input(1),
                (node.inputs.len() == 3).then(|| input(2)),
                win,
                (*filters, *act),
                out,
            ),
            // dy is the last input (the bias's gradient has no other).
            Op::Conv2dGrad { win, filters, part } => {
                let dy = input(node.inputs.len() - 1);
                conv::conv2d_grad(*part, input(0), dy, win, *filters, out)
            }
            Op::Pool2d { kind, win } => conv::pool2d(*kind, input(0), win, out),
            Op::Pool2dGrad { kind, win } => conv::pool2d_grad(*kind, input(0), input(1), win, out),
            Op::Flatten => {
                let a = input(0);
                ensure(out, a.nrows(), a.ncols());
                out.assign(a);
            }
            Op::Embedding => kernels::embedding(input(0), input(1), out),
            Op::EmbeddingGrad { vocab } => kernels::embedding_grad(input(0), input(1), *vocab, out),
            Op::GradNorm => {
                let mut s = 0.0f64;
                for i in 0..node.inputs.len() {
                    s += flat(input(i))
                        .iter()
                        .map(|g| f64::from(*g) * f64::from(*g))
                        .sum::<f64>();
                }
                ensure(out, 1, 1);
                out[[0, 0]] = s.sqrt() as f32;
            }
            Op::Update { penalty, .. } => {
                let (p_id, g_id) = (node.inputs[0], node.inputs[1]);
                let gscale = match (node.inputs.get(2), self.plan.train.clip_grad_norm) {
                    (Some(n), Some(max)) => {
                        let norm = v[*n][[0, 0]];
                        if norm > max as f32 {
                            max as f32 / (norm + 1e-6)
                        } else {
                            1.0
                        }
                    }
                    _ => 1.0,
                };
                let pi = self.param_index[&p_id];
                let mut param = std::mem::take(&mut self.vals[p_id]);
                optim::update(
                    &self.plan.train.optimizer,
                    lr,
                    flat_mut(&mut param),
                    flat(&self.vals[g_id]),
                    (gscale, *penalty),
                    &mut self.opt[pi],
                );
                self.vals[p_id] = param;
            }
            Op::LbfgsStep => {}
        }
        Ok(())
    }

    fn loss_value(&self) -> f32 {
        self.vals[self.plan.loss]
            .first()
            .copied()
            .unwrap_or(f32::NAN)
    }
}

/// Called with (parameter index, gradient) as each gradient becomes final.
type Ready<'a> = &'a mut dyn FnMut(usize, &Array2<f32>);

impl Executor for CpuExecutor {
    fn device_name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn train_step(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView1<f32>,
        step: u64,
        lr: f32,
    ) -> Result<f32, ExecError> {
        self.run_schedule(|s| &mut s.train, x, Some(y), Mode::Train, step, lr, None)?;
        Ok(self.loss_value())
    }

    fn loss_and_grads(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView1<f32>,
        step: u64,
    ) -> Result<f32, ExecError> {
        self.run_schedule(
            |s| &mut s.gradients,
            x,
            Some(y),
            Mode::Train,
            step,
            0.0,
            None,
        )?;
        Ok(self.loss_value())
    }

    fn loss_and_grads_streaming(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView1<f32>,
        step: u64,
        ready: &mut dyn FnMut(usize, &Array2<f32>),
    ) -> Result<f32, ExecError> {
        let mode = Mode::Train;
        self.run_schedule(
            |s| &mut s.gradients,
            x,
            Some(y),
            mode,
            step,
            0.0,
            Some(ready),
        )?;
        Ok(self.loss_value())
    }

    fn eval_loss(&mut self, x: ArrayView2<f32>, y: ArrayView1<f32>) -> Result<f32, ExecError> {
        self.run_schedule(|s| &mut s.eval, x, Some(y), Mode::Eval, 0, 0.0, None)?;
        Ok(self.loss_value())
    }

    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>, ExecError> {
        self.run_schedule(|s| &mut s.predict, x, None, Mode::Eval, 0, 0.0, None)?;
        Ok(self.vals[self.plan.output].clone())
    }

    /// The evaluation schedule, then only the prediction's nodes it did not run (the
    /// output activation): one forward pass for both.
    fn predict_and_loss(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView1<f32>,
    ) -> Result<(Array2<f32>, f32), ExecError> {
        self.run_schedule(|s| &mut s.eval, x, Some(y), Mode::Eval, 0, 0.0, None)?;
        let loss = self.loss_value();
        let done: std::collections::HashSet<usize> =
            self.plan.schedules.eval.iter().copied().collect();
        let rest: Vec<usize> = self
            .plan
            .schedules
            .predict
            .iter()
            .copied()
            .filter(|id| !done.contains(id))
            .collect();
        self.run(&rest, x, Some(y), Mode::Eval, 0, 0.0, None)?;
        Ok((self.vals[self.plan.output].clone(), loss))
    }

    fn params(&self) -> Result<Vec<Array2<f32>>, ExecError> {
        Ok(self
            .plan
            .params
            .iter()
            .map(|p| self.vals[p.node].clone())
            .collect())
    }

    fn grads(&self) -> Result<Vec<Array2<f32>>, ExecError> {
        Ok(self
            .plan
            .params
            .iter()
            .map(|p| self.vals[p.grad].clone())
            .collect())
    }

    fn set_params(&mut self, params: &[Array2<f32>]) -> Result<(), ExecError> {
        check_params(&self.plan, params, "parameters")?;
        for (p, v) in self.plan.params.iter().zip(params) {
            self.vals[p.node] = v.as_standard_layout().to_owned();
        }
        Ok(())
    }

    fn apply_grads(&mut self, grads: &[Array2<f32>], step: u64, lr: f32) -> Result<(), ExecError> {
        check_params(&self.plan, grads, "gradients")?;
        for (p, g) in self.plan.params.iter().zip(grads) {
            self.vals[p.grad] = g.as_standard_layout().to_owned();
        }
        let ids = std::mem::take(&mut self.updates);
        let dummy = Array2::<f32>::zeros((0, self.plan.features.len()));
        let r = self.run(&ids, dummy.view(), None, Mode::Train, step, lr, None);
        self.updates = ids;
        r
    }

    fn buffers(&self) -> Result<Vec<(String, Array2<f32>)>, ExecError> {
        let mut out = Vec::new();
        let mut ids: Vec<&usize> = self.running.keys().collect();
        ids.sort();
        for id in ids {
            let (m, v) = &self.running[id];
            let name = &self.plan.nodes[*id].name;
            out.push((
                format!("{name}.running_mean"),
                Array2::from_shape_vec((1, m.len()), m.clone()).unwrap_or_default(),
            ));
            out.push((
                format!("{name}.running_var"),
                Array2::from_shape_vec((1, v.len()), v.clone()).unwrap_or_default(),
            ));
        }
        Ok(out)
    }

    fn optimizer_state(&self) -> Result<OptimState, ExecError> {
        let updates = self.opt.iter().map(|s| s.t).max().unwrap_or(0);
        let (mut m, mut v) = (Vec::new(), Vec::new());
        if self.opt.iter().any(|s| !s.m.is_empty()) {
            for (p, s) in self.plan.params.iter().zip(&self.opt) {
                if s.m.len() != p.shape.numel(1) || s.v.len() != s.m.len() {
                    return Err(ExecError::Internal(format!(
                        "the optimizer state of `{}` is incomplete",
                        p.name
                    )));
                }
                m.extend_from_slice(&s.m);
                v.extend_from_slice(&s.v);
            }
        }
        Ok(OptimState { updates, m, v })
    }

    fn set_optimizer_state(&mut self, state: &OptimState) -> Result<(), ExecError> {
        let fresh = State {
            t: state.updates,
            ..State::default()
        };
        if state.m.is_empty() && state.v.is_empty() {
            self.opt = vec![fresh; self.plan.params.len()];
            return Ok(());
        }
        let m = crate::split_flat(&self.plan, &state.m, "optimizer state (m)")?;
        let v = crate::split_flat(&self.plan, &state.v, "optimizer state (v)")?;
        self.opt = m
            .into_iter()
            .zip(v)
            .map(|(m, v)| State {
                m: m.into_raw_vec_and_offset().0,
                v: v.into_raw_vec_and_offset().0,
                t: state.updates,
            })
            .collect();
        Ok(())
    }

    fn set_sample_weights(&mut self, w: Option<&[f32]>) {
        crate::keep_weights(&mut self.sample_w, w);
    }

    fn set_buffers(&mut self, buffers: &[(String, Array2<f32>)]) {
        for node in &self.plan.nodes {
            if let Op::Norm { axis, .. } = node.op {
                if !axis.running() {
                    continue;
                }
                let find = |suffix: &str| {
                    buffers
                        .iter()
                        .find(|(n, _)| *n == format!("{}.{suffix}", node.name))
                        .map(|(_, a)| a.iter().copied().collect::<Vec<f32>>())
                };
                if let (Some(m), Some(v)) = (find("running_mean"), find("running_var")) {
                    self.running.insert(node.id, (m, v));
                }
            }
        }
    }
}

impl Drop for CpuExecutor {
    /// With `RUST_LOG=debug`: the time spent per kernel, largest first.
    fn drop(&mut self) {
        let Some(profile) = &self.profile else { return };
        let total: Duration = profile.iter().map(|p| p.0).sum();
        let mut rows: Vec<(usize, &(Duration, u64))> = profile
            .iter()
            .enumerate()
            .filter(|(_, p)| p.1 > 0)
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1 .0));
        tracing::debug!("cpu executor: {:.3}s in kernels", total.as_secs_f64());
        for (id, (t, calls)) in rows {
            let n = &self.plan.nodes[id];
            tracing::debug!(
                "{:>6.1}% {:>9.1}us/call {:>8} calls  {} {}",
                100.0 * t.as_secs_f64() / total.as_secs_f64().max(1e-12),
                t.as_secs_f64() * 1e6 / *calls as f64,
                calls,
                n.op.name(),
                n.name
            );
        }
    }
}
