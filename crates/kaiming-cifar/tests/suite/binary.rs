//! The binary readers on synthetic files: what they read, and each malformed case's error.

use crate::common;

use std::path::Path;

use kaiming_cifar::{
    BinaryFormat, CifarDataset, DataError, IMAGE_BYTES, Layout, Normalization, Split, sha1_hex,
    verify,
};

#[test]
fn reads_cifar10_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::write_cifar10(tmp.path(), 7);
    assert_eq!(
        Layout::detect(tmp.path()).unwrap(),
        Layout::Binary(BinaryFormat::Cifar10)
    );

    let train = CifarDataset::load(tmp.path(), Split::Train).unwrap();
    assert_eq!(train.len(), 35);
    assert_eq!(train.images(), &data.train.0[..]);
    assert_eq!(train.labels(), &data.train.1[..]);
    assert_eq!(
        train.image(1).unwrap(),
        &data.train.0[IMAGE_BYTES..2 * IMAGE_BYTES]
    );
    assert!(train.image(35).is_none());
    assert_eq!(train.num_classes(), 10);
    assert_eq!(train.classes()[3], "cat");
    assert!(train.coarse_labels().is_none());

    let test = CifarDataset::load(tmp.path(), Split::Test).unwrap();
    assert_eq!(test.images(), &data.test.0[..]);
    assert_eq!(test.labels(), &data.test.1[..]);
}

#[test]
fn class_names_come_from_meta_file() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_cifar10(tmp.path(), 1);
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    std::fs::write(
        tmp.path().join("batches.meta.txt"),
        names.join("\n") + "\n\n",
    )
    .unwrap();
    let data = CifarDataset::load(tmp.path(), Split::Test).unwrap();
    assert_eq!(data.classes(), &names[..]);

    std::fs::write(tmp.path().join("batches.meta.txt"), "only\ntwo\n").unwrap();
    let err = CifarDataset::load(tmp.path(), Split::Test).unwrap_err();
    assert!(
        matches!(err, DataError::BadFile { ref path, .. } if path.ends_with("batches.meta.txt"))
    );
}

#[test]
fn partial_record_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_cifar10(tmp.path(), 3);
    let path = tmp.path().join("data_batch_3.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 100);
    std::fs::write(&path, bytes).unwrap();

    let err = CifarDataset::load(tmp.path(), Split::Train).unwrap_err();
    match &err {
        DataError::PartialRecord {
            path: p,
            len,
            record,
        } => {
            assert_eq!(p, &path);
            assert_eq!(*len, 3 * 3073 - 100);
            assert_eq!(*record, 3073);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("data_batch_3.bin"), "{err}");
}

#[test]
fn bad_label_names_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_cifar10(tmp.path(), 4);
    let path = tmp.path().join("test_batch.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[2 * 3073] = 10;
    std::fs::write(&path, bytes).unwrap();

    let err = CifarDataset::load(tmp.path(), Split::Test).unwrap_err();
    match &err {
        DataError::BadLabel {
            path: p,
            record,
            offset,
            label,
            classes,
        } => {
            assert_eq!(p, &path);
            assert_eq!((*record, *offset, *label, *classes), (2, 2 * 3073, 10, 10));
        }
        other => panic!("unexpected {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("test_batch.bin") && message.contains("6146"),
        "{message}"
    );
}

#[test]
fn missing_file_is_an_error_whatever_the_split() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_cifar10(tmp.path(), 2);
    std::fs::remove_file(tmp.path().join("data_batch_4.bin")).unwrap();
    for split in [Split::Train, Split::Test] {
        let err = CifarDataset::load(tmp.path(), split).unwrap_err();
        assert!(
            matches!(&err, DataError::MissingFile { path } if path.ends_with("data_batch_4.bin")),
            "{err:?}"
        );
    }
}

#[test]
fn empty_or_absent_folder_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = CifarDataset::load(tmp.path(), Split::Train).unwrap_err();
    assert!(matches!(err, DataError::UnknownLayout { .. }), "{err:?}");
    let err = CifarDataset::load(&tmp.path().join("nope"), Split::Train).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
}

fn write_cifar100(dir: &Path, n: usize, seed: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (images, fine) = common::synthetic(n, 100, seed);
    let coarse: Vec<u8> = fine.iter().map(|f| f / 5).collect();
    let mut bytes = Vec::new();
    for ((image, &f), &c) in images.chunks_exact(IMAGE_BYTES).zip(&fine).zip(&coarse) {
        bytes.extend_from_slice(&[c, f]);
        bytes.extend_from_slice(image);
    }
    let name = if seed == 0 { "train.bin" } else { "test.bin" };
    std::fs::write(dir.join(name), bytes).unwrap();
    (images, fine, coarse)
}

#[test]
fn reads_cifar100_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, fine, coarse) = write_cifar100(tmp.path(), 130, 0);
    write_cifar100(tmp.path(), 20, 1);
    assert_eq!(
        Layout::detect(tmp.path()).unwrap(),
        Layout::Binary(BinaryFormat::Cifar100)
    );
    let train = CifarDataset::load(tmp.path(), Split::Train).unwrap();
    assert_eq!(train.len(), 130);
    assert_eq!(train.num_classes(), 100);
    assert_eq!(train.images(), &images[..]);
    assert_eq!(train.labels(), &fine[..]);
    assert_eq!(train.coarse_labels().unwrap(), &coarse[..]);
    assert_eq!(
        CifarDataset::load(tmp.path(), Split::Test).unwrap().len(),
        20
    );

    // A coarse label past 19 is reported at its own byte.
    let path = tmp.path().join("test.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3074] = 20;
    std::fs::write(&path, bytes).unwrap();
    let err = CifarDataset::load(tmp.path(), Split::Test).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::BadLabel {
                record: 1,
                offset: 3074,
                label: 20,
                classes: 20,
                ..
            }
        ),
        "{err:?}"
    );

    std::fs::remove_file(&path).unwrap();
    let err = CifarDataset::load(tmp.path(), Split::Train).unwrap_err();
    assert!(matches!(err, DataError::MissingFile { .. }), "{err:?}");
}

#[test]
fn validation_split_is_stratified_disjoint_and_deterministic() {
    let (images, labels) = common::synthetic(1_000, 10, 3);
    let classes: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let data = CifarDataset::from_parts(images, labels, classes).unwrap();

    let (train, val) = data.clone().split_validation(100, 7).unwrap();
    assert_eq!((train.len(), val.len()), (900, 100));
    assert_eq!(val.class_counts(), vec![10; 10]);
    let (train2, val2) = data.clone().split_validation(100, 7).unwrap();
    assert_eq!(train.images(), train2.images());
    assert_eq!(val.images(), val2.images());
    let (_, val3) = data.clone().split_validation(100, 8).unwrap();
    assert_ne!(val.images(), val3.images());

    // Together the halves hold every image exactly once.
    let mut all: Vec<&[u8]> = data.images().chunks_exact(IMAGE_BYTES).collect();
    let mut parts: Vec<&[u8]> = train
        .images()
        .chunks_exact(IMAGE_BYTES)
        .chain(val.images().chunks_exact(IMAGE_BYTES))
        .collect();
    all.sort();
    parts.sort();
    assert_eq!(all, parts);

    // Uneven sizes still come out exact.
    let (train, val) = data.clone().split_validation(37, 0).unwrap();
    assert_eq!((train.len(), val.len()), (963, 37));
    assert!(val.class_counts().iter().all(|&c| c == 3 || c == 4));

    assert!(matches!(
        data.clone().split_validation(1_000, 0),
        Err(DataError::Config(_))
    ));
}

#[test]
fn limit_keeps_the_first_images() {
    let (images, labels) = common::synthetic(50, 10, 4);
    let classes: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let data = CifarDataset::from_parts(images.clone(), labels.clone(), classes).unwrap();
    let small = data.clone().limit(12);
    assert_eq!(small.len(), 12);
    assert_eq!(small.images(), &images[..12 * IMAGE_BYTES]);
    assert_eq!(small.labels(), &labels[..12]);
    assert_eq!(data.limit(500).len(), 50);
}

#[test]
fn from_parts_checks_its_input() {
    let classes = || vec!["a".to_string(), "b".to_string()];
    assert!(CifarDataset::from_parts(vec![0; 10], vec![0], classes()).is_err());
    assert!(CifarDataset::from_parts(vec![0; IMAGE_BYTES], vec![2], classes()).is_err());
    assert!(CifarDataset::from_parts(vec![0; IMAGE_BYTES], vec![0], vec![]).is_err());
    assert!(CifarDataset::from_parts(vec![0; IMAGE_BYTES], vec![1], classes()).is_ok());
}

#[test]
fn normalization_of_known_pixels() {
    // Half the images black, half white: mean 0.5 and std 0.5 in every channel.
    let mut images = vec![0u8; 4 * IMAGE_BYTES];
    images[2 * IMAGE_BYTES..].fill(255);
    let data = CifarDataset::from_parts(images, vec![0; 4], vec!["x".to_string()]).unwrap();
    let norm = Normalization::from_dataset(&data).unwrap();
    for c in 0..3 {
        assert!((norm.mean[c] - 0.5).abs() < 1e-6);
        assert!((norm.std[c] - 0.5).abs() < 1e-6);
    }
    let flat = CifarDataset::from_parts(vec![9; IMAGE_BYTES], vec![0], vec!["x".into()]).unwrap();
    assert!(matches!(
        Normalization::from_dataset(&flat),
        Err(DataError::Config(_))
    ));
}

#[test]
fn verify_names_the_differing_file() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_cifar10(tmp.path(), 1);
    let err = verify(tmp.path()).unwrap_err();
    match err {
        DataError::ChecksumMismatch {
            path,
            expected,
            actual,
        } => {
            assert!(path.ends_with("data_batch_1.bin"));
            assert_eq!(expected, "aadd24acce27caa71bf4b10992e9e7b2d74c2540");
            assert_eq!(actual, sha1_hex(&path).unwrap());
        }
        other => panic!("unexpected {other:?}"),
    }
    // SHA-1 of "abc", the FIPS 180 test vector.
    std::fs::write(tmp.path().join("abc"), "abc").unwrap();
    assert_eq!(
        sha1_hex(&tmp.path().join("abc")).unwrap(),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
}

#[test]
fn the_dataset_is_a_burn_dataset_of_items() {
    use burn_dataset::Dataset;
    use kaiming_cifar::CifarItem;

    let images: Vec<u8> = (0..2 * 3072).map(|i| (i % 251) as u8).collect();
    let classes = (0..10).map(|c| format!("class{c}")).collect();
    let data =
        kaiming_cifar::CifarDataset::from_parts(images.clone(), vec![7, 2], classes).unwrap();
    assert_eq!(Dataset::<CifarItem>::len(&data), 2);
    let item: CifarItem = data.get(1).unwrap();
    assert_eq!(item.label, 2);
    assert_eq!(item.image, images[3072..]);
    let past_end: Result<CifarItem, _> = data.get(2);
    assert!(past_end.unwrap_err().to_string().contains("index 2"));
    let labels: Vec<usize> = Dataset::<CifarItem>::iter(&data)
        .map(|item| item.unwrap().label)
        .collect();
    assert_eq!(labels, [7, 2]);
}
