//! Reader for the image-folder layout that burn-dataset's own CIFAR download leaves in its cache:
//! `train/<class>/*.png` and `test/<class>/*.png`.
//!
//! Reading it means a burn user who already has that copy does not download the dataset again.
//! Classes are the sub-folder names in sorted order and files are taken in sorted path order,
//! the same order burn-dataset's `ImageFolderDataset` uses, so label `k` means the same class in
//! both crates (for CIFAR-10 the sorted names are also the official label order).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::error::DataError;
use crate::image::{IMAGE_BYTES, PLANE, SIDE, Split};

/// The pixels and labels of one split of an image folder.
pub(crate) struct FolderSplit {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub classes: Vec<String>,
}

/// The sub-folder holding a split.
pub(crate) fn split_dir(dir: &Path, split: Split) -> PathBuf {
    dir.join(match split {
        Split::Train => "train",
        Split::Test => "test",
    })
}

/// Reads every PNG of one split into planar (CHW) pixels.
pub(crate) fn read_split(dir: &Path, split: Split) -> Result<FolderSplit, DataError> {
    let root = split_dir(dir, split);
    if !root.is_dir() {
        return Err(DataError::MissingFile { path: root });
    }
    let classes = sorted_entries(&root, |p| p.is_dir())?;
    if classes.is_empty() || classes.len() > 256 {
        return Err(DataError::BadFile {
            path: root,
            reason: format!(
                "{} class folders; expected between 1 and 256",
                classes.len()
            ),
        });
    }

    let mut images = Vec::new();
    let mut labels = Vec::new();
    let mut names = Vec::with_capacity(classes.len());
    for (label, class_dir) in classes.iter().enumerate() {
        let files = sorted_entries(class_dir, |p| {
            p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"))
        })?;
        for file in files {
            let start = images.len();
            images.resize(start + IMAGE_BYTES, 0);
            decode_planar(&file, &mut images[start..])?;
            labels.push(label as u8);
        }
        names.push(
            class_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    Ok(FolderSplit {
        images,
        labels,
        classes: names,
    })
}

/// The entries of a folder that pass `keep`, sorted by path.
fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if keep(&path) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Decodes a 32×32 PNG (grey, grey+alpha, RGB, RGBA or palette; 8 or 16 bits) into the three
/// colour planes of `out`, dropping any alpha channel.
fn decode_planar(path: &Path, out: &mut [u8]) -> Result<(), DataError> {
    let bad = |reason: String| DataError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| bad(format!("not a readable PNG: {e}")))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(format!("not a readable PNG: {e}")))?;
    if frame.width as usize != SIDE || frame.height as usize != SIDE {
        return Err(bad(format!(
            "image is {}×{}, expected {SIDE}×{SIDE}",
            frame.width, frame.height
        )));
    }
    let samples = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(bad("palette image left unexpanded".to_string()));
        }
    };
    let pixels = &buf[..PLANE * samples];
    for (i, px) in pixels.chunks_exact(samples).enumerate() {
        let (r, g, b) = if samples < 3 {
            (px[0], px[0], px[0])
        } else {
            (px[0], px[1], px[2])
        };
        out[i] = r;
        out[PLANE + i] = g;
        out[2 * PLANE + i] = b;
    }
    Ok(())
}
