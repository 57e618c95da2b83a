//! `bench` (being written).
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct BenchArgs {}

pub fn run(_a: BenchArgs) -> Result<ExitCode> {
    anyhow::bail!("bench: not written yet")
}
