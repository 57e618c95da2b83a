//! A connection's request framing (src/chunk): a chunked request body, as
//! the client sends it, in any TCP pieces. The host entry asserts that the
//! connection is poisoned exactly when the chunk grammar breaks and that
//! the body reader's mark sits where the bad line starts; valid bodies
//! (optionally with one byte changed) reach the edge cases.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use isapi_host::fuzzing;
use libfuzzer_sys::fuzz_target;
use pyisapie_fuzz::ChunkedBody;

#[derive(Arbitrary, Debug)]
enum Body {
    Raw(Vec<u8>),
    /// A valid body, one byte replaced, then what follows it (a pipelined
    /// request, garbage).
    Valid {
        body: ChunkedBody,
        flip: Option<(u16, u8)>,
        after: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    body: Body,
    cuts: Vec<u16>,
    begin_at: u8,
    /// Frame the body by Content-Length instead.
    length: Option<u16>,
}

/// The input: a flags byte (bit 0: a structured body; bit 1: framed by
/// Content-Length; bits 2-3: when the head is handed over), a piece size,
/// then the body (raw, so seeds are real chunked bodies).
fn input(data: &[u8]) -> Option<Input> {
    let (&[flags, step], rest) = data.split_first_chunk::<2>()?;
    if flags & 1 == 1 {
        return Input::arbitrary(&mut Unstructured::new(rest)).ok();
    }
    let step = u16::from(step).max(1);
    let cuts = (1..=(rest.len() + 200) / usize::from(step))
        .map(|i| i as u16 * step)
        .collect();
    Some(Input {
        body: Body::Raw(rest.to_vec()),
        cuts,
        begin_at: flags >> 2,
        length: (flags & 2 == 2).then_some(rest.len() as u16),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = input(data) else { return };
    let (body, valid) = match input.body {
        Body::Raw(b) => (b, false),
        Body::Valid { body, flip, after } => {
            let (mut wire, _) = body.encode();
            let valid = flip.is_none();
            if let Some((at, byte)) = flip {
                let i = usize::from(at) % wire.len();
                wire[i] = byte;
            }
            wire.extend(after);
            (wire, valid)
        }
    };
    let cuts: Vec<usize> = input.cuts.iter().map(|&c| usize::from(c)).collect();
    let length = input.length.map(u64::from);
    let out = fuzzing::request_framing(&body, &cuts, usize::from(input.begin_at), length);
    if valid && length.is_none() {
        assert!(
            !out.poisoned,
            "a valid chunked body poisoned the connection"
        );
    }
});
