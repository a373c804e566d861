//! The executor conformance suite: written once, instantiated per executor by `testgen_conformance!`.
//!
//! Each test is a function taking a [`Ctor`]; a backend's test file (`tests/cpu.rs`,
//! `tests/gpu.rs`, or any crate that dev-depends on weft-conformance) expands the macro with its
//! constructor and so gets one `#[test]` per case, named `<group>::<case>`. Tolerances live in [`tol`] and are the same for every
//! executor, so a new backend is held to the CPU's standard.

pub mod conv;
pub mod dropout;
pub mod forward;
pub mod grad;
pub mod norm;
pub mod optim;
pub mod resume;
pub mod support;
pub mod train;

use weft_exec::Executor;
use weft_planner::Plan;

/// Builds an executor for a plan (what `Device::executor` does for one device).
pub type Ctor = fn(&Plan) -> Box<dyn Executor>;

/// Every tolerance of the suite, in one place.
pub mod tol {
    /// Absolute and relative tolerance: `|a - b| <= atol + rtol * max(|a|, |b|)`.
    #[derive(Debug, Clone, Copy)]
    pub struct Tol {
        pub rtol: f32,
        pub atol: f32,
    }

    /// Step of the central finite differences, in f32. Large enough that rounding of the
    /// loss (~1e-7 relative) stays below 1e-5 of the gradient, small enough that the
    /// truncation error (eps²/6 · f''') stays below ~1e-4 on these O(1) problems.
    pub const FD_EPS: f32 = 1e-2;

    /// Analytic gradient vs central finite differences (both in f32).
    pub const GRAD: Tol = Tol {
        rtol: 2e-3,
        atol: 1e-4,
    };

    /// Forward values vs a reference computed by hand in f64 (what GPU kernels with fast
    /// transcendental functions must also meet).
    pub const FORWARD: Tol = Tol {
        rtol: 1e-4,
        atol: 1e-5,
    };

    /// Pre-activations are kept at least this far from a kink (relu, leaky_relu), so
    /// that a finite-difference step never crosses one.
    pub const KINK_MARGIN: f32 = 10.0 * FD_EPS;

    /// Dropout: the observed fraction of zeroed units may differ from `rate` by this
    /// (over 4000 units: more than 6 standard deviations).
    pub const DROPOUT_FRACTION: f64 = 0.05;
}

/// Expands to one `#[test]` per conformance case for the executor built by `$ctor`.
///
/// ```ignore
/// mod conformance;
/// fn cpu(plan: &Plan) -> Box<dyn Executor> { Box::new(CpuExecutor::new(plan)) }
/// testgen_conformance!(cpu);
/// ```
#[macro_export]
macro_rules! testgen_conformance {
    ($ctor:ident) => {
        $crate::testgen_conformance!(@group $ctor, grad: [
            dense, dense_without_bias, linear, sigmoid, tanh, softplus, relu, leaky_relu, elu,
            swish, gelu, selu, softmax, dropout, batch_norm, layer_norm, add_merge,
            add_merge_shared_input, concat_merge, merge_same_input_twice, cross_entropy,
            cross_entropy_softmax_output, binary_cross_entropy, mse_regression, mse_one_hot,
            class_weighted_losses, embedding,
        ]);
        $crate::testgen_conformance!(@group $ctor, forward: [
            dense, activations, softmax_rows_sum_to_one, add_and_concat, graph_inputs_select_columns,
            losses, class_weighted_cross_entropy, predictions_are_probabilities,
            embedding_looks_up_rows, predict_and_loss_match_their_separate_calls,
        ]);
        $crate::testgen_conformance!(@group $ctor, conv: [
            conv2d_forward, conv2d_forward_over_tiles, pool2d_forward, conv2d_grad, conv2d_strided_dilated_grad,
            max_pool2d_grad, avg_pool2d_grad, global_avg_pool2d_grad, residual_and_concat_grad,
            batch_norm2d_grad, batch_norm2d_running_statistics,
        ]);
        $crate::testgen_conformance!(@group $ctor, norm: [
            layer_norm_standardises_rows, batch_norm_eval_uses_running_statistics,
            batch_norm_eval_before_training_uses_initial_statistics, batch_norm_buffers_round_trip,
        ]);
        $crate::testgen_conformance!(@group $ctor, dropout: [
            zeroes_about_rate_and_rescales, mask_is_fixed_per_step, is_identity_in_eval,
        ]);
        $crate::testgen_conformance!(@group $ctor, optim: [
            sgd_reaches_loss_below_0_05, sgd_momentum_reaches_loss_below_0_05,
            sgd_nesterov_reaches_loss_below_0_05, adagrad_reaches_loss_below_0_05,
            rmsprop_reaches_loss_below_0_05, adam_reaches_loss_below_0_05,
            adamw_reaches_loss_below_0_05, lbfgs_reaches_loss_below_0_05,
            sgd_step_matches_reference, sgd_momentum_step_matches_reference,
            sgd_nesterov_step_matches_reference, adagrad_step_matches_reference,
            rmsprop_step_matches_reference, rmsprop_momentum_step_matches_reference,
            adam_step_matches_reference, adamw_step_matches_reference,
            dense_l1_l2_penalties_match_reference,
        ]);
        $crate::testgen_conformance!(@group $ctor, resume: [
            adam_resumes_exactly, adagrad_resumes_exactly, rmsprop_momentum_resumes_exactly,
            sgd_nesterov_resumes_exactly, lbfgs_resumes_exactly,
            early_stopped_run_resumes_to_no_more_epochs,
        ]);
        $crate::testgen_conformance!(@group $ctor, train: [
            same_plan_same_data_gives_identical_parameters, other_seed_gives_other_parameters,
            clip_grad_norm_bounds_the_update, warmup_and_step_schedule_show_in_epoch_lr,
            cosine_schedule_decays_to_min_lr, target_loss_stops_early_and_says_why,
            patience_stops_early_and_says_why,
        ]);
    };
    (@group $ctor:ident, $group:ident: [$($case:ident),* $(,)?]) => {
        mod $group {
            $(
                #[test]
                fn $case() {
                    $crate::$group::$case(super::$ctor);
                }
            )*
        }
    };
}
