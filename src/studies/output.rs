//! Output files: CSV tables and JSON summaries, written atomically (temporary file + rename) into
//! an output folder that is never overwritten without `--force`.

use crate::config::Experiment;
use crate::overlaps::Overlaps;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
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

/// Writes `value` as pretty-printed JSON to `path` atomically.
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
}

/// The `summary.json` of a command: the fields every summary starts with (crate, version, the
/// resolved experiment, the threads used), then the command's own `fields` (an object).
pub fn summary(exp: &Experiment, threads: usize, fields: Value) -> Value {
    let mut v = json!({
        "crate": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "experiment": exp,
        "threads": if threads == 0 { rayon::current_num_threads() } else { threads },
    });
    if let (Some(map), Value::Object(extra)) = (v.as_object_mut(), fields) {
        map.extend(extra);
    }
    v
}

/// A CSV table built in memory with the `csv` crate, then written atomically ([`write_atomic`]).
///
/// Numbers are formatted by the caller with [`num`], [`cell`] or [`opt`]: Rust's shortest
/// round-trip form (`{}`), so that files are exact and reproducible bit for bit, and never `NaN`.
pub struct CsvTable {
    writer: csv::Writer<Vec<u8>>,
}

impl CsvTable {
    /// A table with this header line.
    pub fn new<I, S>(header: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        Self::with_writer(csv::WriterBuilder::new().from_writer(vec![]), header)
    }

    /// A table whose rows may have more fields than the header (trailing optional columns).
    pub fn flexible<I, S>(header: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        Self::with_writer(csv::WriterBuilder::new().flexible(true).from_writer(vec![]), header)
    }

    fn with_writer<I, S>(mut writer: csv::Writer<Vec<u8>>, header: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        writer.write_record(header)?;
        Ok(CsvTable { writer })
    }

    /// Appends one row.
    pub fn row<I, S>(&mut self, fields: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        Ok(self.writer.write_record(fields)?)
    }

    /// The table's bytes.
    pub fn into_bytes(self) -> Result<Vec<u8>> {
        self.writer
            .into_inner()
            .map_err(|e| anyhow::anyhow!("CSV buffer: {}", e.error()))
    }

    /// Writes the table to `path` atomically.
    pub fn write(self, path: &Path) -> Result<()> {
        write_atomic(path, &self.into_bytes()?)
    }
}

/// A number in its shortest round-trip form (`{}`).
pub fn num(x: impl std::fmt::Display) -> String {
    x.to_string()
}

/// A float, or an empty field when it is not finite (files never hold NaN).
pub fn cell(x: f64) -> String {
    if x.is_finite() {
        x.to_string()
    } else {
        String::new()
    }
}

/// A value, or an empty field when absent.
pub fn opt<T: std::fmt::Display>(x: Option<T>) -> String {
    x.map(|v| v.to_string()).unwrap_or_default()
}

/// Header of the trajectory tables: `n,seed,t,t_exact,eg,train_loss,q_i_j…,m_i_k…` (t the nominal
/// grid time, identical across N; t_exact the time of the step actually recorded), then `a_i…` when
/// the second layer is trained (`trained_a`).
pub fn trajectory_header(p: usize, p_star: usize, trained_a: bool) -> Vec<String> {
    let mut h: Vec<String> = ["n", "seed", "t", "t_exact", "eg", "train_loss"]
        .map(String::from)
        .to_vec();
    h.extend(Overlaps::column_names(p, p_star));
    if trained_a {
        h.extend((0..p).map(|i| format!("a_{i}")));
    }
    h
}

/// A trajectory table with its header (see [`trajectory_header`]).
pub fn trajectory_table(p: usize, p_star: usize, trained_a: bool) -> Result<CsvTable> {
    CsvTable::new(trajectory_header(p, p_star, trained_a))
}

/// Appends one trajectory row: nominal time `t`, exact time `t_exact` (an absent training loss is
/// an empty field), the overlaps and, for a trained second layer, a.
#[allow(clippy::too_many_arguments)]
pub fn push_row(
    table: &mut CsvTable,
    n: usize,
    seed: i64,
    t: f64,
    t_exact: f64,
    eg: f64,
    train: Option<f64>,
    ov: &Overlaps,
    a: Option<&[f64]>,
) -> Result<()> {
    let mut row = vec![num(n), num(seed), num(t), num(t_exact), num(eg), opt(train)];
    row.extend(ov.to_state().iter().map(num));
    row.extend(a.into_iter().flatten().map(num));
    table.row(row)
}
