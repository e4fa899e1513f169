//! The resume journal of a long study (`hdsgd escape`): a CSV file in the output folder to which
//! every finished run is appended as one whole line, and a sidecar JSON file with the hash of the
//! configuration it belongs to. It is the one exception to the staging protocol of
//! [`super::outdir`]: it must survive a kill, so it lives in the output folder itself.
//!
//! * `NAME.csv`: a header line, then one line per finished run (plain CSV: `pandas.read_csv`
//!   reads it as it is);
//! * `NAME.json`: `{"config_hash": …, "file": "NAME.csv", "header": …, "written_by": …}`.
//!
//! On resume the lines are read back; a torn last line (no final newline: the process was killed
//! while writing it) and any unreadable line are dropped with a warning, and the file is cut back
//! to its whole, readable lines before new runs are appended. Files of older versions, whose first
//! line was `# config_hash=…`, are converted.
//!
//! A study's output folder is thus, at any time, either complete (journal and derived outputs) or
//! the journal alone (plus, on resume, the previous complete outputs, which the next commit
//! replaces): never a half-written derived file.

use super::outdir::{fault_point, non_empty, Staging};
use super::output::write_atomic;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An open journal, ready for appending.
#[derive(Debug)]
pub struct Journal {
    csv: PathBuf,
    sidecar: PathBuf,
    file: Mutex<std::fs::File>,
}

/// What [`Journal::open`] found.
#[derive(Debug)]
pub struct Resumed {
    pub journal: Journal,
    /// The readable data lines of a previous invocation (without newline), in file order.
    pub lines: Vec<String>,
    /// Whether the journal existed before (a resumed study).
    pub resumed: bool,
}

fn sidecar_json(name: &str, header: &str, hash: &str) -> String {
    let v = json!({
        "config_hash": hash,
        "file": format!("{name}.csv"),
        "header": header,
        "written_by": format!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")),
        "note": "resume journal: one line per finished run, appended as runs finish; a study resumes only with the same config_hash",
    });
    serde_json::to_string_pretty(&v).expect("JSON") + "\n"
}

/// Whether `dir` holds the journal `name`.
pub fn exists(dir: &Path, name: &str) -> bool {
    dir.join(format!("{name}.csv")).exists()
}

impl Journal {
    /// Opens the journal `name` (`NAME.csv`, `NAME.json`) of the output folder `dir` for a study
    /// with configuration hash `hash` and CSV `header`:
    ///
    /// * no folder, or an empty one: created (through a staging folder) holding an empty journal;
    /// * a journal of the same hash: resumed (`valid` decides which lines are readable);
    /// * a journal of another hash: an error, unless `force`, which starts a new one;
    /// * a non-empty folder without a journal: an error, unless `force`.
    ///
    /// With `force` the folder is replaced at once by one holding only the new, empty journal.
    pub fn open(
        dir: &Path,
        name: &str,
        header: &str,
        hash: &str,
        force: bool,
        valid: impl Fn(&str) -> bool,
    ) -> Result<Resumed> {
        let csv = dir.join(format!("{name}.csv"));
        let sidecar = dir.join(format!("{name}.json"));
        let mut lines = vec![];
        let resumed = csv.exists() && !force;
        if resumed {
            lines = resume(dir, name, header, hash, valid)?;
        } else if csv.exists() || non_empty(dir)? {
            if !force {
                bail!(
                    "output folder {} already exists and is not empty: pass --force to overwrite it, or --out to choose another",
                    dir.display()
                );
            }
            fresh(dir, name, header, hash)?;
        } else {
            fresh(dir, name, header, hash)?;
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&csv)
            .with_context(|| format!("opening {} to append", csv.display()))?;
        Ok(Resumed {
            journal: Journal {
                csv,
                sidecar,
                file: Mutex::new(file),
            },
            lines,
            resumed,
        })
    }

    /// Appends one whole line (a `\n` is added) and flushes it.
    pub fn append(&self, line: &str) -> Result<()> {
        fault_point("append to the journal")?;
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let mut f = self.file.lock().map_err(|_| anyhow::anyhow!("journal lock poisoned"))?;
        f.write_all(&bytes)
            .and_then(|_| f.flush())
            .with_context(|| format!("appending to {}", self.csv.display()))
    }

    /// Copies the journal and its sidecar into the staging folder `to` (before the final commit).
    pub fn copy_into(&self, to: &Path) -> Result<()> {
        for p in [&self.csv, &self.sidecar] {
            let name = p.file_name().expect("file name");
            fault_point(&format!("copy {}", p.display()))?;
            std::fs::copy(p, to.join(name)).with_context(|| format!("copying {} to {}", p.display(), to.display()))?;
        }
        Ok(())
    }
}

/// The readable lines of the existing journal `name` in `dir`, after checking that it belongs to
/// configuration `hash`. A journal that is not clean (legacy hash line, another header, a torn
/// or an unreadable line) is rewritten with its readable lines only, atomically, so that a kill
/// keeps the old file.
fn resume(dir: &Path, name: &str, header: &str, hash: &str, valid: impl Fn(&str) -> bool) -> Result<Vec<String>> {
    let csv = dir.join(format!("{name}.csv"));
    let text = std::fs::read(&csv).with_context(|| format!("reading {}", csv.display()))?;
    let text = String::from_utf8_lossy(&text).into_owned();
    let (found, rest, legacy) = recorded_hash(&text, &dir.join(format!("{name}.json")), &csv)?;
    if found != hash {
        bail!(
            "{} was written for another configuration (hash {found:?}, now {hash}): pass --force to start afresh, or --out to choose another folder",
            csv.display()
        );
    }
    // The header line (replaced by the current one if it differs: same configuration).
    let (_, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let (lines, torn, dropped) = readable_lines(&csv, body, valid);
    let clean = rest.split_once('\n').map(|(h, _)| h) == Some(header) && !legacy && !torn && dropped == 0;
    if !clean {
        write_complete(dir, name, header, hash, &lines)?;
    }
    Ok(lines)
}

/// The configuration hash a journal was written for, the text after it, and whether the file is
/// of the legacy form (hash on a first `# config_hash=…` line rather than in the sidecar).
fn recorded_hash<'t>(text: &'t str, sidecar: &Path, csv: &Path) -> Result<(String, &'t str, bool)> {
    if text.starts_with("# config_hash=") {
        let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
        return Ok((
            first.trim_start_matches("# config_hash=").trim().to_string(),
            rest,
            true,
        ));
    }
    let side = std::fs::read_to_string(sidecar).with_context(|| {
        format!(
            "reading {} (the configuration hash of {})",
            sidecar.display(),
            csv.display()
        )
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&side).with_context(|| format!("{} is not valid JSON", sidecar.display()))?;
    Ok((v["config_hash"].as_str().unwrap_or("").to_string(), text, false))
}

/// The data lines of a journal `body` (after its header) that `valid` accepts, whether its last
/// line was torn (no final newline: dropped) and how many lines were unreadable, each dropped line
/// with a warning: its run is done again.
fn readable_lines(csv: &Path, body: &str, valid: impl Fn(&str) -> bool) -> (Vec<String>, bool, usize) {
    let torn = !body.is_empty() && !body.ends_with('\n');
    let mut body_lines: Vec<&str> = body.split_terminator('\n').collect();
    if torn {
        let cut = body_lines.pop().unwrap_or("");
        eprintln!(
            "warning: {}: dropped a torn last line (an interrupted write: {:?}); that run is done again",
            csv.display(),
            cut.chars().take(60).collect::<String>()
        );
    }
    let mut lines = vec![];
    let mut dropped = 0;
    for l in body_lines {
        if valid(l) {
            lines.push(l.to_string());
        } else {
            dropped += 1;
            eprintln!(
                "warning: {}: dropped an unreadable line {:?}; that run is done again",
                csv.display(),
                l.chars().take(60).collect::<String>()
            );
        }
    }
    (lines, torn, dropped)
}

/// Writes a complete journal (`NAME.csv` with `lines`, and its sidecar) into `dir`: what a
/// finished study leaves, for the folder that `hdsgd merge` assembles from shards.
pub fn write_complete(dir: &Path, name: &str, header: &str, hash: &str, lines: &[String]) -> Result<()> {
    let mut t = String::new();
    t.push_str(header);
    t.push('\n');
    for l in lines {
        t.push_str(l);
        t.push('\n');
    }
    write_atomic(
        &dir.join(format!("{name}.json")),
        sidecar_json(name, header, hash).as_bytes(),
    )?;
    write_atomic(&dir.join(format!("{name}.csv")), t.as_bytes())
}

/// Replaces `dir` (absent, empty, or to be discarded) by a folder holding only an empty journal.
fn fresh(dir: &Path, name: &str, header: &str, hash: &str) -> Result<()> {
    let stage = Staging::begin(dir, true)?;
    write_atomic(
        &stage.path().join(format!("{name}.json")),
        sidecar_json(name, header, hash).as_bytes(),
    )?;
    write_atomic(
        &stage.path().join(format!("{name}.csv")),
        format!("{header}\n").as_bytes(),
    )?;
    stage.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_and_legacy_journals_are_repaired() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let ok = |l: &str| l.split(',').count() == 2 && l.split(',').all(|x| x.parse::<i64>().is_ok());
        let r = Journal::open(&dir, "runs", "a,b", "h1", false, ok).unwrap();
        assert!(!r.resumed && r.lines.is_empty());
        r.journal.append("1,2").unwrap();
        r.journal.append("3,4").unwrap();
        drop(r);
        // A kill in the middle of a line.
        let csv = dir.join("runs.csv");
        let mut f = std::fs::OpenOptions::new().append(true).open(&csv).unwrap();
        f.write_all(b"5,").unwrap();
        drop(f);
        let r = Journal::open(&dir, "runs", "a,b", "h1", false, ok).unwrap();
        assert_eq!(r.lines, vec!["1,2", "3,4"]);
        r.journal.append("5,6").unwrap();
        assert_eq!(std::fs::read_to_string(&csv).unwrap(), "a,b\n1,2\n3,4\n5,6\n");
        assert!(Journal::open(&dir, "runs", "a,b", "h2", false, ok).is_err());
        // Legacy: the hash on the first line.
        std::fs::write(&csv, "# config_hash=h1\na,b\n1,2\nxx\n").unwrap();
        std::fs::remove_file(dir.join("runs.json")).unwrap();
        let r = Journal::open(&dir, "runs", "a,b", "h1", false, ok).unwrap();
        assert_eq!(r.lines, vec!["1,2"]);
        assert_eq!(std::fs::read_to_string(&csv).unwrap(), "a,b\n1,2\n");
        let side: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("runs.json")).unwrap()).unwrap();
        assert_eq!(side["config_hash"], "h1");
        // --force: a fresh journal.
        let r = Journal::open(&dir, "runs", "a,b", "h2", true, ok).unwrap();
        assert!(r.lines.is_empty());
        assert_eq!(std::fs::read_to_string(&csv).unwrap(), "a,b\n");
    }
}
