//! `serve-bare` (being written).
use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct BareArgs {}

pub fn serve(_a: BareArgs) -> Result<()> {
    anyhow::bail!("not written yet")
}
