//! Plateau-escape times (issue 3; being written).

use serde::{Deserialize, Serialize};

/// `[escape]` section of an experiment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EscapeConfig {}

impl EscapeConfig {
    /// Checks the section; on error returns (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        Ok(())
    }
}

/// The command (not available yet in this build).
pub fn command(_exp: &crate::config::Experiment, _opts: &crate::experiments::OutputOptions) -> anyhow::Result<()> {
    anyhow::bail!("this command is not implemented yet")
}
