//! `isapi-harness`: conformance (`conform`) and load (`bench`) tooling for
//! pyisapie-rs, plus a raw HTTP/1.x response reader ([`wire`]) used by tests.
#![forbid(unsafe_code)]

pub mod wire;
