//! The uniforms the kernels read: one `#[repr(C)]` struct per kernel family, declared
//! with the same field names in that family's WGSL file, and the per-step scalars.
//!
//! Every family's struct is [`UNIFORM_BYTES`] long, so one bind-group layout and one
//! stride of the parameter buffer serve every kernel. The WGSL structs stop before the
//! `_pad` fields: a binding may be longer than the struct it holds.

use super::kernels::Family;

/// The size of every family's parameters (binding 0).
pub const UNIFORM_BYTES: usize = 64;

/// The size of the per-step scalars (binding 1).
pub const STEP_BYTES: usize = 32;

/// Declares a uniform struct, checks its size at compile time, and lists its fields for
/// the test that compares them with the WGSL declaration.
macro_rules! uniform {
    (
        $(#[$doc:meta])*
        $name:ident: $bytes:expr => {
            $($(#[$fdoc:meta])* $field:ident: $ty:ty,)+
        }
    ) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty,)+
        }

        const _: () = assert!(std::mem::size_of::<$name>() == $bytes);

        #[cfg(test)]
        impl $name {
            const FIELDS: &'static [&'static str] = &[$(stringify!($field),)+];
        }
    };
}

uniform! {
    /// elementwise.wgsl. Each kernel reads `n` (or `rows` for the row-wise softmax) and
    /// the fields named in its comment.
    ElementwiseParams: UNIFORM_BYTES => {
        /// Elements, one thread each.
        n: u32,
        rows: u32,
        /// Columns of the output.
        cols: u32,
        /// `bias_act`, `act_backward`: an [`ActCode`](super::codes::ActCode) and its alpha.
        act: u32,
        alpha: f32,
        /// `bias_act`: 1 when in1 is a bias of `cols` values.
        has_bias: u32,
        /// `copy_cols`, `gather_cols`: the source's columns; `copy_cols`: the first one
        /// read, and the destination's columns and first one written.
        src_cols: u32,
        src_off: u32,
        dst_cols: u32,
        dst_off: u32,
        /// `dropout`: the stream's 32-bit halves, the rate and 1/(1 − rate).
        stream_lo: u32,
        stream_hi: u32,
        rate: f32,
        scale: f32,
        _pad: [u32; 2],
    }
}

uniform! {
    /// reduce.wgsl: sums over rows, normalisation and the gradient norm.
    ReduceParams: UNIFORM_BYTES => {
        n: u32,
        rows: u32,
        cols: u32,
        /// A [`NormAxisCode`](super::codes::NormAxisCode): how statistics are grouped.
        axis: u32,
        /// Rows per chunk of a reduction split in chunks (`reductions.rs`).
        chunk_rows: u32,
        /// Where a sum's output starts.
        out_offset: u32,
        eps: f32,
        /// Batch norm's running-statistics momentum.
        momentum: f32,
        /// NORM_CHANNEL: pixels per channel (height × width).
        area: u32,
        /// `channel_sums`: which sums it writes (a [`ChannelSumsCode`](super::codes::ChannelSumsCode)).
        sums: u32,
        _pad: [u32; 6],
    }
}

uniform! {
    /// loss.wgsl.
    LossParams: UNIFORM_BYTES => {
        rows: u32,
        /// Columns of the predictions.
        cols: u32,
        /// A [`LossCode`](super::codes::LossCode).
        kind: u32,
        /// `loss_mean`: 1 to add the summed loss to the training-loss accumulator.
        accumulate: u32,
        /// 1 when the class weights are bound (binding 4).
        weighted: u32,
        /// 1 when the rows' weights are bound (binding 5).
        row_weighted: u32,
        _pad: [u32; 10],
    }
}

uniform! {
    /// optim.wgsl: the update rule and its constants (the learning rate and Adam's bias
    /// corrections change every step and are in [`Step`]).
    OptimParams: UNIFORM_BYTES => {
        n: u32,
        /// An [`OptimCode`](super::codes::OptimCode).
        kind: u32,
        /// 1 when the gradients are scaled down to a global norm of `max_norm`.
        clip: u32,
        max_norm: f32,
        weight_decay: f32,
        /// SGD's and RMSprop's momentum.
        momentum: f32,
        /// RMSprop's decay of the squared gradients.
        rho: f32,
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        /// The first value of the arena this dispatch updates (`n` values from there).
        offset: u32,
        /// The layer's L1 / L2 penalty on these weights (`dense: {l1, l2}`).
        l1: f32,
        l2: f32,
        _pad: [u32; 3],
    }
}

uniform! {
    /// matmul.wgsl: C [m, n] = op(A) [m, k] · op(B) [k, n]; the activation itself is a
    /// constant of the kernel (`MatmulCfg`).
    MatmulParams: UNIFORM_BYTES => {
        m: u32,
        n: u32,
        k: u32,
        alpha: f32,
        _pad: [u32; 12],
    }
}

uniform! {
    /// `Step` in common.wgsl: the learning rate and the optimizer's bias corrections, and
    /// the counters of the dropout generator, written once per step.
    Step: STEP_BYTES => {
        lr: f32,
        adam_step: f32,
        inv_bc2: f32,
        decay: f32,
        step_lo: u32,
        step_hi: u32,
        seed_lo: u32,
        seed_hi: u32,
    }
}

uniform! {
    /// embedding.wgsl: a lookup or the table's gradient.
    EmbeddingParams: UNIFORM_BYTES => {
        /// Elements, one thread each.
        n: u32,
        dim: u32,
        vocab: u32,
        _pad: [u32; 13],
    }
}

uniform! {
    /// conv.wgsl: a convolution's or pooling's window; `stride`, `pad` and `dil` pack the
    /// height's value | the width's << 16.
    ConvParams: UNIFORM_BYTES => {
        /// Outputs, one thread each.
        n: u32,
        rows: u32,
        c: u32,
        h: u32,
        w: u32,
        kh: u32,
        kw: u32,
        stride: u32,
        pad: u32,
        dil: u32,
        oh: u32,
        ow: u32,
        filters: u32,
        /// Convolution: 1 when a bias is bound; pooling: 1 for max, 0 for the mean.
        bias: u32,
        /// Convolution: a fused activation's [`ActCode`](super::codes::ActCode) (linear
        /// when none) and its alpha.
        act: u32,
        alpha: f32,
    }
}

/// One kernel call's parameters, of its family's type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Uniform {
    Elementwise(ElementwiseParams),
    Reduce(ReduceParams),
    Loss(LossParams),
    Optim(OptimParams),
    Matmul(MatmulParams),
    Embedding(EmbeddingParams),
    Conv(ConvParams),
}

impl Uniform {
    /// The bytes bound at binding 0.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Uniform::Elementwise(p) => bytemuck::bytes_of(p),
            Uniform::Reduce(p) => bytemuck::bytes_of(p),
            Uniform::Loss(p) => bytemuck::bytes_of(p),
            Uniform::Optim(p) => bytemuck::bytes_of(p),
            Uniform::Matmul(p) => bytemuck::bytes_of(p),
            Uniform::Embedding(p) => bytemuck::bytes_of(p),
            Uniform::Conv(p) => bytemuck::bytes_of(p),
        }
    }

    /// Whether these are the parameters `family`'s kernels declare.
    pub fn fits(&self, family: Family) -> bool {
        matches!(
            (self, family),
            (Uniform::Elementwise(_), Family::Elementwise)
                | (Uniform::Reduce(_), Family::Reduce)
                | (Uniform::Loss(_), Family::Loss)
                | (Uniform::Optim(_), Family::Optim)
                | (Uniform::Matmul(_), Family::Matmul(_))
                | (Uniform::Embedding(_), Family::Embedding)
                | (Uniform::Conv(_), Family::Conv | Family::ConvGemm(_))
        )
    }
}

macro_rules! into_uniform {
    ($($ty:ident => $variant:ident),+) => {
        $(impl From<$ty> for Uniform {
            fn from(p: $ty) -> Uniform {
                Uniform::$variant(p)
            }
        })+
    };
}

into_uniform!(
    ElementwiseParams => Elementwise,
    ReduceParams => Reduce,
    LossParams => Loss,
    OptimParams => Optim,
    MatmulParams => Matmul,
    EmbeddingParams => Embedding,
    ConvParams => Conv
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The field names of WGSL `struct name { … }` in `src`, comments left out.
    fn wgsl_fields(src: &str, name: &str) -> Vec<String> {
        let code: String = src
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let start = code
            .find(&format!("struct {name} {{"))
            .unwrap_or_else(|| panic!("no struct {name}"));
        let body = &code[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
        body.split(',')
            .filter_map(|f| f.split(':').next())
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect()
    }

    fn check(src: &str, name: &str, var: Option<&str>, fields: &[&str]) {
        let rust: Vec<&str> = fields
            .iter()
            .copied()
            .filter(|f| !f.starts_with("_pad"))
            .collect();
        assert_eq!(wgsl_fields(src, name), rust, "struct {name}");
        if let Some(var) = var {
            assert!(
                src.contains(&format!("var<uniform> {var}: {name};")),
                "no uniform of type {name}"
            );
        }
    }

    #[test]
    fn wgsl_structs_have_the_rust_fields_in_order() {
        let p = Some("P");
        check(include_str!("common.wgsl"), "Step", Some("S"), Step::FIELDS);
        check(
            include_str!("elementwise.wgsl"),
            "ElementwiseParams",
            p,
            ElementwiseParams::FIELDS,
        );
        check(
            include_str!("reduce.wgsl"),
            "ReduceParams",
            p,
            ReduceParams::FIELDS,
        );
        check(
            include_str!("loss.wgsl"),
            "LossParams",
            p,
            LossParams::FIELDS,
        );
        check(
            include_str!("optim.wgsl"),
            "OptimParams",
            p,
            OptimParams::FIELDS,
        );
        check(
            include_str!("matmul.wgsl"),
            "MatmulParams",
            p,
            MatmulParams::FIELDS,
        );
        check(
            include_str!("conv_window.wgsl"),
            "ConvParams",
            p,
            ConvParams::FIELDS,
        );
        check(
            include_str!("embedding.wgsl"),
            "EmbeddingParams",
            p,
            EmbeddingParams::FIELDS,
        );
    }

    #[test]
    fn parameters_are_little_endian_words_in_declaration_order() {
        let p = Uniform::from(LossParams {
            rows: 3,
            cols: 0x0102_0304,
            ..LossParams::default()
        });
        let b = p.bytes();
        assert_eq!(b.len(), UNIFORM_BYTES);
        assert_eq!(&b[..8], &[3, 0, 0, 0, 4, 3, 2, 1]);
        assert!(p.fits(Family::Loss) && !p.fits(Family::Reduce));
    }
}
