//! The output protocol: a command never writes into its output folder directly. It writes every
//! file (tables, JSON, figures) into a staging folder beside it, `.NAME.tmp-PID`, and renames that
//! into place at the end ([`Staging::commit`]):
//!
//! * no folder before: `rename(staging, NAME)`;
//! * `--force` over an existing folder: the two are swapped in one step (`renameat2` with
//!   `RENAME_EXCHANGE` on Linux) and the old one, now under the staging name, is removed; where the
//!   file system cannot swap, the old folder is first moved aside to `.NAME.old-PID`, the new one
//!   renamed into place, then the old one removed.
//!
//! So an interrupted or failed command leaves the previous complete folder, or no folder, never a
//! mix, and `--force` leaves no stale file. A failed command removes its staging folder; a killed
//! one leaves it behind, and the next command on the same folder removes it (or, for a
//! `.NAME.old-PID` whose new folder never arrived, renames it back), checking first that its
//! process is gone.
//!
//! Fault injection for the tests (`tests/output_faults.rs`): with `HDSGD_FAULT_AT=k` the k-th
//! output step of the process (1-based: creating the staging folder, writing a file, drawing a
//! figure, each rename and removal of the commit) fails with an error; with `HDSGD_FAULT_AT=k:abort`
//! the process aborts there instead, like a `kill -9`. `HDSGD_NO_RENAME_EXCHANGE=1` takes the
//! move-aside path of file systems that cannot swap.

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// How an injected fault ends the step: an error (cleaned up by the command) or an abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultMode {
    Error,
    Abort,
}

fn fault_plan() -> Option<(usize, FaultMode)> {
    static PLAN: OnceLock<Option<(usize, FaultMode)>> = OnceLock::new();
    *PLAN.get_or_init(|| {
        let v = std::env::var("HDSGD_FAULT_AT").ok()?;
        let (k, mode) = match v.split_once(':') {
            Some((k, "abort")) => (k, FaultMode::Abort),
            Some((k, _)) => (k, FaultMode::Error),
            None => (v.as_str(), FaultMode::Error),
        };
        Some((k.trim().parse().ok()?, mode))
    })
}

static STEP: AtomicUsize = AtomicUsize::new(0);

/// One step of the output protocol (see the module docs): counts it and fails or aborts there
/// when `HDSGD_FAULT_AT` asks for it. A no-op otherwise.
pub fn fault_point(what: &str) -> Result<()> {
    let Some((at, mode)) = fault_plan() else {
        return Ok(());
    };
    let k = STEP.fetch_add(1, Ordering::SeqCst) + 1;
    if k == at {
        match mode {
            FaultMode::Abort => {
                eprintln!("HDSGD_FAULT_AT: aborting at output step {k} ({what})");
                std::process::abort();
            }
            FaultMode::Error => bail!("injected fault at output step {k} ({what}) (HDSGD_FAULT_AT)"),
        }
    }
    Ok(())
}

/// The name, parent and absolute path of an output folder.
fn split(dir: &Path) -> Result<(PathBuf, String)> {
    let abs = std::path::absolute(dir).with_context(|| format!("output folder {}", dir.display()))?;
    let name = abs
        .file_name()
        .ok_or_else(|| {
            anyhow!(
                "output folder {} has no name (use a path such as results/NAME)",
                dir.display()
            )
        })?
        .to_string_lossy()
        .into_owned();
    let parent = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    Ok((parent, name))
}

/// Whether process `pid` is still running (a stale staging folder's owner).
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: kill with signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Removes the staging folders of `name` left by killed processes, and puts back a folder a
/// killed `--force` moved aside if its replacement never arrived. Folders of running processes
/// are left alone.
pub fn clean_stale(parent: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let final_dir = parent.join(name);
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&format!(".{name}.")) else {
            continue;
        };
        let (kind, pid) = match rest.split_once('-') {
            Some((kind @ ("tmp" | "old"), pid)) => (kind, pid),
            _ => continue,
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if alive(pid) {
            continue;
        }
        let path = e.path();
        if kind == "old" && !final_dir.exists() {
            if std::fs::rename(&path, &final_dir).is_ok() {
                eprintln!(
                    "note: restored {} from an interrupted --force ({})",
                    final_dir.display(),
                    path.display()
                );
            }
            continue;
        }
        let _ = std::fs::remove_dir_all(&path);
    }
}

/// Whether `dir` exists and holds at least one entry.
pub fn non_empty(dir: &Path) -> Result<bool> {
    if !dir.exists() {
        return Ok(false);
    }
    if !dir.is_dir() {
        bail!("output path {} exists and is not a folder", dir.display());
    }
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("reading output folder {}", dir.display()))?
        .next()
        .is_some())
}

/// The staging folder of one command's outputs (module docs).
#[derive(Debug)]
pub struct Staging {
    final_dir: PathBuf,
    tmp: PathBuf,
    replace: bool,
    committed: bool,
    /// Files moved into an existing folder one by one, this one last ([`Staging::begin_files`]).
    into_last: Option<String>,
}

impl Staging {
    /// Checks the output folder `dir` (refused if it exists and is not empty, unless `replace`:
    /// `--force`, or a resumed escape study), cleans stale staging folders of killed commands and
    /// creates this command's staging folder. Errors name the path.
    pub fn begin(dir: &Path, replace: bool) -> Result<Staging> {
        let (parent, name) = split(dir)?;
        if parent.is_dir() {
            clean_stale(&parent, &name);
        }
        if non_empty(dir)? && !replace {
            bail!(
                "output folder {} already exists and is not empty: pass --force to overwrite it, or --out to choose another",
                dir.display()
            );
        }
        std::fs::create_dir_all(&parent).with_context(|| {
            format!(
                "cannot create the parent folder {} of the output folder",
                parent.display()
            )
        })?;
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        }
        fault_point("create the staging folder")?;
        std::fs::create_dir(&tmp).with_context(|| {
            format!(
                "cannot create the staging folder {} beside the output folder (is {} writable?)",
                tmp.display(),
                parent.display()
            )
        })?;
        Ok(Staging {
            final_dir: dir.to_path_buf(),
            tmp,
            replace,
            committed: false,
            into_last: None,
        })
    }

    /// Staging for outputs that go into an existing folder holding other things (`hdsgd merge`
    /// beside the shard folders): a staging folder `.merged.tmp-PID` inside `dir`, whose files the
    /// commit renames into `dir` one by one, `last` last (the marker of a complete set).
    pub fn begin_files(dir: &Path, last: &str) -> Result<Staging> {
        clean_stale(dir, "merged");
        let tmp = dir.join(format!(".merged.tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        }
        fault_point("create the staging folder")?;
        std::fs::create_dir(&tmp).with_context(|| {
            format!(
                "cannot create the staging folder {} (is {} writable?)",
                tmp.display(),
                dir.display()
            )
        })?;
        Ok(Staging {
            final_dir: dir.to_path_buf(),
            tmp,
            replace: true,
            committed: false,
            into_last: Some(last.to_string()),
        })
    }

    /// The staging folder: write every output here.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The output folder the staging folder becomes.
    pub fn final_dir(&self) -> &Path {
        &self.final_dir
    }

    /// Commits after a command's writer returned `written`: when it succeeded, or wrote its
    /// outputs and reported diverged runs ([`super::DivergedRuns`], returned after the commit);
    /// any other error leaves no folder (the staging folder is removed).
    pub fn finish<T>(self, written: Result<T>) -> Result<PathBuf> {
        match written {
            Ok(_) => self.commit(),
            Err(e) if e.is::<super::DivergedRuns>() => {
                self.commit()?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Renames the staging folder into place (module docs) and returns the output folder.
    pub fn commit(mut self) -> Result<PathBuf> {
        let dir = self.final_dir.clone();
        if let Some(last) = self.into_last.clone() {
            // The last file first out of the way, so that it never marks a mixed set.
            let _ = std::fs::remove_file(dir.join(&last));
            let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&self.tmp)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .filter(|n| *n != *last)
                .collect();
            names.sort();
            names.push(last.into());
            for n in names {
                let from = self.tmp.join(&n);
                if !from.exists() {
                    continue;
                }
                fault_point(&format!("move {} into place", n.to_string_lossy()))?;
                std::fs::rename(&from, dir.join(&n))
                    .with_context(|| format!("renaming {} into {}", from.display(), dir.display()))?;
            }
            self.committed = true;
            let _ = std::fs::remove_dir_all(&self.tmp);
            return Ok(dir);
        }
        fault_point("rename the staging folder into place")?;
        if non_empty(&dir)? && !self.replace {
            bail!(
                "output folder {} appeared while this command ran (another process?): pass --force to overwrite it",
                dir.display()
            );
        }
        if dir.exists() {
            if exchange(&self.tmp, &dir)? {
                // The old folder is now under the staging name.
                self.committed = true;
                remove_previous(&self.tmp);
                return Ok(dir);
            }
            let (parent, name) = split(&dir)?;
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            std::fs::rename(&dir, &old)
                .with_context(|| format!("moving the previous output folder {} aside", dir.display()))?;
            let moved =
                fault_point("rename the staging folder into place after moving the old one aside").and_then(|_| {
                    std::fs::rename(&self.tmp, &dir)
                        .with_context(|| format!("renaming {} to {}", self.tmp.display(), dir.display()))
                });
            if let Err(e) = moved {
                // Put the previous folder back.
                let _ = std::fs::rename(&old, &dir);
                return Err(e);
            }
            self.committed = true;
            remove_previous(&old);
        } else {
            std::fs::rename(&self.tmp, &dir)
                .with_context(|| format!("renaming {} to {}", self.tmp.display(), dir.display()))?;
            self.committed = true;
        }
        Ok(dir)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Removes the previous output folder once the new one is in place. A failure is only a warning:
/// the outputs are complete, and the next command on this folder removes the leftover.
fn remove_previous(old: &Path) {
    let r = fault_point("remove the previous folder").and_then(|_| {
        std::fs::remove_dir_all(old)
            .with_context(|| format!("removing the previous output folder (now {})", old.display()))
    });
    if let Err(e) = r {
        eprintln!("warning: {e:#}; the next command on this output folder removes it");
    }
}

/// Swaps two paths in one step; Ok(false) where the system or file system cannot.
fn exchange(a: &Path, b: &Path) -> Result<bool> {
    if std::env::var_os("HDSGD_NO_RENAME_EXCHANGE").is_some_and(|v| v != "0") {
        return Ok(false);
    }
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let ca = CString::new(a.as_os_str().as_bytes())?;
        let cb = CString::new(b.as_os_str().as_bytes())?;
        // SAFETY: two valid NUL-terminated paths relative to the working directory.
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if r == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => Ok(false),
            _ => Err(e).with_context(|| format!("swapping {} with {}", a.display(), b.display())),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_commits_and_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let s = Staging::begin(&out, false).unwrap();
        std::fs::write(s.path().join("a.csv"), "1\n").unwrap();
        assert!(!out.exists());
        s.commit().unwrap();
        assert_eq!(std::fs::read_to_string(out.join("a.csv")).unwrap(), "1\n");
        assert!(Staging::begin(&out, false).is_err());
        let s = Staging::begin(&out, true).unwrap();
        std::fs::write(s.path().join("b.csv"), "2\n").unwrap();
        s.commit().unwrap();
        assert!(!out.join("a.csv").exists() && out.join("b.csv").exists());
        // Only the output folder is left.
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out")]);
    }

    #[test]
    fn a_dropped_staging_folder_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        {
            let s = Staging::begin(&out, false).unwrap();
            std::fs::write(s.path().join("a.csv"), "1\n").unwrap();
        }
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn stale_folders_of_dead_processes_are_cleaned() {
        let tmp = tempfile::tempdir().unwrap();
        // A pid that cannot be running (above the kernel's pid_max).
        let dead = 4_194_304 + 7;
        std::fs::create_dir(tmp.path().join(format!(".out.tmp-{dead}"))).unwrap();
        std::fs::create_dir(tmp.path().join(format!(".out.old-{dead}"))).unwrap();
        std::fs::write(tmp.path().join(format!(".out.old-{dead}/x.csv")), "old\n").unwrap();
        std::fs::create_dir(tmp.path().join(".other.tmp-1")).unwrap();
        clean_stale(tmp.path(), "out");
        // The moved-aside folder is restored, the staging folder removed, others untouched.
        assert_eq!(std::fs::read_to_string(tmp.path().join("out/x.csv")).unwrap(), "old\n");
        assert!(!tmp.path().join(format!(".out.tmp-{dead}")).exists());
        assert!(tmp.path().join(".other.tmp-1").exists());
    }

    #[test]
    fn an_output_path_that_is_a_file_is_refused_with_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("file");
        std::fs::write(&f, "x").unwrap();
        let e = Staging::begin(&f, true).unwrap_err().to_string();
        assert!(e.contains("not a folder") && e.contains("file"), "{e}");
        let e = format!("{:#}", Staging::begin(&f.join("sub"), false).unwrap_err());
        assert!(e.contains(&f.display().to_string()), "{e}");
    }
}
