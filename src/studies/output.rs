//! Output files: CSV tables and JSON summaries, written atomically (temporary file + rename) into
//! an output folder that is never overwritten without `--force`.

use crate::overlaps::Overlaps;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Refuses to reuse a non-empty output folder unless `force`. Call before any long computation.
pub fn check_output_dir(dir: &Path, force: bool) -> Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("output path {} exists and is not a folder", dir.display());
        }
        let non_empty = std::fs::read_dir(dir)?.next().is_some();
        if non_empty && !force {
            bail!(
                "output folder {} already exists and is not empty: pass --force to overwrite it, or --out to choose another",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` via a temporary file in the same folder and a rename, so that a
/// reader never sees a half-written file. Creates the folder if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    super::outdir::fault_point(&format!("write {}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .context("output path has no file name")?
        .to_string_lossy();
    let tmp: PathBuf = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// A CSV cell of a number: its shortest round-trip form, or an empty field when it is undefined
/// (NaN, ±∞): no CSV of hdsgd holds a NaN or inf literal.
pub fn cell(x: f64) -> String {
    if x.is_finite() {
        x.to_string()
    } else {
        String::new()
    }
}

/// Header of the trajectory tables: `n,seed,t,eg,train_loss,q_i_j…,m_i_k…`.
pub fn trajectory_header(p: usize, p_star: usize) -> String {
    let mut h = String::from("n,seed,t,eg,train_loss");
    for c in Overlaps::column_names(p, p_star) {
        h.push(',');
        h.push_str(&c);
    }
    h
}

/// Appends one row (floats in Rust's shortest round-trip form, so files are exact and
/// reproducible bit for bit; an absent training loss is an empty field).
pub fn push_row(out: &mut String, n: usize, seed: i64, t: f64, eg: f64, train: Option<f64>, ov: &Overlaps) {
    let _ = write!(out, "{n},{seed},{t},{eg},");
    if let Some(l) = train {
        let _ = write!(out, "{l}");
    }
    for x in ov.to_state().iter() {
        let _ = write!(out, ",{x}");
    }
    out.push('\n');
}
