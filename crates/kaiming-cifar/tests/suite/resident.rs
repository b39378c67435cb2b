//! The device path builds the same batches as the host path, to the bit.

use burn::tensor::Device;
use kaiming_cifar::{
    AugmentConfig, CifarDataset, DeviceLoader, IMAGE_BYTES, Loader, LoaderConfig, Normalization,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 300 images of random bytes (every byte value occurs), random labels.
fn random_dataset() -> CifarDataset {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let n = 300;
    let images: Vec<u8> = (0..n * IMAGE_BYTES).map(|_| rng.random()).collect();
    let labels: Vec<u8> = (0..n).map(|_| rng.random_range(0..10)).collect();
    let classes = (0..10).map(|c| format!("class{c}")).collect();
    CifarDataset::from_parts(images, labels, classes).unwrap()
}

fn assert_same_epochs(config: LoaderConfig, epochs: u64, shard_images: usize) {
    let data = random_dataset();
    let normalization = Normalization::from_dataset(&data).unwrap();
    let host = Loader::new(data, normalization, config).unwrap();
    let device = Device::flex();
    let resident = DeviceLoader::with_shards(host.clone(), &device, shard_images);
    assert_eq!(resident.batches_per_epoch(), host.batches_per_epoch());
    for epoch in 0..epochs {
        let on_host = host.epoch(epoch);
        let on_device = resident.epoch(epoch);
        for index in 0..host.batches_per_epoch() {
            let expected = on_host.batch(index).unwrap();
            let batch = on_device.batch(index).unwrap();
            let images = batch.images.into_data().try_to_vec::<f32>().unwrap();
            let labels = batch
                .labels
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap();
            assert_eq!(
                labels, expected.labels,
                "labels of epoch {epoch} batch {index}"
            );
            assert_eq!(images.len(), expected.images.len());
            let differing = images
                .iter()
                .zip(&expected.images)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(differing, 0, "pixels differ in epoch {epoch} batch {index}");
        }
        assert!(on_device.batch(host.batches_per_epoch()).is_none());
    }
}

#[test]
fn augmented_batches_match_the_host_path() {
    // Batch 64 over 300 images: a partial last batch too; one buffer, then five.
    assert_same_epochs(LoaderConfig::train(64, 3), 2, 1000);
    assert_same_epochs(LoaderConfig::train(64, 3), 2, 64);
}

#[test]
fn wide_padding_and_no_flip_match_the_host_path() {
    let config = LoaderConfig {
        augment: Some(AugmentConfig {
            pad: 12,
            flip: false,
        }),
        ..LoaderConfig::train(100, 11)
    };
    assert_same_epochs(config, 1, 128);
}

#[test]
fn evaluation_batches_match_the_host_path() {
    assert_same_epochs(LoaderConfig::eval(128), 1, 100);
}
