//! The convolution engine's algorithms side by side on every 3×3 stride-1 shape of the model
//! zoo: milliseconds for the forward pass and for the backward pass (input and weight
//! gradients) through `kaiming_kernels::conv2d` on flex with autodiff, im2col GEMMs against the
//! direct kernels, alternating, medians. What `conv::direct_pays` is set from.
//!
//!     cargo bench --workspace --bench conv [-- --threads N --repeats R]

use std::time::Instant;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Device, Distribution, Tensor};
use kaiming_kernels::{ConvAlgorithm, ConvChoice, conv2d, with_conv_choice};

/// `(model, batch, channels, size)`: a 3×3 stride-1 convolution `channels → channels` on
/// `size × size` images, as in that model's stages.
const SHAPES: [(&str, usize, usize, usize); 10] = [
    ("resnet20", 128, 16, 32),
    ("resnet20", 128, 32, 16),
    ("resnet20", 128, 64, 8),
    ("resnet18", 128, 64, 32),
    ("resnet18", 128, 128, 16),
    ("resnet18", 128, 256, 8),
    ("resnet18", 128, 512, 4),
    ("resnet50", 32, 64, 32),
    ("resnet50", 32, 128, 16),
    ("resnet50", 32, 256, 8),
];

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Forward and backward milliseconds of one pass.
fn pass(batch: usize, channels: usize, size: usize, algorithm: ConvAlgorithm) -> (f64, f64) {
    let device = Device::flex().autodiff();
    let conv = Conv2dConfig::new([channels, channels], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(&device);
    let x = Tensor::<4>::random(
        [batch, channels, size, size],
        Distribution::Default,
        &device,
    )
    .require_grad();
    let choice = ConvChoice {
        algorithm,
        isa: None,
    };
    with_conv_choice(choice, || {
        let start = Instant::now();
        let y = conv2d(&conv, x.clone());
        let _ = y
            .clone()
            .slice([0..1, 0..1, 0..1, 0..1])
            .into_scalar::<f32>();
        let forward = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let grads = y.sum().backward();
        let _ = x
            .grad(&grads)
            .map(|g| g.slice([0..1, 0..1, 0..1, 0..1]).into_scalar::<f32>());
        (1e3 * forward, 1e3 * start.elapsed().as_secs_f64())
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let threads = flag("--threads", 2);
    let repeats = flag("--repeats", 5);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("the thread pool");
    println!("threads {threads}, {repeats} alternating repeats, medians (ms)");
    println!("| model | batch | channels | size | gemm fwd | direct fwd | gemm bwd | direct bwd |");
    println!("|---|---|---|---|---|---|---|---|");
    for (model, batch, channels, size) in SHAPES {
        let (mut gemm, mut direct) = (Vec::new(), Vec::new());
        pass(batch, channels, size, ConvAlgorithm::Gemm);
        for _ in 0..repeats {
            gemm.push(pass(batch, channels, size, ConvAlgorithm::Gemm));
            direct.push(pass(batch, channels, size, ConvAlgorithm::Direct));
        }
        let part = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| median(v.iter().map(f).collect());
        println!(
            "| {model} | {batch} | {channels} | {size} | {:.1} | {:.1} | {:.1} | {:.1} |",
            part(&gemm, |p| p.0),
            part(&direct, |p| p.0),
            part(&gemm, |p| p.1),
            part(&direct, |p| p.1),
        );
    }
}
