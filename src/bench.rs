//! `hdsgd bench`: throughput of the direct simulator (issue 5; being written).

/// Arguments of `hdsgd bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {}

/// `hdsgd bench` (not available yet in this build).
pub fn command(_args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("this command is not implemented yet")
}
