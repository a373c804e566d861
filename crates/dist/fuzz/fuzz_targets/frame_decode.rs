//! Fuzzes the data plane's decoders: frames, `Hello` payloads and tensor payloads of every
//! kind must return `Ok` or `Err` on any bytes, never panic, and a decoded frame must
//! re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_dist::compress::decode_into;
use weft_dist::frame::{decode_frame, encode_frame, payload_f32, Hello, Kind, DEFAULT_MAX_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok((h, payload, used)) = decode_frame(data, DEFAULT_MAX_LEN) {
        assert_eq!(encode_frame(h.kind, h.tag, payload), &data[..used]);
    }
    let _ = Hello::decode(data);
    let _ = payload_f32(data);
    // The first byte picks the tensor's length, the rest is the payload.
    let (n, payload) = data
        .split_first()
        .map_or((0, data), |(n, p)| (*n as usize, p));
    let mut out = vec![0f32; n];
    for kind in Kind::ALL {
        let _ = decode_into(kind, payload, &mut out, false);
        let _ = decode_into(kind, payload, &mut out, true);
    }
});
