//! The convolution engine's two algorithms side by side, per pass, on every 3×3 stride-1 shape
//! of the model zoo: milliseconds for the forward pass, the input gradient and the weight
//! gradient on flex, im2col GEMMs against the direct kernels, alternating, medians. What
//! `conv::direct_pays` is set from.
//!
//!     cargo bench --workspace --bench conv [-- --threads N --repeats R]

use std::time::Instant;

use burn::backend::Flex;
use burn::backend::ops::ConvOptions;
use burn::tensor::TensorData;
use burn_flex::FlexTensor;
use kaiming_kernels::{ConvAlgorithm, ConvChoice, ConvEngineBackend, IsaChoice, with_conv_choice};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `(model, batch, channels, size)`: a 3×3 stride-1 convolution `channels → channels` on
/// `size × size` images, as in that model's stages (ResNet-50's are its bottlenecks' 3×3s).
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

fn random(shape: [usize; 4], seed: u64) -> FlexTensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Milliseconds of the forward pass, the input gradient and the weight gradient.
fn passes(x: &FlexTensor, w: &FlexTensor, dy: &FlexTensor, algorithm: ConvAlgorithm) -> [f64; 3] {
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let choice = ConvChoice {
        algorithm,
        isa: IsaChoice::Auto,
    };
    let time = |f: &dyn Fn() -> FlexTensor| {
        let start = Instant::now();
        drop(f());
        1e3 * start.elapsed().as_secs_f64()
    };
    with_conv_choice(choice, || {
        [
            time(&|| Flex::engine_conv2d(x.clone(), w.clone(), options.clone())),
            time(&|| {
                Flex::engine_conv2d_input_grad(x.clone(), w.clone(), dy.clone(), options.clone())
            }),
            time(&|| {
                Flex::engine_conv2d_weight_grad(x.clone(), w.clone(), dy.clone(), options.clone())
            }),
        ]
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
    println!("threads {threads}, {repeats} alternating repeats, medians, ms (gemm / direct)");
    println!("| model | batch | channels | size | forward | input gradient | weight gradient |");
    println!("|---|---|---|---|---|---|---|");
    for (model, batch, channels, size) in SHAPES {
        let x = random([batch, channels, size, size], 1);
        let w = random([channels, channels, 3, 3], 2);
        let dy = random([batch, channels, size, size], 3);
        let (mut gemm, mut direct) = (Vec::new(), Vec::new());
        passes(&x, &w, &dy, ConvAlgorithm::Gemm);
        passes(&x, &w, &dy, ConvAlgorithm::Direct);
        for _ in 0..repeats {
            gemm.push(passes(&x, &w, &dy, ConvAlgorithm::Gemm));
            direct.push(passes(&x, &w, &dy, ConvAlgorithm::Direct));
        }
        let cell = |pass: usize| {
            let (a, b) = (
                median(gemm.iter().map(|p| p[pass]).collect()),
                median(direct.iter().map(|p| p[pass]).collect()),
            );
            format!("{a:.1} / {b:.1}{}", if b < a { " ◀" } else { "" })
        };
        println!(
            "| {model} | {batch} | {channels} | {size} | {} | {} | {} |",
            cell(0),
            cell(1),
            cell(2)
        );
    }
}
