//! Finding the dataset on disk: `--data-dir` flag, then `CIFAR10_DIR`, then
//! `./datasets/cifar-10-batches-bin`, then burn-dataset's cache; the download comes last.
//!
//! A place the user named (flag or variable) must hold the data: if it does not, that is an
//! error, never a silent fall-through to another copy. The implicit places are skipped when
//! they do not exist, but an existing, broken one is reported rather than hidden.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::dataset::Layout;
use crate::download::{DownloadConfig, download};
use crate::error::DataError;

/// The environment variable naming the data folder.
pub const DIR_ENV: &str = "CIFAR10_DIR";

/// The folder looked for under the current directory (and where the download puts the data).
pub const LOCAL_DIR: &str = "datasets/cifar-10-batches-bin";

/// Where the data folder came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The `--data-dir` flag.
    Flag,
    /// The `CIFAR10_DIR` variable.
    Env,
    /// `datasets/cifar-10-batches-bin` under the current directory.
    WorkingDir,
    /// burn-dataset's own download cache (image-folder layout).
    BurnCache,
    /// Downloaded just now.
    Download,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "--data-dir",
            Source::Env => DIR_ENV,
            Source::WorkingDir => "the current directory",
            Source::BurnCache => "burn-dataset's cache",
            Source::Download => "a fresh download",
        })
    }
}

/// A data folder that was found, with its layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The folder.
    pub dir: PathBuf,
    /// How it was found.
    pub source: Source,
    /// What it holds.
    pub layout: Layout,
}

/// The candidate folders, in priority order; built from the process environment by
/// [`SearchPaths::from_env`], or by hand in tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchPaths {
    /// The `--data-dir` flag.
    pub flag: Option<PathBuf>,
    /// The `CIFAR10_DIR` variable.
    pub env: Option<PathBuf>,
    /// `datasets/cifar-10-batches-bin` under the current directory.
    pub working_dir: Option<PathBuf>,
    /// burn-dataset's CIFAR-10 cache folder.
    pub burn_cache: Option<PathBuf>,
}

impl SearchPaths {
    /// The candidates for this process: the flag, `CIFAR10_DIR` (ignored when empty), the
    /// folder under the current directory, and burn-dataset's cache.
    pub fn from_env(flag: Option<&Path>) -> Self {
        SearchPaths {
            flag: flag.map(Path::to_path_buf),
            env: std::env::var_os(DIR_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            working_dir: Some(PathBuf::from(LOCAL_DIR)),
            burn_cache: burn_cache_dir(),
        }
    }

    /// The first candidate holding data, as described in the module documentation.
    pub fn locate(&self) -> Result<Located, DataError> {
        if let Some(dir) = &self.flag {
            return found(dir, Source::Flag);
        }
        if let Some(dir) = &self.env {
            return found(dir, Source::Env);
        }
        let implicit = [
            (&self.working_dir, Source::WorkingDir),
            (&self.burn_cache, Source::BurnCache),
        ];
        for (dir, source) in implicit {
            match dir {
                Some(dir) if dir.exists() => return found(dir, source),
                _ => tracing::debug!(dir = ?dir, %source, "no CIFAR data here"),
            }
        }
        Err(DataError::NotFound {
            searched: implicit.iter().filter_map(|(d, _)| (*d).clone()).collect(),
        })
    }
}

fn found(dir: &Path, source: Source) -> Result<Located, DataError> {
    let layout = Layout::detect(dir)?;
    tracing::info!(dir = %dir.display(), %source, ?layout, "using CIFAR data");
    Ok(Located {
        dir: dir.to_path_buf(),
        source,
        layout,
    })
}

/// Finds the data folder for this process (see [`SearchPaths::from_env`]), without
/// downloading.
pub fn locate_data_dir(flag: Option<&Path>) -> Result<Located, DataError> {
    SearchPaths::from_env(flag).locate()
}

/// Finds the data folder, downloading the dataset as `download` says when none is found;
/// `None` (a `--no-download` switch) turns a missing dataset into [`DataError::NotFound`].
pub fn locate_or_download(
    flag: Option<&Path>,
    download_config: Option<&DownloadConfig>,
) -> Result<Located, DataError> {
    match (locate_data_dir(flag), download_config) {
        (Err(DataError::NotFound { .. }), Some(config)) => {
            let dir = download(config)?;
            found(&dir, Source::Download)
        }
        (result, _) => result,
    }
}

/// The folder burn-dataset's `CifarDataset` unpacks CIFAR-10 into:
/// `<platform cache dir>/burn-dataset/cifar10`.
fn burn_cache_dir() -> Option<PathBuf> {
    let env_dir = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let cache = if cfg!(target_os = "windows") {
        env_dir("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        env_dir("HOME").map(|h| h.join("Library/Caches"))
    } else {
        env_dir("XDG_CACHE_HOME").or_else(|| env_dir("HOME").map(|h| h.join(".cache")))
    }?;
    Some(cache.join("burn-dataset").join("cifar10"))
}
