//! MNIST's IDX files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`):
//! a magic number (two zero bytes, the value type, the number of dimensions), the sizes as
//! big-endian u32, then the values, big-endian. The first dimension counts the samples;
//! each sample's values become pixel columns `p0…` in row-major order (what `data.image`
//! reads), the labels the column `label`. Read by hand: the format is 20 lines, and no
//! maintained crate reads it into Arrow.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use weft_dsl::IdxSource;

use crate::error::{io_message, DataError};
use crate::pixels::{pixel_columns, pixel_fields};
use crate::schema::TableSchema;
use crate::table::Table;

/// The column names of an IDX set of `per` values per sample.
fn fields(per: usize, labels: bool) -> Vec<Field> {
    let mut f = pixel_fields(per);
    if labels {
        f.push(Field::new("label", DataType::Int64, false));
    }
    f
}

/// A file's bytes from `at`, gunzipped when they are gzip (`limit`: at most that many
/// bytes of the content, for reading a header).
fn open(base: &Path, at: &str, limit: Option<u64>) -> Result<Vec<u8>, DataError> {
    let path = base.join(at);
    let io = |e: std::io::Error| DataError::Io {
        path: at.to_string(),
        message: format!("{} (resolved to {})", io_message(&e), path.display()),
    };
    let file = std::fs::File::open(&path).map_err(io)?;
    let mut peek = std::io::BufReader::new(file);
    let gz = std::io::BufRead::fill_buf(&mut peek)
        .map_err(io)?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(peek))
    } else {
        Box::new(peek)
    };
    let mut out = Vec::new();
    reader
        .take(limit.unwrap_or(u64::MAX))
        .read_to_end(&mut out)
        .map_err(|e| DataError::Idx {
            file: at.to_string(),
            message: format!("cannot read it: {}", io_message(&e)),
        })?;
    Ok(out)
}

/// The dimensions and the size in bytes of one value, from the header of `bytes`.
fn header(bytes: &[u8], file: &str) -> Result<(Vec<usize>, u8, usize), DataError> {
    let bad = |message: String| DataError::Idx {
        file: file.to_string(),
        message,
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("not an IDX file (it does not start with two zero bytes, a type and a number of dimensions)".into()));
    }
    let (kind, ndims) = (bytes[2], bytes[3] as usize);
    let size = match kind {
        0x08 | 0x09 => 1,
        0x0B => 2,
        0x0C | 0x0D => 4,
        0x0E => 8,
        other => return Err(bad(format!("unknown IDX value type 0x{other:02x}; valid: 0x08 (u8), 0x09 (i8), 0x0B (i16), 0x0C (i32), 0x0D (f32), 0x0E (f64)"))),
    };
    if ndims == 0 || bytes.len() < 4 + 4 * ndims {
        return Err(bad(format!(
            "the header names {ndims} dimensions but is cut short"
        )));
    }
    let dims = (0..ndims)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    Ok((dims, kind, size))
}

/// Every value of an IDX file as f32, and its dimensions.
fn values(bytes: &[u8], file: &str) -> Result<(Vec<usize>, Vec<f32>), DataError> {
    let (dims, kind, size) = header(bytes, file)?;
    let count = dims.iter().try_fold(1usize, |a, d| a.checked_mul(*d));
    let start = 4 + 4 * dims.len();
    let need = count
        .and_then(|c| c.checked_mul(size))
        .and_then(|b| b.checked_add(start));
    if need != Some(bytes.len()) {
        return Err(DataError::Idx {
            file: file.to_string(),
            message: format!(
                "the header says {dims:?} values of {size} byte(s) ({} bytes in all), but the file holds {}",
                need.map_or("too many".into(), |n| n.to_string()),
                bytes.len()
            ),
        });
    }
    let data = &bytes[start..];
    let v: Vec<f32> = match kind {
        0x08 => data.iter().map(|b| f32::from(*b)).collect(),
        0x09 => data.iter().map(|b| f32::from(*b as i8)).collect(),
        0x0B => data
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_be_bytes([b[0], b[1]])))
            .collect(),
        0x0C => data
            .chunks_exact(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f32)
            .collect(),
        0x0D => data
            .chunks_exact(4)
            .map(|b| f32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        _ => data
            .chunks_exact(8)
            .map(|b| f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
    };
    Ok((dims, v))
}

/// The images (and labels) of an `idx` source as a table.
pub(crate) fn read_idx(idx: &IdxSource, base: &Path) -> Result<Table, DataError> {
    let (dims, pixels) = values(&open(base, &idx.images, None)?, &idx.images)?;
    let n = dims[0];
    let per: usize = dims[1..].iter().product();
    let mut columns = pixel_columns(&pixels, per);
    if let Some(labels) = &idx.labels {
        let (ldims, l) = values(&open(base, labels, None)?, labels)?;
        if ldims[0] != n || l.len() != n {
            return Err(DataError::Idx {
                file: labels.clone(),
                message: format!(
                    "{} labels (dimensions {ldims:?}) for the {n} images of {}; they must be one per image",
                    l.len(),
                    idx.images
                ),
            });
        }
        columns.push(Arc::new(Int64Array::from_iter_values(
            l.iter().map(|v| *v as i64),
        )));
    }
    let schema = Arc::new(Schema::new(fields(per, idx.labels.is_some())));
    let batch = RecordBatch::try_new(schema, columns).map_err(|e| DataError::Idx {
        file: idx.images.clone(),
        message: e.to_string(),
    })?;
    Ok(Table::new(idx.images.clone(), batch))
}

/// The columns of an `idx` source, from the images' header alone.
pub(crate) fn idx_schema(idx: &IdxSource, base: &Path) -> Result<TableSchema, DataError> {
    // The magic number and up to 4 dimensions: 20 bytes.
    let head = open(base, &idx.images, Some(20))?;
    let (dims, _, _) = header(&head, &idx.images)?;
    Ok(TableSchema {
        name: idx.images.clone(),
        schema: Arc::new(Schema::new(fields(
            dims[1..].iter().product(),
            idx.labels.is_some(),
        ))),
        rows: Some(dims[0] as u64),
        classes: None,
    })
}

/// Whether `path` is an IDX file (gzipped or not): its magic number, a value type IDX
/// defines and 1 to 4 dimensions.
pub(crate) fn is_idx(path: &Path) -> bool {
    let at = path.display().to_string();
    path.is_file()
        && open(Path::new(""), &at, Some(4)).is_ok_and(|h| {
            h.len() == 4
                && h[0] == 0
                && h[1] == 0
                && matches!(h[2], 0x08 | 0x09 | 0x0B | 0x0C | 0x0D | 0x0E)
                && (1..=4).contains(&h[3])
        })
}

/// MNIST's labels file beside an images file (`…images-idx3-ubyte[.gz]` →
/// `…labels-idx1-ubyte[.gz]`, gzipped or not), when there is one.
pub(crate) fn labels_beside(images: &Path) -> Option<std::path::PathBuf> {
    let name = images.file_name()?.to_str()?;
    let stem = name.strip_suffix(".gz").unwrap_or(name);
    let labels = stem.replace("images-idx3", "labels-idx1");
    if labels == stem {
        return None;
    }
    [labels.clone(), format!("{labels}.gz")]
        .into_iter()
        .map(|n| images.with_file_name(n))
        .find(|p| p.is_file())
}
