//! Crops, flips, normalisation and the seeded loader.

use crate::common;

use burn::tensor::Device;
use kaiming_cifar::{
    AugmentConfig, CifarDataset, IMAGE_BYTES, Loader, LoaderConfig, Normalization, PLANE, SIDE,
    Transform, transform_bytes,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The textbook definition: pad with zeros into a (32 + 2·pad)² image, cut the window, mirror.
fn reference(src: &[u8], t: Transform, pad: usize) -> Vec<u8> {
    let side = SIDE + 2 * pad;
    let mut out = vec![0u8; IMAGE_BYTES];
    for c in 0..3 {
        let mut padded = vec![0u8; side * side];
        for y in 0..SIDE {
            for x in 0..SIDE {
                padded[(y + pad) * side + x + pad] = src[c * PLANE + y * SIDE + x];
            }
        }
        let top = (pad as i32 + t.dy) as usize;
        let left = (pad as i32 + t.dx) as usize;
        for y in 0..SIDE {
            for x in 0..SIDE {
                let cx = if t.flip { SIDE - 1 - x } else { x };
                out[c * PLANE + y * SIDE + x] = padded[(top + y) * side + left + cx];
            }
        }
    }
    out
}

fn image(seed: u64) -> Vec<u8> {
    common::synthetic(1, 1, seed).0
}

fn dataset(n: usize) -> CifarDataset {
    let (images, labels) = common::synthetic(n, 10, 11);
    let classes = (0..10).map(|i| i.to_string()).collect();
    CifarDataset::from_parts(images, labels, classes).unwrap()
}

#[test]
fn every_crop_is_a_window_of_the_padded_image() {
    let src = image(1);
    let mut out = vec![0u8; IMAGE_BYTES];
    for dy in -4..=4 {
        for dx in -4..=4 {
            for flip in [false, true] {
                let t = Transform { dx, dy, flip };
                transform_bytes(&src, t, &mut out).unwrap();
                assert_eq!(out, reference(&src, t, 4), "{t:?}");
            }
        }
    }
    // Shifts of the whole image width leave only padding.
    let t = Transform {
        dx: 32,
        dy: 0,
        flip: false,
    };
    transform_bytes(&src, t, &mut out).unwrap();
    assert!(out.iter().all(|&v| v == 0));
    assert!(transform_bytes(&src[1..], Transform::IDENTITY, &mut out).is_err());
}

#[test]
fn sampled_crops_stay_inside_the_padding() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for pad in [0, 1, 4] {
        let config = AugmentConfig { pad, flip: true };
        let mut flips = 0;
        let mut extremes = (false, false);
        for _ in 0..2_000 {
            let t = config.sample(&mut rng);
            let p = pad as i32;
            assert!(
                (-p..=p).contains(&t.dx) && (-p..=p).contains(&t.dy),
                "{t:?}"
            );
            flips += usize::from(t.flip);
            extremes.0 |= t.dx == -p;
            extremes.1 |= t.dx == p;
        }
        assert!((800..1_200).contains(&flips), "{flips} flips of 2000");
        assert!(extremes.0 && extremes.1, "all shifts reachable");
    }
    let no_flip = AugmentConfig {
        pad: 4,
        flip: false,
    };
    assert!((0..100).all(|_| !no_flip.sample(&mut rng).flip));
    assert!(
        AugmentConfig {
            pad: 32,
            flip: true
        }
        .validate()
        .is_err()
    );
}

#[test]
fn flips_mirror_exactly() {
    let src = image(2);
    let mut flipped = vec![0u8; IMAGE_BYTES];
    let flip = Transform {
        flip: true,
        ..Transform::IDENTITY
    };
    transform_bytes(&src, flip, &mut flipped).unwrap();
    for row in 0..3 * SIDE {
        let a = &src[row * SIDE..(row + 1) * SIDE];
        let b = &flipped[row * SIDE..(row + 1) * SIDE];
        assert!(a.iter().eq(b.iter().rev()), "row {row}");
    }
    let mut twice = vec![0u8; IMAGE_BYTES];
    transform_bytes(&flipped, flip, &mut twice).unwrap();
    assert_eq!(twice, src);
    transform_bytes(&src, Transform::IDENTITY, &mut twice).unwrap();
    assert_eq!(twice, src);
}

#[test]
fn batches_are_the_normalised_transformed_images() {
    let data = dataset(300);
    let norm = Normalization {
        mean: [0.5, 0.4, 0.3],
        std: [0.25, 0.2, 0.3],
    };
    let loader = Loader::new(data.clone(), norm, LoaderConfig::train(64, 1)).unwrap();
    let epoch = loader.epoch(0);
    let batch = epoch.batch(2).unwrap();
    assert_eq!(batch.len(), 64);
    assert!(batch.transforms.iter().any(|t| *t != Transform::IDENTITY));
    let mut bytes = vec![0u8; IMAGE_BYTES];
    for k in 0..batch.len() {
        let i = batch.indices[k] as usize;
        assert_eq!(batch.labels[k], i64::from(data.labels()[i]));
        transform_bytes(data.image(i).unwrap(), batch.transforms[k], &mut bytes).unwrap();
        let got = &batch.images[k * IMAGE_BYTES..(k + 1) * IMAGE_BYTES];
        for (p, (&g, &b)) in got.iter().zip(&bytes).enumerate() {
            let c = p / PLANE;
            let want = (f32::from(b) / 255.0 - norm.mean[c]) / norm.std[c];
            assert!(
                (g - want).abs() < 1e-5,
                "image {k} pixel {p}: {g} vs {want}"
            );
        }
    }
}

#[test]
fn same_seed_same_batches_other_seed_other_batches() {
    let data = dataset(200);
    let norm = Normalization::CIFAR10_TRAIN;
    let a = Loader::new(data.clone(), norm, LoaderConfig::train(32, 7)).unwrap();
    let b = Loader::new(data.clone(), norm, LoaderConfig::train(32, 7)).unwrap();
    let c = Loader::new(data, norm, LoaderConfig::train(32, 8)).unwrap();

    let ea: Vec<_> = a.epoch(3).collect();
    let eb: Vec<_> = b.epoch(3).collect();
    assert_eq!(ea, eb);
    let ec: Vec<_> = c.epoch(3).collect();
    assert_ne!(ea[0].indices, ec[0].indices);
    assert_ne!(ea[0].images, ec[0].images);
    // Another epoch of the same seed is another order.
    assert_ne!(a.order(3), a.order(4));

    // Resuming at epoch 3 without running 0..3 gives the same batches, in any access order.
    let fresh = Loader::new(a.dataset().clone(), norm, *a.config()).unwrap();
    let epoch = fresh.epoch(3);
    for k in (0..epoch.len()).rev() {
        assert_eq!(epoch.batch(k).unwrap(), ea[k]);
    }

    // Each epoch visits every image once.
    let mut seen: Vec<u32> = ea.iter().flat_map(|b| b.indices.iter().copied()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..200).collect::<Vec<u32>>());
}

#[test]
fn eval_batches_are_plain_and_in_order() {
    let data = dataset(70);
    let norm = Normalization::CIFAR10_TRAIN;
    let loader = Loader::new(data.clone(), norm, LoaderConfig::eval(32)).unwrap();
    assert_eq!(loader.batches_per_epoch(), 3);
    let batches: Vec<_> = loader.epoch(0).collect();
    assert_eq!(
        batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
        [32, 32, 6]
    );
    assert_eq!(batches, loader.epoch(9).collect::<Vec<_>>());
    let indices: Vec<u32> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(indices, (0..70).collect::<Vec<u32>>());
    assert!(
        batches[0]
            .transforms
            .iter()
            .all(|t| *t == Transform::IDENTITY)
    );
    let tables = norm.lookup_tables();
    let first = data.image(0).unwrap();
    for p in 0..IMAGE_BYTES {
        assert_eq!(
            batches[0].images[p],
            tables[p / PLANE][usize::from(first[p])]
        );
    }

    let dropping = LoaderConfig {
        drop_last: true,
        ..LoaderConfig::eval(32)
    };
    let loader = Loader::new(data.clone(), norm, dropping).unwrap();
    assert_eq!(loader.batches_per_epoch(), 2);
    assert_eq!(loader.epoch(0).len(), 2);
    assert!(loader.epoch(0).batch(2).is_none());

    assert!(Loader::new(data, norm, LoaderConfig::eval(0)).is_err());
}

#[test]
fn batches_become_tensors_on_the_device() {
    let data = dataset(40);
    let norm = Normalization::CIFAR10_TRAIN;
    let loader = Loader::new(data, norm, LoaderConfig::train(16, 3)).unwrap();
    let device = Device::flex();
    let host: Vec<_> = loader.epoch(1).collect();
    let batches: Vec<_> = loader.epoch_on(1, &device).collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0].images.dims(), [16, 3, 32, 32]);
    assert_eq!(batches[0].labels.dims(), [16]);
    assert_eq!(batches[2].images.dims(), [8, 3, 32, 32]);
    let images: Vec<f32> = batches[2].images.clone().into_data().try_to_vec().unwrap();
    assert_eq!(images, host[2].images);
    let labels: Vec<i64> = batches[2]
        .labels
        .clone()
        .into_data()
        .convert::<i64>()
        .try_to_vec()
        .unwrap();
    assert_eq!(labels, host[2].labels);
}
