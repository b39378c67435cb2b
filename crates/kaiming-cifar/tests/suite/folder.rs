//! The image-folder layout (burn-dataset's cache) against the binary layout.

use crate::common;

use std::path::Path;

use kaiming_cifar::{
    CIFAR10_CLASSES, CifarDataset, DataError, IMAGE_BYTES, Layout, PLANE, SIDE, Split,
};

/// Writes a planar image as an 8-bit PNG of the given colour type.
fn write_png(path: &Path, planar: &[u8], color: png::ColorType) {
    let samples = match color {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Grayscale => 1,
        _ => unreachable!("not used by the tests"),
    };
    let mut interleaved = Vec::with_capacity(PLANE * samples);
    for i in 0..PLANE {
        let rgb = [planar[i], planar[PLANE + i], planar[2 * PLANE + i]];
        match samples {
            1 => interleaved.push(rgb[0]),
            3 => interleaved.extend_from_slice(&rgb),
            _ => interleaved.extend_from_slice(&[rgb[0], rgb[1], rgb[2], 200]),
        }
    }
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), SIDE as u32, SIDE as u32);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&interleaved).unwrap();
}

/// Writes a split of planar images as `<split>/<class>/<index>.png`.
fn write_folder_split(root: &Path, split: &str, images: &[u8], labels: &[u8]) {
    for (i, (image, &label)) in images.chunks_exact(IMAGE_BYTES).zip(labels).enumerate() {
        let dir = root.join(split).join(CIFAR10_CLASSES[usize::from(label)]);
        std::fs::create_dir_all(&dir).unwrap();
        write_png(&dir.join(format!("{i:05}.png")), image, png::ColorType::Rgb);
    }
}

#[test]
fn folder_layout_reads_the_same_pixels_as_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let binary_dir = tmp.path().join("bin");
    let folder_dir = tmp.path().join("png");
    let data = common::write_cifar10(&binary_dir, 10);
    write_folder_split(&folder_dir, "train", &data.train.0, &data.train.1);
    write_folder_split(&folder_dir, "test", &data.test.0, &data.test.1);
    assert_eq!(Layout::detect(&folder_dir).unwrap(), Layout::ImageFolder);

    for split in [Split::Train, Split::Test] {
        let binary = CifarDataset::load(&binary_dir, split).unwrap();
        let folder = CifarDataset::load(&folder_dir, split).unwrap();
        assert_eq!(folder.len(), binary.len());
        assert_eq!(folder.classes(), binary.classes());
        // The folder groups images by class (sorted), keeping file order within a class.
        let mut by_class: Vec<usize> = (0..binary.len()).collect();
        by_class.sort_by_key(|&i| binary.labels()[i]);
        for (k, &i) in by_class.iter().enumerate() {
            assert_eq!(folder.labels()[k], binary.labels()[i]);
            assert_eq!(
                folder.image(k).unwrap(),
                binary.image(i).unwrap(),
                "image {k}"
            );
        }
    }
}

#[test]
fn folder_layout_accepts_rgba_and_grey() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, _) = common::synthetic(2, 1, 9);
    let dir = tmp.path().join("train").join("cat");
    std::fs::create_dir_all(&dir).unwrap();
    write_png(
        &dir.join("a.png"),
        &images[..IMAGE_BYTES],
        png::ColorType::Rgba,
    );
    write_png(
        &dir.join("b.png"),
        &images[IMAGE_BYTES..],
        png::ColorType::Grayscale,
    );
    let data = CifarDataset::load(tmp.path(), Split::Train).unwrap();
    assert_eq!(data.classes(), &["cat".to_string()]);
    assert_eq!(data.image(0).unwrap(), &images[..IMAGE_BYTES]);
    let grey = data.image(1).unwrap();
    for c in 0..3 {
        assert_eq!(
            &grey[c * PLANE..(c + 1) * PLANE],
            &images[IMAGE_BYTES..IMAGE_BYTES + PLANE]
        );
    }
}

#[test]
fn folder_layout_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("train").join("dog");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("broken.png"), b"not a png").unwrap();
    let err = CifarDataset::load(tmp.path(), Split::Train).unwrap_err();
    assert!(
        matches!(&err, DataError::BadFile { path, .. } if path.ends_with("broken.png")),
        "{err:?}"
    );

    // A wrongly sized image.
    std::fs::remove_file(dir.join("broken.png")).unwrap();
    let file = std::fs::File::create(dir.join("big.png")).unwrap();
    let mut encoder = png::Encoder::new(file, 33, 32);
    encoder.set_color(png::ColorType::Rgb);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&vec![0; 33 * 32 * 3]).unwrap();
    drop(writer);
    let err = CifarDataset::load(tmp.path(), Split::Train).unwrap_err();
    assert!(
        err.to_string().contains("big.png") && err.to_string().contains("33"),
        "{err}"
    );

    // The test split is absent.
    let err = CifarDataset::load(tmp.path(), Split::Test).unwrap_err();
    assert!(matches!(err, DataError::MissingFile { .. }), "{err:?}");
}
