//! Helpers shared by the integration tests: synthetic CIFAR files and the real-data switch.
#![allow(dead_code)] // each test binary uses its own subset of the helpers

use std::path::{Path, PathBuf};

use kaiming_cifar::{CIFAR10_FILES, IMAGE_BYTES};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The real dataset named by `CIFAR10_DIR`, or `None` (with the reason printed) when the
/// variable is unset; a variable naming a missing folder is a broken setup and fails, as an
/// unset one does where `KAIMING_REQUIRE_DATA` is set (`.ci/run` sets it).
pub fn real_data_dir() -> Option<PathBuf> {
    match std::env::var_os("CIFAR10_DIR").filter(|v| !v.is_empty()) {
        None => {
            assert!(
                std::env::var_os("KAIMING_REQUIRE_DATA").is_none(),
                "CIFAR10_DIR is not set, and KAIMING_REQUIRE_DATA requires the real CIFAR-10 files"
            );
            eprintln!("skipped: CIFAR10_DIR is not set, so the real CIFAR-10 files are absent");
            None
        }
        Some(dir) => {
            let dir = PathBuf::from(dir);
            assert!(
                dir.is_dir(),
                "CIFAR10_DIR={} is not a folder",
                dir.display()
            );
            Some(dir)
        }
    }
}

/// `n` random planar images with labels cycling through `classes`.
pub fn synthetic(n: usize, classes: u8, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut images = vec![0u8; n * IMAGE_BYTES];
    rng.fill(&mut images[..]);
    let labels = (0..n).map(|i| (i % usize::from(classes)) as u8).collect();
    (images, labels)
}

/// Records of the CIFAR-10 binary layout: label byte then pixels.
pub fn cifar10_records(images: &[u8], labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(labels.len() * (IMAGE_BYTES + 1));
    for (image, &label) in images.chunks_exact(IMAGE_BYTES).zip(labels) {
        out.push(label);
        out.extend_from_slice(image);
    }
    out
}

/// A synthetic CIFAR-10 binary folder: `per_file` images in each of the six files. Returns the
/// training images and labels (in file order) and the test images and labels.
pub struct Synthetic10 {
    pub train: (Vec<u8>, Vec<u8>),
    pub test: (Vec<u8>, Vec<u8>),
}

pub fn write_cifar10(dir: &Path, per_file: usize) -> Synthetic10 {
    std::fs::create_dir_all(dir).unwrap();
    let mut train = (Vec::new(), Vec::new());
    let mut test = (Vec::new(), Vec::new());
    for (k, name) in CIFAR10_FILES.iter().enumerate() {
        let (images, labels) = synthetic(per_file, 10, k as u64);
        std::fs::write(dir.join(name), cifar10_records(&images, &labels)).unwrap();
        let into = if k < 5 { &mut train } else { &mut test };
        into.0.extend_from_slice(&images);
        into.1.extend_from_slice(&labels);
    }
    Synthetic10 { train, test }
}
