//! Synthetic classification data in the manner of scikit-learn's `make_classification`.
//!
//! Each class owns up to three Gaussian clusters centred on distinct vertices of a hypercube
//! (side 2·`CLASS_SEP`) in the informative subspace; each cluster's N(0, 1) points are mixed
//! by its own random linear map, so classes are not linearly separable but an MLP learns
//! them. The other features are N(0, 1) noise. Rows are shuffled; a seed fixes everything.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use weft_common::builtin::{synthetic_feature, SYNTHETIC_LABEL};
use weft_common::rng::Rng;
use weft_dsl::SyntheticSpec;

use crate::error::DataError;
use crate::table::Table;

/// Half the side of the hypercube whose vertices are the cluster centres.
const CLASS_SEP: f32 = 1.0;
/// Clusters per class, when the informative hypercube has enough vertices.
const CLUSTERS_PER_CLASS: usize = 3;
/// The random stream of synthetic data (split shuffles use stream 1).
const STREAM: u64 = 2;

/// A table with columns `x0…x{features-1}` (Float32) and `label` (Int64, 0..classes).
pub fn synthetic(spec: &SyntheticSpec) -> Result<Table, DataError> {
    let (columns, labels) = generate(spec)?;
    let mut fields: Vec<Field> = (0..columns.len())
        .map(|j| Field::new(synthetic_feature(j), DataType::Float32, false))
        .collect();
    fields.push(Field::new(SYNTHETIC_LABEL, DataType::Int64, false));
    let mut arrays: Vec<ArrayRef> = columns
        .into_iter()
        .map(|c| Arc::new(Float32Array::from(c)) as ArrayRef)
        .collect();
    arrays.push(Arc::new(Int64Array::from(labels)));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| DataError::Internal(format!("building synthetic table: {e}")))?;
    Ok(Table::new("synthetic", batch))
}

/// The feature columns (one `Vec` per feature) and the labels, rows already shuffled.
pub fn generate(spec: &SyntheticSpec) -> Result<(Vec<Vec<f32>>, Vec<i64>), DataError> {
    let (rows, features, classes) = (spec.rows, spec.features, spec.classes);
    let informative = spec.informative.unwrap_or(features);
    check(spec, informative)?;
    let clusters = clusters(classes, informative);
    let mut gauss = Gauss::new(spec.seed);
    let centres = vertices(clusters, informative, &mut gauss.rng);
    let mut columns = vec![vec![0f32; rows]; features];
    let mut labels = vec![0i64; rows];
    let mut z = vec![0f32; informative];
    let mut mix = vec![0f32; informative * informative];
    let mut start = 0;
    for (c, centre) in centres.iter().enumerate() {
        let size = rows / clusters + usize::from(c < rows % clusters);
        for m in mix.iter_mut() {
            *m = 2.0 * gauss.rng.uniform() - 1.0;
        }
        for r in start..start + size {
            for v in z.iter_mut() {
                *v = gauss.next();
            }
            for (j, column) in columns.iter_mut().take(informative).enumerate() {
                let mut acc = centre[j];
                for (i, zi) in z.iter().enumerate() {
                    acc += zi * mix[i * informative + j];
                }
                column[r] = acc;
            }
            labels[r] = (c % classes) as i64;
        }
        start += size;
    }
    for column in columns.iter_mut().skip(informative) {
        for v in column.iter_mut() {
            *v = gauss.next();
        }
    }

    let mut order: Vec<usize> = (0..rows).collect();
    gauss.rng.shuffle(&mut order);
    let columns = columns
        .into_iter()
        .map(|c| order.iter().map(|&r| c[r]).collect())
        .collect();
    let labels = order.iter().map(|&r| labels[r]).collect();
    Ok((columns, labels))
}

/// Part `part` of a large synthetic data set made in parts of `spec.rows` rows (for data
/// sets larger than memory, written part by part): every part samples the same problem
/// (cluster centres and shapes from `spec.seed`) with its own rows.
pub fn generate_part(
    spec: &SyntheticSpec,
    part: u64,
) -> Result<(Vec<Vec<f32>>, Vec<i64>), DataError> {
    let (rows, features, classes) = (spec.rows, spec.features, spec.classes);
    let informative = spec.informative.unwrap_or(features);
    check(spec, informative)?;
    let clusters = clusters(classes, informative);
    let mut problem = Gauss::new(spec.seed);
    let centres = vertices(clusters, informative, &mut problem.rng);
    let mixes: Vec<Vec<f32>> = (0..clusters)
        .map(|_| {
            (0..informative * informative)
                .map(|_| 2.0 * problem.rng.uniform() - 1.0)
                .collect()
        })
        .collect();
    let mut gauss = Gauss::new(spec.seed ^ (part + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut columns = vec![Vec::with_capacity(rows); features];
    let mut labels = Vec::with_capacity(rows);
    let mut z = vec![0f32; informative];
    for _ in 0..rows {
        let c = gauss.rng.below(clusters);
        for v in z.iter_mut() {
            *v = gauss.next();
        }
        for (j, column) in columns.iter_mut().enumerate() {
            column.push(if j < informative {
                centres[c][j]
                    + z.iter()
                        .enumerate()
                        .map(|(i, zi)| zi * mixes[c][i * informative + j])
                        .sum::<f32>()
            } else {
                gauss.next()
            });
        }
        labels.push((c % classes) as i64);
    }
    Ok((columns, labels))
}

/// Writes part `part` of a synthetic data set (see [`generate_part`]) as a Parquet file of
/// row groups of `group_rows` rows: feature columns `x0…` (f32) and `label` (i64). The file
/// appears whole or not at all (written beside it, then renamed).
pub fn write_parquet_part(
    path: &std::path::Path,
    spec: &SyntheticSpec,
    part: u64,
    group_rows: usize,
) -> Result<(), DataError> {
    let (cols, labels) = generate_part(spec, part)?;
    let mut fields: Vec<(String, ArrayRef)> = cols
        .into_iter()
        .enumerate()
        .map(|(j, c)| (format!("x{j}"), Arc::new(Float32Array::from(c)) as ArrayRef))
        .collect();
    fields.push(("label".into(), Arc::new(Int64Array::from(labels))));
    let shown = path.display().to_string();
    let err = |e: &dyn std::fmt::Display| DataError::Parquet {
        file: shown.clone(),
        message: e.to_string(),
    };
    let batch = RecordBatch::try_from_iter(fields).map_err(|e| err(&e))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(group_rows.max(1)))
        .set_dictionary_enabled(false)
        .build();
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| err(&e))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props))
        .map_err(|e| err(&e))?;
    w.write(&batch).map_err(|e| err(&e))?;
    w.close().map_err(|e| err(&e))?;
    std::fs::rename(&tmp, path).map_err(|e| err(&e))
}

/// Three clusters per class where the hypercube has room (scikit-learn's default is two):
/// a linear model then scores about 0.7–0.8 on two classes while an MLP passes 0.93.
fn clusters(classes: usize, informative: usize) -> usize {
    let per_class = (1..=CLUSTERS_PER_CLASS)
        .rev()
        .find(|&k| fits(classes * k, informative))
        .unwrap_or(1);
    classes * per_class
}

fn check(spec: &SyntheticSpec, informative: usize) -> Result<(), DataError> {
    let fail = |m: String| Err(DataError::Synthetic(m));
    if spec.rows == 0 {
        return fail("rows must be at least 1".into());
    }
    if spec.features == 0 {
        return fail("features must be at least 1".into());
    }
    if spec.classes < 2 {
        return fail(format!(
            "classes is {}; it must be at least 2",
            spec.classes
        ));
    }
    if informative == 0 || informative > spec.features {
        return fail(format!(
            "informative is {informative}; it must be between 1 and features ({})",
            spec.features
        ));
    }
    if !fits(spec.classes, informative) {
        return fail(format!(
            "{} classes need at least {} informative features (one hypercube vertex per class); got {informative}",
            spec.classes,
            usize::BITS - (spec.classes - 1).leading_zeros()
        ));
    }
    Ok(())
}

/// Whether a hypercube of dimension `dim` has at least `n` vertices.
fn fits(n: usize, dim: usize) -> bool {
    dim >= usize::BITS as usize || n <= 1usize << dim
}

/// `n` distinct random vertices of the hypercube [-CLASS_SEP, CLASS_SEP]^dim.
fn vertices(n: usize, dim: usize, rng: &mut Rng) -> Vec<Vec<f32>> {
    let corner = |bits: &dyn Fn(usize) -> bool| -> Vec<f32> {
        (0..dim)
            .map(|k| if bits(k) { CLASS_SEP } else { -CLASS_SEP })
            .collect()
    };
    if dim <= 16 {
        // Small cubes: sample vertex numbers without replacement.
        let mut ids: Vec<usize> = (0..1usize << dim).collect();
        rng.shuffle(&mut ids);
        return ids[..n]
            .iter()
            .map(|&id| corner(&|k| id >> k & 1 == 1))
            .collect();
    }
    // Large cubes: random bit patterns, redrawn on the (rare) repeat.
    let mut out: Vec<Vec<f32>> = Vec::with_capacity(n);
    while out.len() < n {
        let bits: Vec<bool> = (0..dim).map(|_| rng.uniform() < 0.5).collect();
        let v = corner(&|k| bits[k]);
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Standard normals by Box–Muller, using both numbers of each pair.
struct Gauss {
    rng: Rng,
    spare: Option<f32>,
}

impl Gauss {
    fn new(seed: u64) -> Gauss {
        Gauss {
            rng: Rng::new(seed, STREAM),
            spare: None,
        }
    }

    fn next(&mut self) -> f32 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let u1 = f64::from(self.rng.uniform()).max(1e-12);
        let u2 = f64::from(self.rng.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some((r * s) as f32);
        (r * c) as f32
    }
}
