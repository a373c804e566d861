//! The WGSL kernels: which file and entry point each one is, their parameters, and the
//! compiled pipelines (built once per process and device, on first use).

use std::sync::Arc;

use weft_dsl::Activation;

use super::context::GpuContext;
use crate::error::ExecError;

const COMMON: &str = include_str!("common.wgsl");
const RANDOM: &str = include_str!("random.wgsl");
const ELEMENTWISE: &str = include_str!("elementwise.wgsl");
const REDUCE: &str = include_str!("reduce.wgsl");
const LOSS: &str = include_str!("loss.wgsl");
const OPTIM: &str = include_str!("optim.wgsl");
const MATMUL: &str = include_str!("matmul.wgsl");

/// A matmul specialisation: tile size, transposed operands and the fused epilogue are
/// compile-time constants of the kernel, so each variant is its own pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulCfg {
    /// Tile edge: 64 (4×4 per thread) or 128 (8×8 per thread).
    pub tile: u32,
    pub ta: bool,
    pub tb: bool,
    pub bias: bool,
    pub act: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Elementwise,
    Reduce,
    Loss,
    Optim,
    Matmul(MatmulCfg),
}

impl Family {
    fn source(self) -> String {
        match self {
            Family::Elementwise => format!("{COMMON}\n{RANDOM}\n{ELEMENTWISE}"),
            Family::Reduce => format!("{COMMON}\n{REDUCE}"),
            Family::Loss => format!("{COMMON}\n{LOSS}"),
            Family::Optim => format!("{COMMON}\n{OPTIM}"),
            Family::Matmul(c) => {
                let t = c.tile / 16;
                // A 16-deep K step for 64-tiles, 8 for 128-tiles: 8 KiB of workgroup memory.
                let bk = if c.tile >= 128 { 8 } else { 16 };
                format!(
                    "const BM: u32 = {}u;\nconst BN: u32 = {}u;\nconst BK: u32 = {bk}u;\nconst TM: u32 = {t}u;\nconst TN: u32 = {t}u;\nconst TA: bool = {};\nconst TB: bool = {};\nconst BIAS: bool = {};\nconst ACT: u32 = {}u;\n{COMMON}\n{MATMUL}",
                    c.tile, c.tile, c.ta, c.tb, c.bias, c.act
                )
            }
        }
    }
}

/// A kernel: a family's module and one of its entry points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kernel {
    pub family: Family,
    pub entry: &'static str,
}

impl Kernel {
    pub fn elementwise(entry: &'static str) -> Kernel {
        Kernel {
            family: Family::Elementwise,
            entry,
        }
    }
    pub fn reduce(entry: &'static str) -> Kernel {
        Kernel {
            family: Family::Reduce,
            entry,
        }
    }
    pub fn loss(entry: &'static str) -> Kernel {
        Kernel {
            family: Family::Loss,
            entry,
        }
    }
    pub fn optim() -> Kernel {
        Kernel {
            family: Family::Optim,
            entry: "update",
        }
    }
    pub fn matmul(cfg: MatmulCfg) -> Kernel {
        Kernel {
            family: Family::Matmul(cfg),
            entry: "matmul",
        }
    }

    /// The compiled pipeline (compiled on first use, then cached in the context).
    pub fn pipeline(&self, ctx: &GpuContext) -> Result<Arc<wgpu::ComputePipeline>, ExecError> {
        let key = format!("{:?}/{}", self.family, self.entry);
        let mut cache = ctx.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = ctx
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&key),
                source: wgpu::ShaderSource::Wgsl(self.family.source().into()),
            });
        let pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&key),
                layout: Some(&ctx.pipeline_layout),
                module: &module,
                entry_point: Some(self.entry),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(ExecError::Internal(format!(
                "the GPU kernel {key} does not compile on {}: {e}",
                ctx.info.name
            )));
        }
        let p = Arc::new(pipeline);
        cache.insert(key, p.clone());
        Ok(p)
    }
}

/// The activation's code in common.wgsl and its alpha. Softmax is row-wise and has its own
/// kernels, so it has no code.
pub fn act_code(a: Activation) -> Option<(u32, f32)> {
    Some(match a {
        Activation::Linear => (0, 0.0),
        Activation::Sigmoid => (1, 0.0),
        Activation::Tanh => (2, 0.0),
        Activation::Softplus => (3, 0.0),
        Activation::Relu => (4, 0.0),
        Activation::LeakyRelu { alpha } => (5, alpha as f32),
        Activation::Elu { alpha } => (6, alpha as f32),
        Activation::Swish => (7, 0.0),
        Activation::Gelu => (8, 0.0),
        Activation::Softmax => return None,
    })
}

/// A kernel's `Params` (common.wgsl): sizes, integer options and float options.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Params {
    pub n: u32,
    pub rows: u32,
    pub cols: u32,
    pub k: u32,
    pub a: u32,
    pub b: u32,
    pub c: u32,
    pub d: u32,
    pub f: [f32; 8],
}

impl Params {
    pub const BYTES: usize = 64;

    pub fn bytes(&self) -> [u8; Params::BYTES] {
        let mut out = [0u8; Params::BYTES];
        let ints = [
            self.n, self.rows, self.cols, self.k, self.a, self.b, self.c, self.d,
        ];
        for (i, v) in ints.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        for (i, v) in self.f.iter().enumerate() {
            out[32 + 4 * i..36 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        out
    }
}

/// Workgroups for one thread per item in 256-wide groups, spread over y when x would
/// exceed the per-dimension limit (see `flat_index` in common.wgsl).
pub fn groups_1d(items: usize, max_per_dim: u32) -> (u32, u32, u32) {
    let g = items.div_ceil(256) as u64;
    if g == 0 {
        return (0, 1, 1);
    }
    let x = g.min(u64::from(max_per_dim));
    (x as u32, g.div_ceil(x) as u32, 1)
}
