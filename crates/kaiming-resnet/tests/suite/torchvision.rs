//! torchvision interop on torchvision's own fixtures (`../shared/fixtures/torchvision/`, found
//! through `TORCHVISION_FIXTURES`): the same outputs from the same weights, export and load bit
//! for bit, clear errors for files that do not fit, and hostile files refused without a panic.

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::store::ModuleSnapshot;
use burn::store::pytorch_reader::PytorchReader;
use burn::tensor::{Device, Tensor, TensorData};
use kaiming_init::{InitPlan, Scheme};
use kaiming_resnet::{
    BlockKind, LoadOptions, Model, ResNetConfig, WeightsError, export_weights, load_weights,
    weights_metadata,
};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// The fixture folder, or `None` after saying why the test skips; where `KAIMING_REQUIRE_DATA`
/// is set (`.ci/run` sets it), a missing folder fails the test.
fn fixtures(test: &str) -> Option<PathBuf> {
    match std::env::var_os("TORCHVISION_FIXTURES").map(PathBuf::from) {
        Some(dir) if dir.join("resnet-basic-1111.pth").is_file() => Some(dir),
        _ => {
            let why = "TORCHVISION_FIXTURES does not name the torchvision fixture folder";
            assert!(
                std::env::var_os("KAIMING_REQUIRE_DATA").is_none(),
                "{test}: {why}, and KAIMING_REQUIRE_DATA requires it"
            );
            eprintln!("skipping {test}: {why}");
            None
        }
    }
}

/// torchvision's `ResNet(block, [1, 1, 1, 1], num_classes)` in this crate, freshly initialised.
fn resnet(block: BlockKind, classes: usize, device: &Device) -> Model {
    let config = ResNetConfig::new(
        block,
        vec![1, 1, 1, 1],
        ResNetConfig::IMAGENET_WIDTHS.to_vec(),
    )
    .with_num_classes(classes);
    Model::ResNet(
        config
            .init_with(device, &InitPlan::new(Scheme::he()), 1)
            .unwrap()
            .0,
    )
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn io_tensor<const D: usize>(file: &SafeTensors, name: &str, device: &Device) -> Tensor<D> {
    let view = file.tensor(name).unwrap();
    assert_eq!(view.dtype(), Dtype::F32, "{name}");
    let data: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Tensor::from_data(TensorData::new(data, view.shape().to_vec()), device)
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const MODELS: [(&str, BlockKind); 2] = [
    ("resnet-basic-1111", BlockKind::Basic),
    ("resnet-bottleneck-1111", BlockKind::Bottleneck),
];

#[test]
fn torchvision_weights_give_torchvisions_logits_and_features() {
    let _generator = common::generator();
    let Some(dir) = fixtures("the torchvision output test") else {
        return;
    };
    let device = Device::flex();
    for (name, block) in MODELS {
        let (model, report) = load_weights(
            resnet(block, 10, &device),
            &dir.join(format!("{name}.pth")),
            LoadOptions::default(),
        )
        .unwrap();
        assert!(report.initialised.is_empty() && report.skipped.is_empty());
        assert!(
            report
                .loaded
                .iter()
                .any(|k| k == "layer2.0.downsample.1.running_var")
        );
        assert!(
            report
                .ignored
                .iter()
                .all(|k| k.ends_with("num_batches_tracked"))
        );
        let io = std::fs::read(dir.join(format!("{name}-io.safetensors"))).unwrap();
        let io = SafeTensors::deserialize(&io).unwrap();
        let input: Tensor<4> = io_tensor(&io, "input", &device);
        let logits = values(model.forward(input.clone()));
        let features = values(model.forward_features(input));
        let want_logits = values(io_tensor::<2>(&io, "logits", &device));
        let want_features = values(io_tensor::<2>(&io, "features", &device));
        let (dl, df) = (
            max_difference(&logits, &want_logits),
            max_difference(&features, &want_features),
        );
        assert!(
            dl < 1e-4,
            "{name}: logits differ from torchvision's by {dl:e}"
        );
        assert!(
            df < 1e-4,
            "{name}: features differ from torchvision's by {df:e}"
        );
    }
}

/// Every tensor of a model, by burn path: shape and values.
fn snapshot(model: &Model) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    model
        .collect(None, None, false)
        .into_iter()
        .map(|t| {
            let bytes = t.to_bytes().unwrap().to_vec();
            (t.name.clone(), t.shape.to_vec(), bytes)
        })
        .collect()
}

#[test]
fn export_then_load_is_bit_identical_with_torchvisions_keys_and_shapes() {
    let _generator = common::generator();
    let Some(dir) = fixtures("the export test") else {
        return;
    };
    let device = Device::flex();
    let out = tempfile::tempdir().unwrap();
    for (name, block) in MODELS {
        let pth = dir.join(format!("{name}.pth"));
        let (model, _) =
            load_weights(resnet(block, 10, &device), &pth, LoadOptions::default()).unwrap();
        let exported = out.path().join(format!("{name}.safetensors"));
        export_weights(&model, &exported, &Default::default()).unwrap();

        let bytes = std::fs::read(&exported).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut ours: Vec<(String, Vec<usize>)> = file
            .tensors()
            .into_iter()
            .map(|(k, v)| (k, v.shape().to_vec()))
            .collect();
        ours.sort();
        let reader = PytorchReader::new(&pth).unwrap();
        let mut theirs: Vec<(String, Vec<usize>)> = reader
            .tensors()
            .iter()
            .map(|(k, t)| (k.clone(), t.shape().to_vec()))
            .collect();
        theirs.sort();
        assert_eq!(ours, theirs, "{name}: the exported keys and shapes");

        // A different initialisation, then the exported weights: the same model to the bit.
        let (again, report) = load_weights(
            resnet(block, 10, &device),
            &exported,
            LoadOptions::default(),
        )
        .unwrap();
        assert!(report.initialised.is_empty());
        assert_eq!(
            snapshot(&again),
            snapshot(&model),
            "{name}: export then load"
        );
    }
}

/// The exported tensors of `model`, rewritten by `edit` and saved as `path`.
fn edited(
    model: &Model,
    path: &Path,
    edit: impl Fn(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>),
) {
    let plain = path.with_extension("plain.safetensors");
    export_weights(model, &plain, &Default::default()).unwrap();
    let bytes = std::fs::read(&plain).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(k, d, s, b)| (k.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn files_that_do_not_fit_name_the_key_and_a_1000_class_head_needs_the_opt_out() {
    let _generator = common::generator();
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let model = resnet(BlockKind::Basic, 10, &device);
    let error = |path: &Path, options| {
        load_weights(resnet(BlockKind::Basic, 10, &device), path, options)
            .unwrap_err()
            .to_string()
    };

    let missing = dir.path().join("missing.safetensors");
    edited(&model, &missing, |t| {
        t.retain(|(k, ..)| k != "layer3.0.bn2.running_mean")
    });
    let message = error(&missing, LoadOptions::default());
    assert!(message.contains("`layer3.0.bn2.running_mean`"), "{message}");
    assert!(message.contains("missing.safetensors"), "{message}");

    let reshaped = dir.path().join("reshaped.safetensors");
    edited(&model, &reshaped, |t| {
        let entry = t
            .iter_mut()
            .find(|(k, ..)| k == "layer1.0.conv1.weight")
            .unwrap();
        entry.2 = vec![64, 64, 1, 9];
    });
    let message = error(&reshaped, LoadOptions::default());
    assert!(
        message.contains(
            "`layer1.0.conv1.weight` has shape [64, 64, 1, 9], the model expects [64, 64, 3, 3]"
        ),
        "{message}"
    );

    let imagenet = dir.path().join("imagenet-head.safetensors");
    export_weights(
        &resnet(BlockKind::Basic, 1000, &device),
        &imagenet,
        &Default::default(),
    )
    .unwrap();
    let refused = load_weights(
        resnet(BlockKind::Basic, 10, &device),
        &imagenet,
        LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            refused,
            WeightsError::Classes {
                found: 1000,
                expected: 10,
                ..
            }
        ),
        "{refused}"
    );
    let (_, report) = load_weights(
        resnet(BlockKind::Basic, 10, &device),
        &imagenet,
        LoadOptions {
            skip_classifier: true,
        },
    )
    .unwrap();
    assert_eq!(report.initialised, ["fc.bias", "fc.weight"]);
    assert_eq!(report.skipped, ["fc.bias", "fc.weight"]);
    // 12 convolutions and 12 batch norms (γ, β, mean, variance); the head left out.
    assert_eq!(report.loaded.len(), 12 + 12 * 4);
}

/// A `torch.save`-style zip holding `pickle` as its data.pkl.
fn pth_with_pickle(path: &Path, pickle: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(pickle).unwrap();
    zip.start_file("archive/version", stored).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}

/// Protocol-2 pickle calling `posix.system("touch <marker>")`, optionally inside a dict under
/// `conv1.weight`.
fn system_call(marker: &Path, in_dict: bool) -> Vec<u8> {
    let mut p = vec![0x80, 2]; // PROTO 2
    if in_dict {
        p.push(b'}'); // EMPTY_DICT
        let key = b"conv1.weight";
        p.push(b'X'); // BINUNICODE
        p.extend((key.len() as u32).to_le_bytes());
        p.extend(key);
    }
    p.extend(b"cposix\nsystem\n"); // GLOBAL
    let command = format!("touch {}", marker.display());
    p.push(b'X');
    p.extend((command.len() as u32).to_le_bytes());
    p.extend(command.as_bytes());
    p.push(0x85); // TUPLE1
    p.push(b'R'); // REDUCE
    if in_dict {
        p.push(b's'); // SETITEM
    }
    p.push(b'.'); // STOP
    p
}

#[test]
fn hostile_files_are_refused_with_a_clear_error_and_nothing_runs() {
    let _generator = common::generator();
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let load = |path: &Path| {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            load_weights(
                resnet(BlockKind::Basic, 10, &device),
                path,
                LoadOptions::default(),
            )
        }));
        let result = outcome.unwrap_or_else(|_| panic!("{}: the loader panicked", path.display()));
        let error = result.err().map(|e| e.to_string());
        if let Some(message) = &error {
            let name = path.file_name().unwrap().to_string_lossy();
            assert!(message.contains(name.as_ref()), "{message}");
        }
        error
    };

    // Code in the pickle: refused, never run.
    let marker = dir.path().join("pwned");
    for in_dict in [false, true] {
        let path = dir.path().join(format!("system-{in_dict}.pth"));
        pth_with_pickle(&path, &system_call(&marker, in_dict));
        let message = load(&path).expect("a pickle calling os.system is refused");
        assert!(
            ["not a state dict", "not a tensor", "Expected a dictionary"]
                .iter()
                .any(|m| message.contains(m)),
            "{message}"
        );
    }
    assert!(!marker.exists(), "the pickle's command ran");

    // A safetensors header declaring a tensor far larger than the file.
    let huge = dir.path().join("huge.safetensors");
    let header = br#"{"fc.weight":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4000000000000]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend([0u8; 64]);
    std::fs::write(&huge, bytes).unwrap();
    assert!(load(&huge).is_some(), "an oversized tensor is refused");

    // Exported and torchvision files cut short or with flipped bytes.
    let good = dir.path().join("good.safetensors");
    export_weights(
        &resnet(BlockKind::Basic, 10, &device),
        &good,
        &Default::default(),
    )
    .unwrap();
    let mut files = vec![good];
    if let Some(fixtures) = fixtures("the hostile torchvision file test") {
        files.push(fixtures.join("resnet-basic-1111.pth"));
    }
    for original in files {
        let bytes = std::fs::read(&original).unwrap();
        let extension = original.extension().unwrap().to_string_lossy().into_owned();
        for (i, cut) in [0, 7, 8, 100, 4096, bytes.len() / 2, bytes.len() - 1]
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("cut-{i}.{extension}"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(load(&path).is_some(), "{original:?} cut at {cut} loaded");
        }
        for (i, at) in [3, 40, 200, bytes.len() / 3, bytes.len() - 30]
            .into_iter()
            .enumerate()
        {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x5a;
            let path = dir.path().join(format!("flip-{i}.{extension}"));
            std::fs::write(&path, &flipped).unwrap();
            load(&path); // an error naming the file, or weights that still fit: never a panic
        }
    }
}

#[test]
fn an_export_carries_its_metadata() {
    let _generator = common::generator();
    let device = Device::flex();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("with-metadata.safetensors");
    let metadata = BTreeMap::from([("input_mean".to_string(), "[0.5,0.25,0.125]".to_string())]);
    export_weights(&resnet(BlockKind::Basic, 10, &device), &path, &metadata).unwrap();
    let read = weights_metadata(&path).unwrap();
    assert_eq!(read.get("input_mean"), metadata.get("input_mean"));
    assert_eq!(read.get("format").map(String::as_str), Some("pt"));
    // A .pth has no metadata map; a damaged header is an error naming the file.
    assert!(weights_metadata(Path::new("any.pth")).unwrap().is_empty());
    std::fs::write(&path, b"\x05\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let error = weights_metadata(&path).unwrap_err().to_string();
    assert!(error.contains("with-metadata.safetensors"), "{error}");
}
