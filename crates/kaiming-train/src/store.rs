//! The run store: the folder of run folders, and each run folder's name, lock and files.
//!
//! - **Names**: `--name` as given; otherwise `<model>-<init>-s<seed>-<UTC time>`, with `-2`, `-3`,
//!   … appended when that is taken. A name is claimed by creating its folder, which the file
//!   system does for one process only, so two runs started in the same second get two folders.
//! - **Lock**: a run folder is written by one process at a time. Each holds an OS lock on
//!   `run.lock` (released by the OS when the process dies, even by kill -9); a second process is
//!   refused with the first one's pid.
//! - **Nothing left behind**: a folder created for a run that fails before its first step
//!   (no data, a failed download, a bad device) is removed again.
//! - The "same run already here" check, for `train` and for sweeps.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::config::{RunConfig, read_toml};
use crate::summary::Summary;

/// The lock file of a run folder.
const LOCK_FILE: &str = "run.lock";

/// The folder that holds run folders (`--out`).
#[derive(Debug, Clone)]
pub struct RunStore {
    root: PathBuf,
}

/// What a name in the store holds, for a given configuration.
#[derive(Debug)]
pub enum Slot {
    /// Nothing: a run may start there.
    Free,
    /// A run of the same configuration, with its summary where it has one.
    SameRun(Option<Box<Summary>>),
    /// Something else: another run, or files that are not a run.
    Other,
}

impl RunStore {
    /// The store in `root` (created when the first run is).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunStore { root: root.into() }
    }

    /// The folder of the run called `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Creates and locks the folder of a new run of `config`: `name`, or a unique default name.
    pub fn create(&self, config: &RunConfig, name: Option<&str>) -> Result<RunFolder> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        match name {
            Some(name) => {
                check_name(name)?;
                let path = self.path(name);
                match std::fs::create_dir(&path) {
                    Ok(()) => RunFolder::claim(path, false),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        self.claim_existing(path, config)
                    }
                    Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
                }
            }
            None => {
                let base = format!("{}-{}", config.label(), utc_stamp());
                for attempt in 1.. {
                    let name = match attempt {
                        1 => base.clone(),
                        n => format!("{base}-{n}"),
                    };
                    let path = self.path(&name);
                    match std::fs::create_dir(&path) {
                        Ok(()) => return RunFolder::claim(path, false),
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("cannot create {}", path.display()));
                        }
                    }
                }
                unreachable!("the attempts are unbounded")
            }
        }
    }

    /// Opens and locks the folder of an existing run, to continue it.
    pub fn open(path: &Path) -> Result<RunFolder> {
        if !RunFiles::new(path).config().is_file() {
            bail!("{} is not a run folder (no config.toml)", path.display());
        }
        RunFolder::claim(path.to_path_buf(), true)
    }

    /// What `name` holds for a run of `config`.
    pub fn slot(&self, name: &str, config: &RunConfig) -> Slot {
        let path = self.path(name);
        if !path.exists() {
            return Slot::Free;
        }
        let files = RunFiles::new(&path);
        // Read unchecked: a finished run of a backend this binary lacks is still this run (a
        // resume is what needs the backend, and says so).
        match read_toml::<RunConfig>(&files.config()) {
            Ok(saved) if same_run(&saved, config) => {
                Slot::SameRun(Summary::read(&files.summary()).ok().map(Box::new))
            }
            Ok(_) => Slot::Other,
            Err(_) if is_empty_but_lock(&path) => Slot::Free,
            Err(_) => Slot::Other,
        }
    }

    /// `path` exists: refuses unless it is an empty leftover nobody holds, which is taken over.
    fn claim_existing(&self, path: PathBuf, config: &RunConfig) -> Result<RunFolder> {
        if is_empty_but_lock(&path) {
            // A folder whose creator died before writing anything, or an empty folder the
            // user made: the lock decides who takes it.
            return RunFolder::claim(path, false);
        }
        // Holding the lock (refused with the holder's pid otherwise) while reading, and never
        // removing what is there: the folder is someone's run.
        let _held = RunFolder::claim(path.clone(), true)?;
        match read_toml::<RunConfig>(&RunFiles::new(&path).config()) {
            Ok(saved) if same_run(&saved, config) => bail!(
                "{} already holds this run; continue it with --resume {}",
                path.display(),
                path.display()
            ),
            _ => bail!(
                "{} already holds a different run; choose another --name or --out",
                path.display()
            ),
        }
    }
}

/// Whether a saved run and `config` are the same run: the same settings as `config.toml` records
/// them, but for `[kernels]`, which says how the CPU computes, not what (a `KAIMING_CONV` set on
/// one invocation of a sweep must not make its runs strangers to the next).
fn same_run(saved: &RunConfig, config: &RunConfig) -> bool {
    let mut saved = saved.recorded();
    saved.kernels = config.kernels.clone();
    saved == config.recorded()
}

/// The files of a run folder, by name: the one place those names are written.
#[derive(Debug, Clone)]
pub struct RunFiles {
    dir: PathBuf,
}

impl RunFiles {
    /// The files of the run folder `dir`.
    pub fn new(dir: &Path) -> Self {
        RunFiles {
            dir: dir.to_path_buf(),
        }
    }

    /// Whether `dir` holds a run (it has `summary.json`).
    pub fn is_run(dir: &Path) -> bool {
        RunFiles::new(dir).summary().is_file()
    }

    /// `config.toml`: the resolved settings.
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// `metrics.csv`: the rows so far.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.csv")
    }

    /// `summary.json`: what the run is and how it stands.
    pub fn summary(&self) -> PathBuf {
        self.dir.join("summary.json")
    }

    /// `monitor.csv`: the signal monitor's measurements.
    pub fn monitor(&self) -> PathBuf {
        self.dir.join("monitor.csv")
    }

    /// `lsuv.txt`: what the LSUV pass did to each layer, where the run has one.
    pub fn lsuv(&self) -> PathBuf {
        self.dir.join("lsuv.txt")
    }

    /// `tensorboard/`: the event files.
    pub fn tensorboard(&self) -> PathBuf {
        self.dir.join("tensorboard")
    }

    /// `checkpoints/`: the checkpoint sets.
    pub fn checkpoints(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }
}

/// A run folder, locked by this process for as long as the value lives.
#[derive(Debug)]
pub struct RunFolder {
    path: PathBuf,
    files: RunFiles,
    name: String,
    _lock: File,
    /// Removed on drop unless the run has started (or the folder held a run already).
    keep: bool,
}

impl RunFolder {
    /// Locks `path` (which exists); `keep` says whether the folder outlives a failure.
    fn claim(path: PathBuf, keep: bool) -> Result<RunFolder> {
        let lock_path = path.join(LOCK_FILE);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = read_pid(&mut lock).unwrap_or_else(|| "unknown".to_string());
                bail!(
                    "{} is in use by another train process (pid {pid}); wait for it, or choose \
                     another --name or --out",
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
            }
        }
        lock.set_len(0)
            .and_then(|()| lock.rewind())
            .and_then(|()| writeln!(lock, "{}", std::process::id()))
            .with_context(|| format!("cannot write {}", lock_path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(RunFolder {
            files: RunFiles::new(&path),
            path,
            name,
            _lock: lock,
            keep,
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run's name: the folder's.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where its files are.
    pub fn files(&self) -> &RunFiles {
        &self.files
    }

    /// The run has started: from now on the folder stays, whatever happens.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for RunFolder {
    /// Removes the folder of a run that never started. It is first renamed out of the way,
    /// still locked, so that no other process can find it half removed and take it over.
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let hidden =
            self.path
                .with_file_name(format!(".failed-{}-{}", self.name, std::process::id()));
        let doomed = match std::fs::rename(&self.path, &hidden) {
            Ok(()) => hidden,
            Err(_) => self.path.clone(),
        };
        if let Err(error) = std::fs::remove_dir_all(&doomed) {
            tracing::warn!(
                "cannot remove {} after a failed start: {error}",
                doomed.display()
            );
        }
    }
}

/// A run name is one plain path component.
fn check_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.starts_with('.');
    if !plain {
        bail!("--name '{name}': a run name is one folder name (no '/', not starting with '.')");
    }
    Ok(())
}

/// Whether `path` holds nothing but (at most) a lock file; an entry that cannot be read counts
/// as something.
fn is_empty_but_lock(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|entries| {
        entries
            .map(|e| e.map(|e| e.file_name() == LOCK_FILE))
            .all(|only_lock| only_lock.unwrap_or(false))
    })
}

fn read_pid(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    let pid = text.trim();
    (!pid.is_empty()).then(|| pid.to_string())
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn utc_stamp() -> String {
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    time.chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_runs_in_the_same_second_get_two_folders() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::new(dir.path());
        let config = crate::config::RunArgs::default().resolve().unwrap();
        let mut first = store.create(&config, None).unwrap();
        let mut second = store.create(&config, None).unwrap();
        first.keep();
        second.keep();
        assert_ne!(first.path(), second.path());
        assert!(
            second.name().starts_with(first.name()),
            "{} then {}",
            first.name(),
            second.name()
        );
    }

    #[test]
    fn a_folder_is_written_by_one_holder_and_removed_if_its_run_never_started() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::new(dir.path());
        let config = crate::config::RunArgs::default().resolve().unwrap();
        let first = store.create(&config, Some("x")).unwrap();
        let error = store.create(&config, Some("x")).unwrap_err().to_string();
        assert!(error.contains("in use"), "{error}");
        assert!(error.contains(&std::process::id().to_string()), "{error}");
        drop(first);
        assert!(!dir.path().join("x").exists());
    }

    /// A saved run is found again though `[kernels]` differs, and though its backend is not
    /// compiled in here (Metal, on Linux); any other setting makes it another run.
    #[test]
    fn a_run_is_the_same_whatever_its_kernels_and_whether_its_backend_is_compiled() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::new(dir.path());
        let mut saved = crate::config::RunArgs::default().resolve().unwrap();
        saved.backend = crate::backend::Backend::Metal;
        saved.kernels.conv = kaiming_kernels::ConvAlgorithm::Gemm;
        std::fs::create_dir_all(store.path("r")).unwrap();
        std::fs::write(store.path("r").join("config.toml"), saved.to_toml()).unwrap();

        let mut config = saved.clone();
        config.kernels.conv = kaiming_kernels::ConvAlgorithm::Auto;
        assert!(matches!(store.slot("r", &config), Slot::SameRun(None)));
        config.optimizer.lr *= 2.0;
        assert!(matches!(store.slot("r", &config), Slot::Other));
    }

    #[test]
    fn names_that_are_not_one_folder_are_refused() {
        for name in ["", "a/b", "..", ".hidden"] {
            assert!(check_name(name).is_err(), "{name}");
        }
        assert!(check_name("resnet20-he").is_ok());
    }
}
