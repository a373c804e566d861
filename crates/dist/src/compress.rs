//! Gradient and parameter compression for the wire: what a `compression:` spec setting
//! turns a tensor into, as a frame kind and payload, and back.
//!
//! | codec  | frame kind | payload                                                   |
//! |--------|------------|-----------------------------------------------------------|
//! | none   | `F32`      | one f32 LE per value                                      |
//! | fp16   | `F16`      | one IEEE half (u16 LE) per value                          |
//! | int8   | `Int8`     | scale f32 LE (max\|v\|/127), then one i8 per value          |
//! | topk   | `Sparse`   | count u32 LE, count u32 LE indices, count f32 LE values   |
//!
//! Top-k keeps the `ceil(ratio * len)` largest magnitudes. With error feedback the part
//! not sent is kept in a per-tensor [`Residual`] and added to the next step's values, so
//! every coordinate is eventually sent and nothing is lost, only delayed.
//!
//! Hand-written because it is weft's own wire format. Decoding validates every length and
//! index before touching its output and never panics on any payload.

use crate::frame::{f32_bytes, FrameError, Kind};
use half::f16;
use weft_dsl::Compression;

/// How a tensor is compressed on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Codec {
    None,
    Fp16,
    Int8,
    /// Keep the `ceil(ratio * len)` largest magnitudes; `ratio` in (0, 1].
    TopK {
        ratio: f64,
        error_feedback: bool,
    },
}

impl Codec {
    /// The codec a spec's `parallelism.data.compression` asks for.
    pub fn from_spec(c: &Compression) -> Codec {
        match c {
            Compression::None => Codec::None,
            Compression::Fp16 => Codec::Fp16,
            Compression::Int8 => Codec::Int8,
            Compression::Topk(t) => Codec::TopK {
                ratio: t.ratio,
                error_feedback: t.error_feedback,
            },
        }
    }
}

/// Per-tensor state for error feedback (the residual of what was not sent).
#[derive(Debug, Clone, Default)]
pub struct Residual(pub Vec<f32>);

/// Encodes `values` for the wire: the frame kind and payload.
///
/// `residual` is used by top-k with error feedback only: it is sized to `values` on first
/// use (and reset to zeros if the tensor's length ever changes). Non-finite values do not
/// panic: NaN counts as the largest magnitude for top-k, and an infinite value gives int8 a
/// non-finite scale, which the receiver rejects.
pub fn encode(codec: &Codec, values: &[f32], residual: &mut Residual) -> (Kind, Vec<u8>) {
    match codec {
        Codec::None => (Kind::F32, f32_bytes(values)),
        Codec::Fp16 => (
            Kind::F16,
            values
                .iter()
                .flat_map(|v| f16::from_f32(*v).to_bits().to_le_bytes())
                .collect(),
        ),
        Codec::Int8 => (Kind::Int8, encode_int8(values)),
        Codec::TopK {
            ratio,
            error_feedback: false,
        } => (Kind::Sparse, encode_sparse(values, &top_k(values, *ratio))),
        Codec::TopK {
            ratio,
            error_feedback: true,
        } => {
            let r = &mut residual.0;
            if r.len() != values.len() {
                *r = vec![0.0; values.len()];
            }
            for (r, v) in r.iter_mut().zip(values) {
                *r += v;
            }
            let idx = top_k(r, *ratio);
            let payload = encode_sparse(r, &idx);
            for i in idx {
                r[i] = 0.0;
            }
            (Kind::Sparse, payload)
        }
    }
}

fn encode_int8(values: &[f32]) -> Vec<u8> {
    let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = max / 127.0;
    let mut out = Vec::with_capacity(4 + values.len());
    out.extend_from_slice(&scale.to_le_bytes());
    out.extend(values.iter().map(|v| {
        let q = if scale > 0.0 {
            (v / scale).round()
        } else {
            0.0
        };
        // `as` saturates and maps NaN to 0.
        q.clamp(-127.0, 127.0) as i8 as u8
    }));
    out
}

/// The indices of the `max(1, ceil(ratio * len))` largest magnitudes (at most `len`),
/// ascending. Selection, not a full sort: O(len) plus O(k log k) to order the indices.
fn top_k(values: &[f32], ratio: f64) -> Vec<usize> {
    let n = values.len();
    let k = if ratio.is_nan() {
        1
    } else {
        ((ratio * n as f64).ceil() as usize).clamp(1, n.max(1))
    };
    let mut idx: Vec<usize> = (0..n).collect();
    if k < n {
        // Descending by magnitude; `abs` clears NaN's sign, so NaN sorts as the largest.
        idx.select_nth_unstable_by(k - 1, |a, b| values[*b].abs().total_cmp(&values[*a].abs()));
        idx.truncate(k);
        idx.sort_unstable();
    }
    idx
}

fn encode_sparse(values: &[f32], idx: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 8 * idx.len());
    out.extend_from_slice(&(idx.len() as u32).to_le_bytes());
    out.extend(idx.iter().flat_map(|i| (*i as u32).to_le_bytes()));
    out.extend(idx.iter().flat_map(|i| values[*i].to_le_bytes()));
    out
}

fn bad(msg: String) -> FrameError {
    FrameError::BadPayload(msg)
}

/// Checks a dense payload holds exactly `n` values of `width` bytes.
fn check_dense(what: &str, payload: &[u8], width: usize, n: usize) -> Result<(), FrameError> {
    if payload.len() == width * n {
        Ok(())
    } else {
        Err(bad(format!(
            "{what} payload of {} bytes for a tensor of {n} values (expected {} bytes)",
            payload.len(),
            width * n
        )))
    }
}

/// Decodes a payload of `kind` into `out` (length = tensor length); `accumulate` adds
/// instead of overwriting (a sparse payload overwrites by zeroing `out` first).
///
/// The payload is validated in full before `out` is touched: on error `out` is unchanged.
pub fn decode_into(
    kind: Kind,
    payload: &[u8],
    out: &mut [f32],
    accumulate: bool,
) -> Result<(), FrameError> {
    let n = out.len();
    let put = |out: &mut [f32], vals: &mut dyn Iterator<Item = f32>| {
        for (o, v) in out.iter_mut().zip(vals) {
            *o = if accumulate { *o + v } else { v };
        }
    };
    match kind {
        Kind::F32 => {
            check_dense("f32", payload, 4, n)?;
            put(
                out,
                &mut payload
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
        Kind::F16 => {
            check_dense("f16", payload, 2, n)?;
            put(
                out,
                &mut payload
                    .chunks_exact(2)
                    .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
            );
        }
        Kind::Int8 => {
            let Some((scale, q)) = payload.split_first_chunk::<4>() else {
                return Err(bad(format!(
                    "int8 payload of {} bytes has no scale",
                    payload.len()
                )));
            };
            let scale = f32::from_le_bytes(*scale);
            if !scale.is_finite() || scale < 0.0 {
                return Err(bad(format!("int8 scale {scale} is not finite and >= 0")));
            }
            check_dense("int8 values", q, 1, n)?;
            put(out, &mut q.iter().map(|b| f32::from(*b as i8) * scale));
        }
        Kind::Sparse => decode_sparse(payload, out, accumulate)?,
        Kind::Hello | Kind::Control | Kind::Error => {
            return Err(bad(format!("{kind:?} frames carry no tensor")));
        }
    }
    Ok(())
}

fn decode_sparse(payload: &[u8], out: &mut [f32], accumulate: bool) -> Result<(), FrameError> {
    let Some((count, rest)) = payload.split_first_chunk::<4>() else {
        return Err(bad(format!(
            "sparse payload of {} bytes has no count",
            payload.len()
        )));
    };
    let count = u32::from_le_bytes(*count) as usize;
    if count.checked_mul(8) != Some(rest.len()) {
        return Err(bad(format!(
            "sparse payload of {} bytes cannot hold {count} entries (expected {} bytes)",
            payload.len(),
            count.saturating_mul(8).saturating_add(4)
        )));
    }
    let (idx, vals) = rest.split_at(4 * count);
    let word = |c: &[u8]| [c[0], c[1], c[2], c[3]];
    let idx = || {
        idx.chunks_exact(4)
            .map(|c| u32::from_le_bytes(word(c)) as usize)
    };
    if let Some(i) = idx().find(|i| *i >= out.len()) {
        return Err(bad(format!(
            "sparse index {i} out of range for a tensor of {} values",
            out.len()
        )));
    }
    if !accumulate {
        out.fill(0.0);
    }
    for (i, c) in idx().zip(vals.chunks_exact(4)) {
        // Repeated indices add up.
        out[i] += f32::from_le_bytes(word(c));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::tests::Rng;

    fn uniform(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| lo + (hi - lo) * (rng.next() >> 40) as f32 / (1u64 << 24) as f32)
            .collect()
    }

    fn round_trip(codec: &Codec, v: &[f32]) -> (Kind, Vec<u8>, Vec<f32>) {
        let (kind, payload) = encode(codec, v, &mut Residual::default());
        let mut out = vec![f32::NAN; v.len()];
        decode_into(kind, &payload, &mut out, false).unwrap();
        (kind, payload, out)
    }

    fn topk(ratio: f64, error_feedback: bool) -> Codec {
        Codec::TopK {
            ratio,
            error_feedback,
        }
    }

    #[test]
    fn none_and_fp16_round_trip() {
        let v = uniform(&mut Rng(1), 1000, -10.0, 10.0);
        let (kind, payload, out) = round_trip(&Codec::None, &v);
        assert_eq!((kind, payload.len(), out), (Kind::F32, 4000, v.clone()));
        let (kind, payload, out) = round_trip(&Codec::Fp16, &v);
        assert_eq!((kind, payload.len()), (Kind::F16, 2000));
        for (a, b) in v.iter().zip(&out) {
            assert!((a - b).abs() <= 1e-3 * a.abs().max(1e-3), "{a} vs {b}");
        }
    }

    #[test]
    fn int8_error_is_at_most_half_a_step() {
        let v = uniform(&mut Rng(2), 1000, -3.0, 5.0);
        let (kind, payload, out) = round_trip(&Codec::Int8, &v);
        assert_eq!((kind, payload.len()), (Kind::Int8, 1004));
        let scale = f32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
        let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert_eq!(scale, max / 127.0);
        for (a, b) in v.iter().zip(&out) {
            assert!((a - b).abs() <= scale / 2.0 * (1.0 + 1e-5), "{a} vs {b}");
        }
        let (_, payload, out) = round_trip(&Codec::Int8, &[0.0; 5]);
        assert_eq!(&payload[..4], &0f32.to_le_bytes());
        assert_eq!(out, [0.0; 5]);
    }

    #[test]
    fn topk_keeps_exactly_the_k_largest() {
        let mut rng = Rng(3);
        for (n, ratio) in [(1000, 0.01), (1000, 0.3), (7, 0.5), (5, 1.0), (3, 1e-9)] {
            let v = uniform(&mut rng, n, -1.0, 1.0);
            let (kind, payload, out) = round_trip(&topk(ratio, false), &v);
            let k = ((ratio * n as f64).ceil() as usize).max(1);
            assert_eq!((kind, payload.len()), (Kind::Sparse, 4 + 8 * k));
            let kept: Vec<usize> = (0..n).filter(|i| out[*i] != 0.0).collect();
            assert_eq!(kept.len(), k);
            let smallest_kept = kept.iter().map(|i| v[*i].abs()).fold(f32::MAX, f32::min);
            for i in 0..n {
                if kept.contains(&i) {
                    assert_eq!(out[i], v[i]);
                } else {
                    assert!(v[i].abs() <= smallest_kept);
                }
            }
        }
        // Non-finite values do not panic, and NaN counts as large.
        let (_, _, out) = round_trip(&topk(0.5, false), &[1.0, f32::NAN, -f32::INFINITY, 0.5]);
        assert!(out[1].is_nan() && out[2] == -f32::INFINITY);
        let (_, payload, _) = round_trip(&topk(0.5, true), &[]);
        assert_eq!(payload, 0u32.to_le_bytes());
    }

    #[test]
    fn error_feedback_eventually_sends_everything() {
        let v: Vec<f32> = (0..10).map(|i| 1.0 / (1 << i) as f32).collect();
        let codec = topk(0.1, true); // one entry per step
        let mut residual = Residual::default();
        let mut sent = vec![0f32; v.len()];
        let mut ever = [false; 10];
        let steps = 2000;
        for _ in 0..steps {
            let (kind, payload) = encode(&codec, &v, &mut residual);
            let mut step = vec![0f32; v.len()];
            decode_into(kind, &payload, &mut step, false).unwrap();
            for i in 0..v.len() {
                ever[i] |= step[i] != 0.0;
            }
            decode_into(kind, &payload, &mut sent, true).unwrap();
        }
        assert_eq!(ever, [true; 10]);
        for i in 0..v.len() {
            let total = sent[i] + residual.0[i];
            let want = v[i] * steps as f32;
            assert!(
                (total - want).abs() <= 1e-4 * want.max(1.0),
                "{i}: {total} vs {want}"
            );
        }
    }

    #[test]
    fn without_error_feedback_small_coordinates_are_never_sent() {
        let v = [5.0, 0.1, -4.0, 0.2];
        let codec = topk(0.5, false);
        let mut residual = Residual::default();
        let mut sent = [0f32; 4];
        for _ in 0..100 {
            let (kind, payload) = encode(&codec, &v, &mut residual);
            decode_into(kind, &payload, &mut sent, true).unwrap();
        }
        assert_eq!(sent, [500.0, 0.0, -400.0, 0.0]);
        assert!(residual.0.is_empty());
    }

    #[test]
    fn bad_payloads_say_what_is_wrong() {
        let mut out = [7f32; 3];
        let mut msg = |kind, p: &[u8]| {
            let e = decode_into(kind, p, &mut out, true)
                .unwrap_err()
                .to_string();
            assert_eq!(out, [7.0; 3], "out is untouched on error");
            e
        };
        let sparse = |count: u32, idx: &[u32], vals: &[f32]| -> Vec<u8> {
            let mut p = count.to_le_bytes().to_vec();
            p.extend(idx.iter().flat_map(|i| i.to_le_bytes()));
            p.extend(vals.iter().flat_map(|v| v.to_le_bytes()));
            p
        };
        let int8 = |scale: f32| [scale.to_le_bytes().as_slice(), &[1, 2, 3]].concat();
        let cases = [
            (
                msg(Kind::F32, &[0; 8]),
                "f32 payload of 8 bytes for a tensor of 3 values (expected 12 bytes)",
            ),
            (
                msg(Kind::F16, &[0; 5]),
                "f16 payload of 5 bytes for a tensor of 3 values (expected 6 bytes)",
            ),
            (
                msg(Kind::Int8, &[0; 3]),
                "int8 payload of 3 bytes has no scale",
            ),
            (
                msg(Kind::Int8, &int8(f32::NAN)),
                "int8 scale NaN is not finite and >= 0",
            ),
            (
                msg(Kind::Int8, &int8(f32::INFINITY)),
                "int8 scale inf is not finite and >= 0",
            ),
            (
                msg(Kind::Int8, &[0; 6]),
                "int8 values payload of 2 bytes for a tensor of 3 values (expected 3 bytes)",
            ),
            (
                msg(Kind::Sparse, &[1, 0]),
                "sparse payload of 2 bytes has no count",
            ),
            (
                msg(Kind::Sparse, &sparse(2, &[0], &[1.0])),
                "sparse payload of 12 bytes cannot hold 2 entries (expected 20 bytes)",
            ),
            (
                msg(Kind::Sparse, &sparse(u32::MAX, &[], &[])),
                "sparse payload of 4 bytes cannot hold 4294967295 entries \
                 (expected 34359738364 bytes)",
            ),
            (
                msg(Kind::Sparse, &sparse(2, &[0, 3], &[1.0, 2.0])),
                "sparse index 3 out of range for a tensor of 3 values",
            ),
            (msg(Kind::Hello, &[]), "Hello frames carry no tensor"),
            (msg(Kind::Error, b"x"), "Error frames carry no tensor"),
        ];
        for (e, want) in cases {
            assert_eq!(e, format!("bad payload: {want}"));
        }
        // Repeated sparse indices add; overwrite zeroes the rest.
        decode_into(
            Kind::Sparse,
            &sparse(2, &[1, 1], &[1.0, 2.0]),
            &mut out,
            false,
        )
        .unwrap();
        assert_eq!(out, [0.0, 3.0, 0.0]);
    }

    #[test]
    fn codecs_follow_the_spec() {
        use weft_dsl::TopK;
        let t = Codec::from_spec(&Compression::Topk(TopK {
            ratio: 0.01,
            error_feedback: true,
        }));
        assert_eq!(t, topk(0.01, true));
        assert_eq!(Codec::from_spec(&Compression::None), Codec::None);
        assert_eq!(Codec::from_spec(&Compression::Fp16), Codec::Fp16);
        assert_eq!(Codec::from_spec(&Compression::Int8), Codec::Int8);
    }

    #[test]
    fn random_payloads_never_panic() {
        let mut rng = Rng(4);
        let mut out = [0f32; 12];
        for _ in 0..200_000 {
            let p = rng.bytes(64);
            let n = rng.below(out.len() + 1);
            for kind in Kind::ALL {
                let _ = decode_into(kind, &p, &mut out[..n], rng.below(2) == 0);
            }
            let _ = crate::frame::Hello::decode(&p);
        }
    }
}
