//! The frames of weft's TCP data plane: length-prefixed, versioned, and pure (no I/O).
//!
//! Every message between workers, the driver and parameter servers is one frame:
//!
//! ```text
//! magic "WF" (2) | version (1) | kind (1) | tag (u32 LE) | len (u32 LE) | payload (len bytes)
//! ```
//!
//! The `tag` names what the payload belongs to (a tensor id, a step, a request id: the
//! protocol above decides). This is weft's own wire format, so it is written by hand
//! rather than derived: the layout is fixed here, checked on every decode (magic, version,
//! kind, a length limit so a corrupt or hostile header cannot make a reader allocate
//! gigabytes), and decoding never panics on any input, which the garbage tests below and
//! the `fuzz/` target check.

use thiserror::Error;

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"WF";
/// The frame format version this weft speaks.
pub const VERSION: u8 = 1;
/// Header size: magic(2) version(1) kind(1) tag(u32 LE) len(u32 LE).
pub const HEADER_LEN: usize = 12;
/// The default limit on a payload's length (1 GiB).
pub const DEFAULT_MAX_LEN: u32 = 1 << 30;

/// What a frame's payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Connection handshake: a [`Hello`].
    Hello = 1,
    /// Dense little-endian f32 values.
    F32 = 2,
    /// Dense little-endian IEEE half-precision values.
    F16 = 3,
    /// An f32 scale then one i8 per value (see `compress`).
    Int8 = 4,
    /// `count` u32 indices then `count` f32 values (see `compress`).
    Sparse = 5,
    /// A control message (its payload is defined by the protocol above).
    Control = 6,
    /// An error report: a UTF-8 message.
    Error = 7,
}

impl Kind {
    /// Every kind, in wire-number order.
    pub const ALL: [Kind; 7] = [
        Kind::Hello,
        Kind::F32,
        Kind::F16,
        Kind::Int8,
        Kind::Sparse,
        Kind::Control,
        Kind::Error,
    ];
}

impl TryFrom<u8> for Kind {
    type Error = FrameError;

    fn try_from(b: u8) -> Result<Kind, FrameError> {
        Kind::ALL
            .into_iter()
            .find(|k| *k as u8 == b)
            .ok_or(FrameError::BadKind { got: b })
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub tag: u32,
    /// Payload length in bytes.
    pub len: u32,
}

/// Why bytes are not a valid frame (or a payload does not match its kind).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum FrameError {
    #[error(
        "not a weft frame (magic bytes 0x{:02x} 0x{:02x}, expected \"WF\")",
        .got[0],
        .got[1]
    )]
    BadMagic { got: [u8; 2] },
    #[error("frame version {got}, this weft speaks version 1")]
    BadVersion { got: u8 },
    #[error("unknown frame kind {got} (valid: 1..=7)")]
    BadKind { got: u8 },
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLong { len: u32, max: u32 },
    #[error("truncated frame: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("bad payload: {0}")]
    BadPayload(String),
}

/// Encodes a header into its 12 bytes.
pub fn encode_header(h: &Header) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[0..2].copy_from_slice(&MAGIC);
    b[2] = VERSION;
    b[3] = h.kind as u8;
    b[4..8].copy_from_slice(&h.tag.to_le_bytes());
    b[8..12].copy_from_slice(&h.len.to_le_bytes());
    b
}

/// Decodes and checks a header: magic, version, kind, and `len <= max_len`.
pub fn decode_header(b: &[u8; HEADER_LEN], max_len: u32) -> Result<Header, FrameError> {
    if b[0..2] != MAGIC {
        return Err(FrameError::BadMagic { got: [b[0], b[1]] });
    }
    if b[2] != VERSION {
        return Err(FrameError::BadVersion { got: b[2] });
    }
    let kind = Kind::try_from(b[3])?;
    let tag = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if len > max_len {
        return Err(FrameError::TooLong { len, max: max_len });
    }
    Ok(Header { kind, tag, len })
}

/// Decodes one whole frame from the front of `bytes`: header, payload slice, bytes consumed.
///
/// Bytes after the frame are left alone (a stream buffer may hold several frames);
/// [`FrameError::Truncated`] says how many bytes a complete frame needs.
pub fn decode_frame(bytes: &[u8], max_len: u32) -> Result<(Header, &[u8], usize), FrameError> {
    let Some((head, rest)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(FrameError::Truncated {
            need: HEADER_LEN,
            have: bytes.len(),
        });
    };
    let h = decode_header(head, max_len)?;
    let len = h.len as usize;
    let Some(payload) = rest.get(..len) else {
        return Err(FrameError::Truncated {
            need: HEADER_LEN.saturating_add(len),
            have: bytes.len(),
        });
    };
    Ok((h, payload, HEADER_LEN + len))
}

/// Encodes a whole frame: header then payload.
///
/// # Panics
/// If `payload` is longer than `u32::MAX` bytes (no frame can carry it; callers split
/// tensors well below [`DEFAULT_MAX_LEN`]).
pub fn encode_frame(kind: Kind, tag: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .unwrap_or_else(|_| panic!("frame payload of {} bytes exceeds u32::MAX", payload.len()));
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&encode_header(&Header { kind, tag, len }));
    out.extend_from_slice(payload);
    out
}

/// The payload of a [`Kind::Hello`] frame: who is connecting, and with what secret.
///
/// Layout: rank u32 LE, world u32 LE, then token and role, each a u16 LE length and
/// that many bytes of UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The shared secret of this run; a peer with a different token is refused.
    pub token: String,
    pub rank: u32,
    pub world: u32,
    /// `worker`, `driver`, `ps`, ... (defined by the protocol above).
    pub role: String,
}

/// The longest token a hello frame carries (its length is a `u16`).
pub const MAX_TOKEN_BYTES: usize = u16::MAX as usize;

/// Refuses a token no hello frame can carry, before a worker or driver starts with it.
/// The shortest token accepted.
pub const MIN_TOKEN_BYTES: usize = 16;

pub fn check_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_BYTES {
        return Err(format!(
            "the token is {} bytes; use at least {MIN_TOKEN_BYTES} random ones (`openssl rand -hex 16` makes 32): anyone who guesses it can run code-sized jobs on the workers",
            token.len()
        ));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!(
            "the token is {} bytes; at most {MAX_TOKEN_BYTES} fit in a frame (a random 32-character token is plenty)",
            token.len()
        ));
    }
    Ok(())
}

impl Hello {
    /// Encodes the payload; a token or role longer than [`MAX_TOKEN_BYTES`] (its length is a
    /// `u16`) is an error.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(12 + self.token.len() + self.role.len());
        out.extend_from_slice(&self.rank.to_le_bytes());
        out.extend_from_slice(&self.world.to_le_bytes());
        for (what, s) in [("token", &self.token), ("role", &self.role)] {
            let n = u16::try_from(s.len()).map_err(|_| {
                FrameError::BadPayload(format!(
                    "hello {what} of {} bytes exceeds {MAX_TOKEN_BYTES}",
                    s.len()
                ))
            })?;
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Ok(out)
    }

    /// Decodes a payload, checking every length, the UTF-8, and that nothing trails.
    pub fn decode(b: &[u8]) -> Result<Hello, FrameError> {
        let bad = |m: String| FrameError::BadPayload(format!("hello: {m}"));
        let Some((rank, rest)) = b.split_first_chunk::<4>() else {
            return Err(bad(format!(
                "{} bytes, too short for rank and world",
                b.len()
            )));
        };
        let Some((world, mut rest)) = rest.split_first_chunk::<4>() else {
            return Err(bad(format!(
                "{} bytes, too short for rank and world",
                b.len()
            )));
        };
        let mut strings = [String::new(), String::new()];
        for (what, slot) in ["token", "role"].into_iter().zip(&mut strings) {
            let Some((n, tail)) = rest.split_first_chunk::<2>() else {
                return Err(bad(format!("missing the length of the {what}")));
            };
            let n = u16::from_le_bytes(*n) as usize;
            let Some(s) = tail.get(..n) else {
                return Err(bad(format!(
                    "{what} of {n} bytes, but only {} bytes remain",
                    tail.len()
                )));
            };
            *slot = std::str::from_utf8(s)
                .map_err(|e| bad(format!("{what} is not UTF-8 ({e})")))?
                .to_owned();
            rest = &tail[n..];
        }
        if !rest.is_empty() {
            return Err(bad(format!("{} trailing bytes", rest.len())));
        }
        let [token, role] = strings;
        Ok(Hello {
            token,
            rank: u32::from_le_bytes(*rank),
            world: u32::from_le_bytes(*world),
            role,
        })
    }
}

/// Decodes a dense little-endian f32 payload.
pub fn payload_f32(payload: &[u8]) -> Result<Vec<f32>, FrameError> {
    if !payload.len().is_multiple_of(4) {
        return Err(FrameError::BadPayload(format!(
            "f32 payload of {} bytes is not a multiple of 4",
            payload.len()
        )));
    }
    Ok(payload
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Encodes f32 values as little-endian bytes.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `bytes` random bytes from the OS, as hex (tokens, shard ids).
pub fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut out = vec![0u8; bytes];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut out));
    if read.is_err() {
        // No /dev/urandom (not Unix): hash the clock and the process id.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        for (i, b) in out.iter_mut().enumerate() {
            h.write_usize(i);
            *b = h.finish() as u8;
        }
    }
    out.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// xorshift64*: a tiny deterministic PRNG for garbage tests (no new dependencies).
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
            let n = self.below(max_len);
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn hello() -> Hello {
        Hello {
            token: "s3cret-é".into(),
            rank: 3,
            world: 8,
            role: "worker".into(),
        }
    }

    /// A valid payload for each kind, as the data plane would send it.
    fn sample_payload(kind: Kind) -> Vec<u8> {
        match kind {
            Kind::Hello => hello().encode().unwrap(),
            Kind::F32 => f32_bytes(&[1.0, -2.5, 3.25]),
            Kind::F16 => vec![0x00, 0x3c, 0x00, 0xc0, 0x00, 0x00],
            Kind::Int8 => [0.5f32.to_le_bytes().as_slice(), &[1, 0x81, 0]].concat(),
            Kind::Sparse => [1u32, 2, 7.5f32.to_bits()]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
            Kind::Control => b"{\"barrier\":4}".to_vec(),
            Kind::Error => b"worker 2: out of memory".to_vec(),
        }
    }

    fn err(bytes: &[u8]) -> FrameError {
        decode_frame(bytes, 100).unwrap_err()
    }

    #[test]
    fn frames_round_trip_for_every_kind() {
        for (i, kind) in Kind::ALL.into_iter().enumerate() {
            let payload = sample_payload(kind);
            let tag = 0xdead_0000 + i as u32;
            let mut bytes = encode_frame(kind, tag, &payload);
            assert_eq!(bytes.len(), HEADER_LEN + payload.len());
            bytes.extend_from_slice(b"next frame");
            let (h, p, used) = decode_frame(&bytes, DEFAULT_MAX_LEN).unwrap();
            assert_eq!(
                h,
                Header {
                    kind,
                    tag,
                    len: payload.len() as u32
                }
            );
            assert_eq!(p, payload.as_slice());
            assert_eq!(used, HEADER_LEN + payload.len());
            assert_eq!(Kind::try_from(kind as u8), Ok(kind));
        }
        let empty = encode_frame(Kind::Control, 0, &[]);
        assert_eq!(decode_frame(&empty, 0).unwrap().1, &[] as &[u8]);
    }

    #[test]
    fn hello_and_f32_payloads_round_trip() {
        assert_eq!(Hello::decode(&hello().encode().unwrap()), Ok(hello()));
        let empty = Hello {
            token: String::new(),
            rank: 0,
            world: 1,
            role: String::new(),
        };
        assert_eq!(Hello::decode(&empty.encode().unwrap()), Ok(empty));
        let v = [0.0, -1.5, f32::MAX, f32::MIN_POSITIVE, f32::INFINITY];
        assert_eq!(payload_f32(&f32_bytes(&v)).unwrap(), v);
    }

    #[test]
    fn every_frame_error_has_its_message() {
        let good = encode_frame(Kind::F32, 9, &[0; 8]);
        let with = |i: usize, b: u8| {
            let mut f = good.clone();
            f[i] = b;
            f
        };
        let cases = [
            (
                err(&with(0, b'X')),
                "not a weft frame (magic bytes 0x58 0x46, expected \"WF\")",
            ),
            (
                err(&with(2, 2)),
                "frame version 2, this weft speaks version 1",
            ),
            (err(&with(3, 0)), "unknown frame kind 0 (valid: 1..=7)"),
            (err(&with(3, 8)), "unknown frame kind 8 (valid: 1..=7)"),
            (
                err(&encode_frame(Kind::F32, 0, &[0; 101])),
                "frame of 101 bytes exceeds the limit of 100",
            ),
            (err(&good[..5]), "truncated frame: need 12 bytes, have 5"),
            (err(&good[..15]), "truncated frame: need 20 bytes, have 15"),
            (
                payload_f32(&[0; 7]).unwrap_err(),
                "bad payload: f32 payload of 7 bytes is not a multiple of 4",
            ),
        ];
        for (e, msg) in cases {
            assert_eq!(e.to_string(), msg);
        }
        assert_eq!(err(&with(0, b'X')), FrameError::BadMagic { got: *b"XF" });
        assert_eq!(
            err(&good[..15]),
            FrameError::Truncated { need: 20, have: 15 }
        );
    }

    #[test]
    fn bad_hello_payloads_say_what_is_wrong() {
        let good = hello().encode().unwrap();
        let msg = |b: &[u8]| Hello::decode(b).unwrap_err().to_string();
        assert_eq!(
            msg(&good[..6]),
            "bad payload: hello: 6 bytes, too short for rank and world"
        );
        assert_eq!(
            msg(&good[..9]),
            "bad payload: hello: missing the length of the token"
        );
        assert_eq!(
            msg(&good[..12]),
            "bad payload: hello: token of 9 bytes, but only 2 bytes remain"
        );
        assert_eq!(
            msg(&[good.as_slice(), b"!"].concat()),
            "bad payload: hello: 1 trailing bytes"
        );
        let mut not_utf8 = good.clone();
        not_utf8[10] = 0xff;
        assert!(msg(&not_utf8).starts_with("bad payload: hello: token is not UTF-8"));
    }

    /// Decodes a frame's payload the way a receiver would, for the garbage tests.
    fn decode_payload(kind: Kind, payload: &[u8], out: &mut [f32]) {
        let _ = Hello::decode(payload);
        let _ = payload_f32(payload);
        let _ = crate::compress::decode_into(kind, payload, out, (kind as u8).is_multiple_of(2));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut out = [0f32; 16];
        for _ in 0..200_000 {
            let mut b = rng.bytes(64);
            // Make a valid header prefix common enough to reach the payload checks.
            if rng.below(2) == 0 && b.len() >= 4 {
                b[..3].copy_from_slice(b"WF\x01");
                b[3] = 1 + rng.below(7) as u8;
            }
            let max = if rng.below(2) == 0 {
                64
            } else {
                DEFAULT_MAX_LEN
            };
            if let Ok((h, p, used)) = decode_frame(&b, max) {
                assert_eq!(encode_frame(h.kind, h.tag, p), b[..used]);
            }
            let n = rng.below(out.len() + 1);
            for kind in Kind::ALL {
                decode_payload(kind, &b, &mut out[..n]);
            }
        }
    }

    #[test]
    fn mutated_frames_never_panic() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let frames: Vec<Vec<u8>> = Kind::ALL
            .into_iter()
            .map(|k| encode_frame(k, 7, &sample_payload(k)))
            .collect();
        let mut out = [0f32; 8];
        for _ in 0..200_000 {
            let mut f = frames[rng.below(frames.len())].clone();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(f.len());
                f[i] ^= 1 << rng.below(8);
            }
            if rng.below(4) == 0 {
                f.truncate(rng.below(f.len() + 1));
            }
            if let Ok((h, p, _)) = decode_frame(&f, DEFAULT_MAX_LEN) {
                let n = rng.below(out.len() + 1);
                decode_payload(h.kind, p, &mut out[..n]);
            }
        }
    }
}
