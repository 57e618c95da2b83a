//! `isapi-harness`: conformance (`conform`) and load (`bench`) tooling for
//! pyisapie-rs, plus a raw HTTP/1.x response reader ([`wire`]) used by tests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bare;
pub mod bench;
pub mod cases;
pub mod cli;
pub mod conform;
pub mod fixtures;
pub mod machine;
pub mod procfs;
pub mod report;
pub mod servers;
pub mod smuggle;
pub mod soak;
pub mod wire;

#[cfg(test)]
mod testing;
