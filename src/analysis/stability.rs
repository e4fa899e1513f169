//! Plateau fixed points and linear stability of the overlap ODEs (issue 3; being written).

/// The command (not available yet in this build).
pub fn command(_exp: &crate::config::Experiment, _opts: &crate::experiments::OutputOptions) -> anyhow::Result<()> {
    anyhow::bail!("this command is not implemented yet")
}
