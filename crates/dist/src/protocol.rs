//! What the driver sends a worker over its control API: the job's JSON head and its data
//! as little-endian f32 in one request body. Shared by the driver and the worker's server
//! (`worker.rs`, feature `worker`), so a library build without the server still drives
//! workers.

use serde::{Deserialize, Serialize};
use weft_data::Dataset;

use crate::bench::CollectiveJob;
use crate::error::{DistError, Result};
use crate::job::TrainJob;

/// What a worker is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Work {
    Train(Box<TrainJob>),
    Collective(CollectiveJob),
}

/// The JSON head of a job; the data follows it in the request body (see [`encode_job`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobHead {
    pub id: String,
    pub rank: usize,
    /// Data-plane address of every worker, by rank.
    pub peers: Vec<String>,
    pub timeout_s: f64,
    pub work: Work,
    /// Rows of the train and validation sets that follow, and their feature count.
    pub train_rows: usize,
    pub validation_rows: usize,
    pub features: usize,
    /// Each set's rows carry a weight (`data.weight_column`), after its labels.
    #[serde(default)]
    pub weighted: bool,
}

/// A job request body: `u32` length of the JSON head, the head, then the train set's
/// features, labels (and row weights when the head says so) and the validation set's, as
/// little-endian f32.
pub fn encode_job(
    head: &JobHead,
    train: Option<&Dataset>,
    validation: Option<&Dataset>,
) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(head).map_err(|e| DistError::Config(e.to_string()))?;
    let mut body = Vec::with_capacity(4 + json.len());
    body.extend_from_slice(&(json.len() as u32).to_le_bytes());
    body.extend_from_slice(&json);
    for d in [train, validation].into_iter().flatten() {
        let ones;
        let w = match (&d.w, head.weighted) {
            (Some(w), true) => Some(w),
            (None, true) => {
                ones = ndarray::Array1::ones(d.len());
                Some(&ones)
            }
            _ => None,
        };
        for v in d.x.iter().chain(d.y.iter()).chain(w.into_iter().flatten()) {
            body.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(body)
}

/// The worker's side of [`encode_job`]: the head and the datasets, or why the body is not a
/// job (sizes are checked before anything is allocated).
#[cfg(feature = "worker")]
pub(crate) fn decode_job(
    body: &[u8],
) -> std::result::Result<(JobHead, Dataset, Option<Dataset>), String> {
    let len = body
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("the job body is shorter than its 4-byte header")?;
    let json = body
        .get(4..4 + len)
        .ok_or("the job body is shorter than its JSON head")?;
    let head: JobHead = serde_json::from_slice(json).map_err(|e| format!("bad job: {e}"))?;
    let mut floats = body[4 + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let f = head.features;
    if head.peers.is_empty() || head.rank >= head.peers.len() {
        return Err(format!(
            "rank {} of {} workers is not a place in the cluster",
            head.rank,
            head.peers.len()
        ));
    }
    let most = weft_dsl::MAX_TIMEOUT_S;
    if !(head.timeout_s.is_finite() && head.timeout_s > 0.0 && head.timeout_s <= most) {
        return Err(format!(
            "timeout_s {} is not above 0 and at most {most} (a week, as the spec allows)",
            head.timeout_s
        ));
    }
    let per_row = f.checked_add(1 + usize::from(head.weighted));
    let want = (head.train_rows.checked_add(head.validation_rows))
        .and_then(|r| r.checked_mul(per_row?))
        .and_then(|v| v.checked_mul(4))
        .ok_or("the job's head gives sizes too large to hold")?;
    if body.len() - 4 - len != want {
        return Err(format!(
            "the job's data is {} bytes, its head says {} rows × {} features ({} bytes)",
            body.len() - 4 - len,
            head.train_rows + head.validation_rows,
            f,
            want
        ));
    }
    let mut take = |rows: usize| -> std::result::Result<Dataset, String> {
        let x: Vec<f32> = floats.by_ref().take(rows * f).collect();
        let y: Vec<f32> = floats.by_ref().take(rows).collect();
        let w = head
            .weighted
            .then(|| ndarray::Array1::from_vec(floats.by_ref().take(rows).collect()));
        Ok(Dataset {
            x: ndarray::Array2::from_shape_vec((rows, f), x).map_err(|e| e.to_string())?,
            y: ndarray::Array1::from_vec(y),
            w,
        })
    };
    let train = take(head.train_rows)?;
    let validation = (head.validation_rows > 0)
        .then(|| take(head.validation_rows))
        .transpose()?;
    Ok((head, train, validation))
}

/// A started worker: its control URL and data-plane address.
#[derive(Debug, Clone)]
pub struct Started {
    pub control: String,
    pub data: String,
    /// The URL of the rows the worker holds, when it was handed some.
    pub shard: Option<String>,
}
