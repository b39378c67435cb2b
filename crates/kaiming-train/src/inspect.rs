//! `train models` and `train data`: what the model zoo and the dataset hold.

use std::path::Path;

use anyhow::{Context, Result};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use kaiming_cifar::{CifarDataset, Normalization, SIDE, Split, locate_data_dir, verify};
use kaiming_resnet::{ModelConfig, ModelName, StemKind};

use crate::atomic::write_atomic;

/// Every model with its parameters and forward multiply-adds per image.
pub fn models_table(num_classes: usize, stem: StemKind, image_size: usize) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header([
        "model",
        "parameters",
        "forward MACs / image",
        "GFLOP fwd+bwd / image",
    ]);
    for name in ModelName::all() {
        let config = ModelConfig::new(name)
            .with_num_classes(num_classes)
            .with_stem(stem);
        let complexity = config.complexity([image_size, image_size]);
        table.add_row([
            name.to_string(),
            thousands(complexity.params as u64),
            thousands(complexity.macs),
            // Backward costs about twice the forward pass.
            format!("{:.3}", 3.0 * complexity.forward_flops() as f64 / 1e9),
        ]);
    }
    table
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The report of `train data`: location, counts per class and split, channel statistics, and
/// with `verify` the checksums (an error naming the file on a mismatch).
pub fn data_report(data_dir: Option<&Path>, check: bool, grid: Option<&Path>) -> Result<String> {
    let located = locate_data_dir(data_dir)?;
    let mut report = format!(
        "CIFAR-10 at {} (found via {:?}, {:?} layout)\n",
        located.dir.display(),
        located.source,
        located.layout
    );
    let train = CifarDataset::load(&located.dir, Split::Train)?;
    let test = CifarDataset::load(&located.dir, Split::Test)?;
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(["class", "train", "test"]);
    let (train_counts, test_counts) = (train.class_counts(), test.class_counts());
    for (index, class) in train.classes().iter().enumerate() {
        table.add_row([
            class.clone(),
            train_counts[index].to_string(),
            test_counts[index].to_string(),
        ]);
    }
    table.add_row([
        "total".to_string(),
        train.len().to_string(),
        test.len().to_string(),
    ]);
    report.push_str(&format!("{table}\n"));
    let normalization = Normalization::from_dataset(&train)?;
    report.push_str(&format!(
        "training set per-channel mean (R, G, B) {:.4?}, std {:.4?} on the [0, 1] scale\n",
        normalization.mean, normalization.std
    ));
    if check {
        verify(&located.dir)?;
        report.push_str("checksums: every file matches the official SHA-1\n");
    }
    if let Some(path) = grid {
        write_grid(&train, path)?;
        report.push_str(&format!("sample grid written to {}\n", path.display()));
    }
    Ok(report)
}

/// A PNG with one row per class and ten training images each, in file order.
fn write_grid(data: &CifarDataset, path: &Path) -> Result<()> {
    const PER_CLASS: usize = 10;
    const GAP: usize = 2;
    let classes = data.num_classes();
    let cell = SIDE + GAP;
    let (width, height) = (PER_CLASS * cell + GAP, classes * cell + GAP);
    let mut pixels = vec![255u8; width * height * 3];
    let mut placed = vec![0usize; classes];
    for (index, &label) in data.labels().iter().enumerate() {
        let class = label as usize;
        if class >= classes || placed[class] == PER_CLASS {
            continue;
        }
        let image = data.image(index).expect("index in range");
        let (x0, y0) = (GAP + placed[class] * cell, GAP + class * cell);
        for y in 0..SIDE {
            for x in 0..SIDE {
                for channel in 0..3 {
                    pixels[((y0 + y) * width + x0 + x) * 3 + channel] =
                        image[channel * SIDE * SIDE + y * SIDE + x];
                }
            }
        }
        placed[class] += 1;
    }
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().context("cannot encode the grid")?;
        writer
            .write_image_data(&pixels)
            .context("cannot encode the grid")?;
    }
    write_atomic(path, &png_bytes)
}
