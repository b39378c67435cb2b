//! Checks on the real CIFAR-10 files (from `CIFAR10_DIR`) against the published facts.

use crate::common;

use kaiming_cifar::{CifarDataset, Layout, Normalization, Split, verify};

#[test]
fn real_counts_labels_and_statistics() {
    let Some(dir) = common::real_data_dir() else {
        return;
    };
    assert_eq!(
        Layout::detect(&dir).unwrap(),
        Layout::Binary(kaiming_cifar::BinaryFormat::Cifar10)
    );
    let train = CifarDataset::load(&dir, Split::Train).unwrap();
    let test = CifarDataset::load(&dir, Split::Test).unwrap();
    assert_eq!(train.len(), 50_000);
    assert_eq!(test.len(), 10_000);
    assert_eq!(train.class_counts(), vec![5_000; 10]);
    assert_eq!(test.class_counts(), vec![1_000; 10]);
    assert_eq!(&train.labels()[..10], &[6, 9, 9, 4, 1, 1, 2, 7, 8, 3]);
    assert_eq!(train.classes()[0], "airplane");
    assert_eq!(train.classes()[9], "truck");

    let norm = Normalization::from_dataset(&train).unwrap();
    let published = Normalization::CIFAR10_TRAIN;
    for c in 0..3 {
        assert!(
            (norm.mean[c] - published.mean[c]).abs() < 1e-3,
            "mean {:?} vs {:?}",
            norm.mean,
            published.mean
        );
        assert!(
            (norm.std[c] - published.std[c]).abs() < 1e-3,
            "std {:?} vs {:?}",
            norm.std,
            published.std
        );
    }

    // The 45k/5k split keeps 500 validation images per class.
    let (fit, val) = train.split_validation(5_000, 0).unwrap();
    assert_eq!((fit.len(), val.len()), (45_000, 5_000));
    assert_eq!(val.class_counts(), vec![500; 10]);
}

#[test]
fn real_files_match_official_sha1() {
    let Some(dir) = common::real_data_dir() else {
        return;
    };
    verify(&dir).unwrap();
}
