//! Parameter initialisers (Glorot / He, uniform / normal, constants), seeded per parameter.

use ndarray::Array2;
use weft_common::rng::Rng;
use weft_dsl::Init;
use weft_planner::ParamInit;

/// A parameter's starting value: a pure function of (seed, the parameter's stream).
pub fn init_param(p: &ParamInit, rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng::new(seed, 1_000_000 + p.stream);
    let (fi, fo) = (p.fan_in.max(1) as f32, p.fan_out.max(1) as f32);
    let uniform = |rng: &mut Rng, limit: f32| (rng.uniform() * 2.0 - 1.0) * limit;
    Array2::from_shape_simple_fn((rows, cols), || match p.init {
        Init::GlorotUniform => uniform(&mut rng, (6.0 / (fi + fo)).sqrt()),
        Init::GlorotNormal => rng.normal() * (2.0 / (fi + fo)).sqrt(),
        Init::HeUniform => uniform(&mut rng, (6.0 / fi).sqrt()),
        Init::HeNormal => rng.normal() * (2.0 / fi).sqrt(),
        Init::Uniform => uniform(&mut rng, 0.05),
        Init::Normal => rng.normal() * 0.05,
        Init::Zeros => p.fill,
    })
}
