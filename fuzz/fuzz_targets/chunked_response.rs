//! The self-chunked response validator (`response::ChunkDecoder` over the
//! RFC 9112 chunk grammar): any bytes in any pieces (the outcome must not
//! depend on the split), valid bodies that must decode to their data, and
//! pyisapie's own chunk encoder, whose output the host must accept.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use isapi_host::fuzzing;
use libfuzzer_sys::fuzz_target;
use pyisapie_fuzz::{ChunkedBody, pieces};

#[derive(Arbitrary, Debug)]
enum Input {
    /// Any bytes, as `WriteClient` pieces.
    Raw { bytes: Vec<u8>, cuts: Vec<u16> },
    /// A valid body, then surplus bytes.
    Valid {
        body: ChunkedBody,
        surplus: Vec<u8>,
        cuts: Vec<u16>,
    },
    /// pyisapie's `push_chunk` and `LAST_CHUNK`.
    Pyisapie {
        chunks: Vec<Vec<u8>>,
        cuts: Vec<u16>,
    },
}

/// The input: a mode byte, a piece size, then the body (mode 0: raw, so
/// seeds are real bodies) or a structured body (modes 1 and 2).
fn input(data: &[u8]) -> Option<Input> {
    let (&[mode, step], rest) = data.split_first_chunk::<2>()?;
    let step = u16::from(step).max(1);
    let cuts = (1..=rest.len() / usize::from(step))
        .map(|i| i as u16 * step)
        .collect();
    match mode % 3 {
        0 => Some(Input::Raw {
            bytes: rest.to_vec(),
            cuts,
        }),
        _ => Input::arbitrary(&mut Unstructured::new(rest)).ok(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = input(data) else { return };
    match input {
        Input::Raw { bytes, cuts } => {
            let _ = fuzzing::chunked_response(&pieces(&bytes, &cuts));
        }
        Input::Valid {
            body,
            surplus,
            cuts,
        } => {
            let (mut wire, data) = body.encode();
            wire.extend(&surplus);
            let d = fuzzing::chunked_response(&pieces(&wire, &cuts))
                .unwrap_or_else(|e| panic!("a valid body refused: {e}\n{wire:?}"));
            assert!(d.done, "a complete body not done");
            assert_eq!(d.data, data, "the data");
            assert_eq!(d.surplus, surplus.len(), "the surplus");
        }
        Input::Pyisapie { chunks, cuts } => {
            let mut wire = Vec::new();
            let mut data: Vec<u8> = Vec::new();
            for c in chunks.iter().filter(|c| !c.is_empty()) {
                pyisapie::http::push_chunk(&mut wire, c);
                data.extend(c);
            }
            wire.extend(pyisapie::http::LAST_CHUNK);
            let d = fuzzing::chunked_response(&pieces(&wire, &cuts))
                .unwrap_or_else(|e| panic!("pyisapie's chunks refused: {e}"));
            assert!(d.done);
            assert_eq!(d.data, data);
            assert_eq!(d.surplus, 0);
        }
    }
});
