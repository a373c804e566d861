//! The mode codes the kernels switch on (activation, loss, optimizer, normalisation axis):
//! one Rust table per enum, from which the WGSL constants are generated.
//!
//! `Family::source` prepends [`wgsl_consts`] (`const ACT_RELU: u32 = 4u;` …) to every
//! kernel module and the WGSL names the code, so the numbers mean nothing outside this
//! file: a new variant is a line in its table and a `case` in the kernel.

use std::fmt::Write;

use weft_dsl::Activation;
use weft_planner::{LossKind, NormAxis};

/// Declares a fieldless `repr(u32)` enum and its table: each variant with the name of its
/// WGSL constant. The codes are the discriminants, 0, 1, 2… in declaration order.
macro_rules! codes {
    (
        $(#[$doc:meta])*
        $name:ident {
            $($(#[$vdoc:meta])* $variant:ident => $wgsl:literal,)+
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every code with the name of its WGSL constant.
            pub const TABLE: &'static [($name, &'static str)] = &[$(($name::$variant, $wgsl),)+];

            /// The value the kernel sees in its uniform.
            pub const fn code(self) -> u32 {
                self as u32
            }

            /// The name of its WGSL constant.
            pub fn wgsl(self) -> &'static str {
                match self {
                    $($name::$variant => $wgsl,)+
                }
            }

            /// (WGSL name, code) of every variant.
            pub fn consts() -> impl Iterator<Item = (&'static str, u32)> {
                Self::TABLE.iter().map(|&(c, name)| (name, c.code()))
            }
        }
    };
}

codes! {
    /// An activation of `act` / `act_grad` in common.wgsl. Softmax is row-wise and has
    /// kernels of its own, so it has no code.
    ActCode {
        Linear => "ACT_LINEAR",
        Sigmoid => "ACT_SIGMOID",
        Tanh => "ACT_TANH",
        Softplus => "ACT_SOFTPLUS",
        Relu => "ACT_RELU",
        LeakyRelu => "ACT_LEAKY_RELU",
        Elu => "ACT_ELU",
        Swish => "ACT_SWISH",
        /// The tanh approximation.
        Gelu => "ACT_GELU",
        Selu => "ACT_SELU",
    }
}

codes! {
    /// A loss of loss.wgsl.
    LossCode {
        SoftmaxCrossEntropy => "LOSS_SOFTMAX_CE",
        SigmoidBinaryCrossEntropy => "LOSS_SIGMOID_BCE",
        Mse => "LOSS_MSE",
        /// Mean squared error against one-hot class labels.
        MseOneHot => "LOSS_MSE_ONE_HOT",
    }
}

codes! {
    /// An update rule of optim.wgsl (SGD's three forms are separate rules there).
    OptimCode {
        Sgd => "OPT_SGD",
        SgdMomentum => "OPT_SGD_MOMENTUM",
        SgdNesterov => "OPT_SGD_NESTEROV",
        Adagrad => "OPT_ADAGRAD",
        Rmsprop => "OPT_RMSPROP",
        Adam => "OPT_ADAM",
        Adamw => "OPT_ADAMW",
    }
}

codes! {
    /// Which way reduce.wgsl groups a normalisation's statistics.
    NormAxisCode {
        /// Per column, over the rows.
        Batch => "NORM_BATCH",
        /// Per row, over the columns.
        Layer => "NORM_LAYER",
        /// Per channel of an NCHW row, over the rows and the channel's pixels.
        Channel => "NORM_CHANNEL",
    }
}

/// The activation's code and its alpha (0 for those without one); None for softmax.
pub fn act_code(a: Activation) -> Option<(ActCode, f32)> {
    Some(match a {
        Activation::Linear => (ActCode::Linear, 0.0),
        Activation::Sigmoid => (ActCode::Sigmoid, 0.0),
        Activation::Tanh => (ActCode::Tanh, 0.0),
        Activation::Softplus => (ActCode::Softplus, 0.0),
        Activation::Relu => (ActCode::Relu, 0.0),
        Activation::LeakyRelu { alpha } => (ActCode::LeakyRelu, alpha as f32),
        Activation::Elu { alpha } => (ActCode::Elu, alpha as f32),
        Activation::Swish => (ActCode::Swish, 0.0),
        Activation::Gelu => (ActCode::Gelu, 0.0),
        Activation::Selu => (ActCode::Selu, 0.0),
        Activation::Softmax => return None,
    })
}

pub fn loss_code(kind: LossKind) -> LossCode {
    match kind {
        LossKind::SoftmaxCrossEntropy => LossCode::SoftmaxCrossEntropy,
        LossKind::SigmoidBinaryCrossEntropy => LossCode::SigmoidBinaryCrossEntropy,
        LossKind::Mse { one_hot: false } => LossCode::Mse,
        LossKind::Mse { one_hot: true } => LossCode::MseOneHot,
    }
}

pub fn norm_axis_code(axis: NormAxis) -> NormAxisCode {
    match axis {
        NormAxis::Batch => NormAxisCode::Batch,
        NormAxis::Layer => NormAxisCode::Layer,
        NormAxis::Channel { .. } => NormAxisCode::Channel,
    }
}

codes! {
    /// Which per-channel sums reduce.wgsl's `channel_sums` writes.
    ChannelSumsCode {
        /// Σ dy and Σ dy·x̂ (a channel norm's input gradient).
        Both => "SUMS_BOTH",
        /// Σ dy·x̂ (gamma's gradient).
        Gamma => "SUMS_GAMMA",
        /// Σ dy (beta's gradient).
        Beta => "SUMS_BETA",
    }
}

/// (WGSL name, code) of every code of every table.
pub fn all_codes() -> impl Iterator<Item = (&'static str, u32)> {
    ActCode::consts()
        .chain(LossCode::consts())
        .chain(OptimCode::consts())
        .chain(NormAxisCode::consts())
        .chain(ChannelSumsCode::consts())
}

/// The WGSL `const` declaration of every code, prepended to every kernel module.
pub fn wgsl_consts() -> String {
    let mut out = String::from("// Mode codes, generated from the tables of codes.rs.\n");
    for (name, code) in all_codes() {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "const {name}: u32 = {code}u;");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn distinct(consts: impl Iterator<Item = (&'static str, u32)>) -> bool {
        let codes: Vec<u32> = consts.map(|(_, c)| c).collect();
        codes.iter().collect::<HashSet<_>>().len() == codes.len()
    }

    #[test]
    fn every_code_is_a_distinct_wgsl_const() {
        assert!(distinct(ActCode::consts()));
        assert!(distinct(LossCode::consts()));
        assert!(distinct(OptimCode::consts()));
        assert!(distinct(NormAxisCode::consts()));
        let src = wgsl_consts();
        let mut names = HashSet::new();
        for (name, code) in all_codes() {
            assert!(names.insert(name), "{name} is declared twice");
            assert!(
                src.contains(&format!("const {name}: u32 = {code}u;\n")),
                "{name} = {code} missing from\n{src}"
            );
        }
    }

    #[test]
    fn every_activation_but_softmax_has_a_code() {
        assert_eq!(
            act_code(Activation::LeakyRelu { alpha: 0.25 }),
            Some((ActCode::LeakyRelu, 0.25))
        );
        assert_eq!(act_code(Activation::Softmax), None);
        assert_eq!(
            loss_code(LossKind::Mse { one_hot: true }),
            LossCode::MseOneHot
        );
        assert_eq!(norm_axis_code(NormAxis::Layer), NormAxisCode::Layer);
    }
}
