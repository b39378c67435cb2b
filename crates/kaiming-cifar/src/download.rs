//! Downloading the official CIFAR-10 archive, safely.
//!
//! The archive is streamed to a staging folder next to the destination while its MD5 is
//! computed, checked, then unpacked entry by entry under strict rules (only the expected files,
//! no absolute paths, no `..`, no links), and the finished folder is renamed into place. Until
//! that rename nothing appears at the final path, so an interrupted or failed download never
//! leaves a half dataset that a later run would pick up; a failed one removes its staging
//! folder too.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use flate2::read::GzDecoder;
use md5::{Digest, Md5};

use crate::binary::{self, BinaryFormat, CIFAR10_FILES};
use crate::error::DataError;
use crate::verify::hex;

/// The official archive of the binary release.
pub const OFFICIAL_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

/// The MD5 of the official archive, as published with it.
pub const OFFICIAL_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";

/// The environment variable that replaces [`OFFICIAL_URL`] (a mirror, or a local test server).
pub const URL_ENV: &str = "CIFAR10_URL";

/// The folder the archive unpacks to, and the name it gets under the destination.
pub const ARCHIVE_ROOT: &str = "cifar-10-batches-bin";

/// The largest file the archive may hold (a training batch is 30,730,000 bytes): a bound on
/// what a hostile or broken archive can write.
const MAX_ENTRY_BYTES: u64 = 64 << 20;

/// Files accepted besides the six data files.
const EXTRA_FILES: [&str; 2] = ["batches.meta.txt", "readme.html"];

/// Where to download from and to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadConfig {
    /// The archive's URL.
    pub url: String,
    /// The archive's expected MD5, lowercase hex.
    pub md5: String,
    /// The folder that receives `cifar-10-batches-bin/` (created if needed).
    pub dest: PathBuf,
    /// Whether to draw a progress bar on a terminal.
    pub progress: bool,
}

impl DownloadConfig {
    /// The official archive (or `CIFAR10_URL` when set) into `dest`, with a progress bar.
    pub fn new(dest: impl Into<PathBuf>) -> Self {
        DownloadConfig {
            url: std::env::var(URL_ENV)
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| OFFICIAL_URL.to_string()),
            md5: OFFICIAL_MD5.to_string(),
            dest: dest.into(),
            progress: true,
        }
    }
}

impl Default for DownloadConfig {
    /// Into `datasets/` under the current directory, where [`locate_data_dir`](crate::locate_data_dir)
    /// looks.
    fn default() -> Self {
        DownloadConfig::new("datasets")
    }
}

/// Downloads, checks and unpacks the archive; returns the new `dest/cifar-10-batches-bin`.
///
/// Fails, leaving `dest` as it was, when that folder already exists, when the transfer breaks
/// off, when the MD5 differs, or when the archive is unreadable or holds anything but the
/// expected files.
pub fn download(config: &DownloadConfig) -> Result<PathBuf, DataError> {
    let target = config.dest.join(ARCHIVE_ROOT);
    if target.exists() {
        return Err(DataError::AlreadyExists { path: target });
    }
    let created_dest = !config.dest.exists();
    std::fs::create_dir_all(&config.dest).map_err(|e| DataError::io(&config.dest, e))?;
    let result = download_into(config, &target);
    if result.is_err() && created_dest {
        // Only succeeds if empty: the staging folder is already gone.
        let _ = std::fs::remove_dir(&config.dest);
    }
    result.map(|()| target)
}

fn download_into(config: &DownloadConfig, target: &Path) -> Result<(), DataError> {
    // Dropping the staging folder deletes it with whatever it holds, on every error path.
    let staging = tempfile::Builder::new()
        .prefix(".cifar-10-download-")
        .tempdir_in(&config.dest)
        .map_err(|e| DataError::io(&config.dest, e))?;
    let archive = staging.path().join("cifar-10-binary.tar.gz");

    tracing::info!(url = %config.url, dest = %config.dest.display(), "downloading CIFAR-10");
    let md5 = fetch(config, &archive)?;
    if !md5.eq_ignore_ascii_case(&config.md5) {
        return Err(DataError::DownloadChecksum {
            url: config.url.clone(),
            expected: config.md5.clone(),
            actual: md5,
        });
    }

    extract(&archive, staging.path(), &config.url)?;
    // Problems are reported against the archive: the staging paths vanish with the error.
    let unpacked = staging.path().join(ARCHIVE_ROOT);
    let incomplete = |reason: String| DataError::Archive {
        url: config.url.clone(),
        reason,
    };
    if let Some(name) = CIFAR10_FILES.iter().find(|n| !unpacked.join(n).is_file()) {
        return Err(incomplete(format!("{ARCHIVE_ROOT}/{name} is missing")));
    }
    binary::check_sizes(&unpacked, BinaryFormat::Cifar10).map_err(|e| match e {
        DataError::PartialRecord { path, len, record } => incomplete(format!(
            "{} is {len} bytes, not a whole number of {record}-byte records",
            path.file_name().unwrap_or_default().to_string_lossy()
        )),
        other => other,
    })?;
    std::fs::rename(&unpacked, target).map_err(|e| DataError::io(target, e))?;
    tracing::info!(dir = %target.display(), "CIFAR-10 downloaded and unpacked");
    Ok(())
}

/// Streams the archive to `path`; returns the MD5 of the bytes received.
fn fetch(config: &DownloadConfig, path: &Path) -> Result<String, DataError> {
    let http = |reason: String| DataError::Http {
        url: config.url.clone(),
        reason,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    // `identity`: a server must not re-encode the .tar.gz, or the bytes (and MD5) would change.
    let mut response = agent
        .get(&config.url)
        .header("Accept-Encoding", "identity")
        .call()
        .map_err(|e| http(e.to_string()))?;
    let expected_len = response.body().content_length();

    let bar = progress_bar(config.progress, expected_len);
    let mut body = response.body_mut().as_reader();
    let mut out = BufWriter::new(File::create(path).map_err(|e| DataError::io(path, e))?);
    let mut md5 = Md5::new();
    let mut received: u64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = body
            .read(&mut buf)
            .map_err(|e| http(format!("transfer broke off after {received} bytes: {e}")))?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| DataError::io(path, e))?;
        received += n as u64;
        bar.set_position(received);
    }
    bar.finish_and_clear();
    if let Some(len) = expected_len.filter(|&len| len != received) {
        return Err(http(format!("received {received} of {len} bytes")));
    }
    out.flush().map_err(|e| DataError::io(path, e))?;
    Ok(hex(&md5.finalize()))
}

/// A byte-count progress bar on stderr; hidden when not wanted (indicatif also hides it when
/// stderr is not a terminal, so logs stay clean).
fn progress_bar(show: bool, len: Option<u64>) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len.unwrap_or(0));
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "CIFAR-10 {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Unpacks the archive into `into`, refusing anything but the folder and its expected files.
fn extract(archive: &Path, into: &Path, url: &str) -> Result<(), DataError> {
    let bad = |reason: String| DataError::Archive {
        url: url.to_string(),
        reason,
    };
    let file = File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let entries = tar.entries().map_err(|e| bad(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("unreadable (truncated?): {e}")))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let parts = safe_parts(&raw).ok_or_else(|| bad(format!("unsafe path {raw:?}")))?;
        let kind = entry.header().entry_type();
        match parts.as_slice() {
            [root] if root == ARCHIVE_ROOT && kind.is_dir() => {
                let dir = into.join(ARCHIVE_ROOT);
                if !dir.exists() {
                    std::fs::create_dir(&dir).map_err(|e| DataError::io(&dir, e))?;
                }
            }
            [root, name]
                if root == ARCHIVE_ROOT
                    && kind.is_file()
                    && (CIFAR10_FILES.contains(&name.as_str())
                        || EXTRA_FILES.contains(&name.as_str())) =>
            {
                let size = entry.header().size().map_err(|e| bad(e.to_string()))?;
                if size > MAX_ENTRY_BYTES {
                    return Err(bad(format!("{raw:?} is {size} bytes, too large")));
                }
                let dir = into.join(ARCHIVE_ROOT);
                std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
                let path = dir.join(name);
                // `create_new`: an archive listing a file twice is refused, not merged.
                let mut out = File::create_new(&path).map_err(|e| DataError::io(&path, e))?;
                std::io::copy(&mut entry, &mut out)
                    .map_err(|e| bad(format!("{raw:?} unreadable (truncated?): {e}")))?;
            }
            _ if !(kind.is_dir() || kind.is_file()) => {
                return Err(bad(format!("{raw:?} is a link or special file")));
            }
            _ => return Err(bad(format!("unexpected entry {raw:?}"))),
        }
    }
    Ok(())
}

/// The components of an archive path if it is relative and stays below the extraction folder
/// (`.` components dropped); `None` for absolute paths, `..`, or drive prefixes.
fn safe_parts(raw: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(p) => parts.push(p.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then_some(parts)
}
