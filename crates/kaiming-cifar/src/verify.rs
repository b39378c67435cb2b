//! Checks that a CIFAR-10 folder holds the official files, byte for byte.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha1::{Digest, Sha1};

use crate::error::DataError;

/// The SHA-1 of each file of the official CIFAR-10 binary release (the sums other frameworks
/// verify the download against).
pub const CIFAR10_SHA1: [(&str, &str); 6] = [
    (
        "data_batch_1.bin",
        "aadd24acce27caa71bf4b10992e9e7b2d74c2540",
    ),
    (
        "data_batch_2.bin",
        "c0ba65cce70568cd57b4e03e9ac8d2a5367c1795",
    ),
    (
        "data_batch_3.bin",
        "1dd00a74ab1d17a6e7d73e185b69dbf31242f295",
    ),
    (
        "data_batch_4.bin",
        "aab85764eb3584312d3c7f65fd2fd016e36a258e",
    ),
    (
        "data_batch_5.bin",
        "26e2849e66a845b7f1e4614ae70f4889ae604628",
    ),
    ("test_batch.bin", "67eb016db431130d61cd03c7ad570b013799c88c"),
];

/// Compares the SHA-1 of each of the six CIFAR-10 files in `dir` with the official sum.
///
/// Returns the first file that is missing or differs; reading 180 MB takes about a second, so
/// this is a deliberate check (a `verify` command, a test), not something every load does.
pub fn verify(dir: &Path) -> Result<(), DataError> {
    for (name, expected) in CIFAR10_SHA1 {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(DataError::MissingFile { path });
        }
        let actual = sha1_hex(&path)?;
        if actual != expected {
            return Err(DataError::ChecksumMismatch {
                path,
                expected: expected.to_string(),
                actual,
            });
        }
    }
    Ok(())
}

/// The SHA-1 of a file as lowercase hex.
pub fn sha1_hex(path: &Path) -> Result<String, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha1::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
