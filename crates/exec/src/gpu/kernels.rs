//! The WGSL kernels: which file and entry point each one is, the source of each family's
//! module, and the compiled pipelines (built once per process and device, on first use).

use std::sync::Arc;

use super::codes::{wgsl_consts, ActCode};
use super::context::GpuContext;
use crate::error::ExecError;

const COMMON: &str = include_str!("common.wgsl");
const RANDOM: &str = include_str!("random.wgsl");
const ELEMENTWISE: &str = include_str!("elementwise.wgsl");
const REDUCE: &str = include_str!("reduce.wgsl");
const LOSS: &str = include_str!("loss.wgsl");
const OPTIM: &str = include_str!("optim.wgsl");
const GEMM: &str = include_str!("gemm.wgsl");
const MATMUL: &str = include_str!("matmul.wgsl");
const EMBEDDING: &str = include_str!("embedding.wgsl");
const CONV_WINDOW: &str = include_str!("conv_window.wgsl");
const CONV: &str = include_str!("conv.wgsl");
const CONV_GEMM: &str = include_str!("conv_gemm.wgsl");

/// A matmul specialisation: tile size, transposed operands and the fused epilogue are
/// compile-time constants of the kernel, so each variant is its own pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulCfg {
    /// Tile edge: 64 (4×4 per thread) or 128 (8×8 per thread).
    pub tile: u32,
    pub ta: bool,
    pub tb: bool,
    pub bias: bool,
    pub act: ActCode,
}

/// A convolution as an implicit GEMM (conv_gemm.wgsl): the tile of C, `bm` filters × `bn`
/// output columns (a convolution has few filters, so its tiles are short and wide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvGemmCfg {
    pub bm: u32,
    pub bn: u32,
}

/// The constants of gemm.wgsl for a `bm`×`bn` tile of C (multiples of 16, the thread
/// grid's edge) whose operands are read in the order `ta`, `tb`.
fn gemm_consts(bm: u32, bn: u32, ta: bool, tb: bool) -> String {
    let (tm, tn) = (bm / 16, bn / 16);
    // A 16-deep K step, 8 when a tile edge is 128: at most 8 KiB of workgroup memory.
    let bk = if bm.max(bn) >= 128 { 8 } else { 16 };
    format!(
        "const BM: u32 = {bm}u;\nconst BN: u32 = {bn}u;\nconst BK: u32 = {bk}u;\nconst TM: u32 = {tm}u;\nconst TN: u32 = {tn}u;\nconst TA: bool = {ta};\nconst TB: bool = {tb};\n"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Elementwise,
    Reduce,
    Loss,
    Optim,
    Matmul(MatmulCfg),
    Embedding,
    Conv,
    ConvGemm(ConvGemmCfg),
}

impl Family {
    /// The module's WGSL: the generated constants, common.wgsl, then the family's files.
    fn source(self) -> String {
        let codes = wgsl_consts();
        match self {
            Family::Elementwise => format!("{codes}{COMMON}\n{RANDOM}\n{ELEMENTWISE}"),
            Family::Reduce => format!("{codes}{COMMON}\n{REDUCE}"),
            Family::Loss => format!("{codes}{COMMON}\n{LOSS}"),
            Family::Optim => format!("{codes}{COMMON}\n{OPTIM}"),
            Family::Embedding => format!("{codes}{COMMON}\n{EMBEDDING}"),
            Family::Conv => format!("{codes}{COMMON}\n{CONV_WINDOW}\n{CONV}"),
            Family::Matmul(c) => format!(
                "{}const BIAS: bool = {};\nconst ACT: u32 = {};\n{codes}{COMMON}\n{MATMUL}\n{GEMM}",
                gemm_consts(c.tile, c.tile, c.ta, c.tb),
                c.bias,
                c.act.wgsl()
            ),
            // The weights are read along K, the columns along N (consecutive positions).
            Family::ConvGemm(c) => format!(
                "{}{codes}{COMMON}\n{CONV_WINDOW}\n{CONV_GEMM}\n{GEMM}",
                gemm_consts(c.bm, c.bn, false, false),
            ),
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
    pub fn embedding(entry: &'static str) -> Kernel {
        Kernel {
            family: Family::Embedding,
            entry,
        }
    }
    pub fn conv(entry: &'static str) -> Kernel {
        Kernel {
            family: Family::Conv,
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
            entry: "gemm",
        }
    }
    pub fn conv_gemm(cfg: ConvGemmCfg) -> Kernel {
        Kernel {
            family: Family::ConvGemm(cfg),
            entry: "gemm",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::codes::all_codes;

    fn families() -> Vec<Family> {
        let mm = MatmulCfg {
            tile: 64,
            ta: false,
            tb: true,
            bias: true,
            act: ActCode::Gelu,
        };
        vec![
            Family::Elementwise,
            Family::Reduce,
            Family::Loss,
            Family::Optim,
            Family::Matmul(mm),
            Family::Embedding,
            Family::Conv,
            Family::ConvGemm(ConvGemmCfg { bm: 16, bn: 128 }),
        ]
    }

    /// The identifiers outside comments of `src` that look like generated code names.
    fn code_names(src: &str) -> Vec<&str> {
        src.lines()
            .flat_map(|l| {
                l.split("//")
                    .next()
                    .unwrap_or("")
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            })
            .filter(|w| {
                ["ACT_", "LOSS_", "OPT_", "NORM_"]
                    .iter()
                    .any(|p| w.starts_with(p))
            })
            .collect()
    }

    #[test]
    fn every_module_declares_every_code_it_names() {
        let codes: Vec<(&str, u32)> = all_codes().collect();
        for family in families() {
            let src = family.source();
            for (name, code) in &codes {
                assert!(
                    src.contains(&format!("const {name}: u32 = {code}u;")),
                    "{family:?} lacks {name}"
                );
            }
            for name in code_names(&src) {
                assert!(
                    codes.iter().any(|(n, _)| *n == name),
                    "{family:?} names {name}, which codes.rs does not declare"
                );
            }
            assert!(
                src.contains("const ACT: u32 = ACT_GELU;") == matches!(family, Family::Matmul(_))
            );
        }
    }

    #[test]
    fn kernels_switch_on_names_not_numbers() {
        for family in families() {
            let src = family.source();
            for line in src.lines() {
                let case = line.trim_start().strip_prefix("case ");
                assert!(
                    !case.is_some_and(|c| c.starts_with(|c: char| c.is_ascii_digit())),
                    "{family:?}: `{}` switches on a number",
                    line.trim()
                );
            }
        }
    }
}
