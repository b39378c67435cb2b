//! Loader throughput: shuffle + crop + flip + normalise into `f32` batches of 128, one thread.
//!
//! Uses the real training set when `CIFAR10_DIR` is set, else 10,000 synthetic images. The
//! target is at least 20,000 images/s on one core of the project's 2-core machine (a ResNet-20
//! step on flex consumes about 170 images/s, so the loader must never be the bottleneck).
//! Run: `cargo bench -p kaiming-cifar` (numbers from a debug build are not meaningful).

use std::path::PathBuf;
use std::time::Instant;

use kaiming_cifar::{
    CifarDataset, HostBatch, IMAGE_BYTES, Loader, LoaderConfig, Normalization, Split,
};

const BATCH: usize = 128;

fn main() -> Result<(), kaiming_cifar::DataError> {
    let data = match std::env::var_os("CIFAR10_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => {
            let start = Instant::now();
            let data = CifarDataset::load(&PathBuf::from(dir), Split::Train)?;
            println!(
                "loaded {} real training images in {:.2} s",
                data.len(),
                start.elapsed().as_secs_f64()
            );
            data
        }
        None => {
            println!("CIFAR10_DIR unset: using 10,000 synthetic images");
            synthetic(10_000)?
        }
    };

    let start = Instant::now();
    let norm = Normalization::from_dataset(&data)?;
    println!(
        "normalisation statistics: {:.0} images/s",
        data.len() as f64 / start.elapsed().as_secs_f64()
    );

    let loader = Loader::new(data, norm, LoaderConfig::train(BATCH, 0))?;
    for epoch in 0..3 {
        let start = Instant::now();
        let batches = loader.epoch(epoch);
        let mut batch = HostBatch::default();
        let mut images = 0;
        let mut checksum = 0.0f32;
        for index in 0..batches.len() {
            batches.batch_into(index, &mut batch);
            images += batch.len();
            checksum += batch.images[0];
        }
        let reused = images as f64 / start.elapsed().as_secs_f64();

        let start = Instant::now();
        let allocated: usize = loader.epoch(epoch).map(|b| b.len()).sum();
        let fresh = allocated as f64 / start.elapsed().as_secs_f64();
        println!(
            "epoch {epoch}: {reused:.0} images/s reusing the buffer, {fresh:.0} images/s \
             allocating each batch (target 20000; checksum {checksum:.3})"
        );
    }
    Ok(())
}

/// Deterministic pseudo-random images (an xorshift stream), labels cycling over 10 classes.
fn synthetic(n: usize) -> Result<CifarDataset, kaiming_cifar::DataError> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let images = (0..n * IMAGE_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    let classes = (0..10).map(|i| format!("class_{i}")).collect();
    CifarDataset::from_parts(images, labels, classes)
}
