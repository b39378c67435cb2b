//! The convolution engine's three algorithms side by side, per pass, on every 3×3 shape of the
//! model zoo (stride 1, and the CIFAR ResNets' stride-2 stage entries): milliseconds for the forward pass, the input gradient and the weight
//! gradient on flex, im2col GEMMs against the direct and the channel-blocked kernels,
//! alternating, medians (◀ marks the fastest; `-` where the blocked kernels do not apply and
//! GEMMs would run). What `conv::blocked_pays` and `conv::direct_pays` are set from.
//!
//!     cargo bench --workspace --bench conv [-- --threads N --repeats R --isa avx2 --model resnet18]

use std::time::Instant;

use burn::backend::Flex;
use burn::backend::ops::ConvOptions;
use burn::tensor::TensorData;
use burn_flex::FlexTensor;
use kaiming_kernels::{
    ConvAlgorithm, ConvChoice, ConvEngineBackend, Isa, IsaChoice, with_conv_choice,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `(model, batch, channels in, channels out, size, stride)`: a 3×3 convolution on `size ×
/// size` images, as in that model's stem and stages (ResNet-50's are its bottlenecks' 3×3s).
const SHAPES: [(&str, usize, usize, usize, usize, usize); 13] = [
    ("resnet20", 128, 3, 16, 32, 1),
    ("resnet20", 128, 16, 16, 32, 1),
    ("resnet20", 128, 16, 32, 32, 2),
    ("resnet20", 128, 32, 32, 16, 1),
    ("resnet20", 128, 32, 64, 16, 2),
    ("resnet20", 128, 64, 64, 8, 1),
    ("resnet18", 128, 64, 64, 32, 1),
    ("resnet18", 128, 128, 128, 16, 1),
    ("resnet18", 128, 256, 256, 8, 1),
    ("resnet18", 128, 512, 512, 4, 1),
    ("resnet50", 32, 64, 64, 32, 1),
    ("resnet50", 32, 128, 128, 16, 1),
    ("resnet50", 32, 256, 256, 8, 1),
];

/// The allocator the `train` binary uses: a call's output reuses the pages the last call freed.
/// With the system allocator, an output above glibc's 32 MiB mapping threshold (ResNet-18's
/// 64-channel 32×32 layer: 33.5 MB) was mapped afresh and page-faulted on every call, about
/// 12 of that layer's 56 ms, which training does not pay.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
fn passes(
    x: &FlexTensor,
    w: &FlexTensor,
    dy: &FlexTensor,
    stride: usize,
    choice: ConvChoice,
) -> [f64; 3] {
    let options = ConvOptions::new([stride, stride], [1, 1], [1, 1], 1);
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

/// The algorithms compared, in the order of the table's cells.
const ALGORITHMS: [ConvAlgorithm; 3] = [
    ConvAlgorithm::Gemm,
    ConvAlgorithm::Direct,
    ConvAlgorithm::Blocked,
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let flag =
        |name: &str, default: usize| value(name).map_or(default, |v| v.parse().expect("a number"));
    let threads = flag("--threads", 2);
    let repeats = flag("--repeats", 5);
    let isa: IsaChoice =
        value("--isa").map_or(IsaChoice::Auto, |v| v.parse().expect("an instruction set"));
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("the thread pool");
    println!(
        "threads {threads}, instruction set {isa}, {repeats} alternating repeats, medians, ms \
         (gemm / direct / blocked)"
    );
    println!(
        "| model | batch | channels | size | stride | forward | input gradient | weight gradient |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let only = value("--model");
    for (model, batch, c_in, c_out, size, stride) in SHAPES {
        if only.is_some_and(|only| only != model) {
            continue;
        }
        let x = random([batch, c_in, size, size], 1);
        let w = random([c_out, c_in, 3, 3], 2);
        let out = size / stride;
        let dy = random([batch, c_out, out, out], 3);
        let choice = |algorithm| ConvChoice { algorithm, isa };
        let mut times: [Vec<[f64; 3]>; 3] = Default::default();
        for algorithm in ALGORITHMS {
            passes(&x, &w, &dy, stride, choice(algorithm));
        }
        for _ in 0..repeats {
            for (algorithm, times) in ALGORITHMS.into_iter().zip(&mut times) {
                times.push(passes(&x, &w, &dy, stride, choice(algorithm)));
            }
        }
        // The blocked kernels take whole vectors of output channels (the input's for the input
        // gradient); elsewhere the `blocked` choice runs GEMMs, and the direct kernels (stride 1
        // only) too.
        let lanes = match isa.resolve() {
            Some(Isa::Avx512 | Isa::Avx512Emulated) => 16,
            _ => 8,
        };
        let cell = |pass: usize| {
            let blocked_applies = match pass {
                1 => c_in % lanes == 0,
                _ => c_out % lanes == 0,
            };
            let medians: Vec<f64> = times
                .iter()
                .map(|times| median(times.iter().map(|p| p[pass]).collect()))
                .collect();
            let applies = |i: usize| match i {
                1 => stride == 1,
                2 => blocked_applies,
                _ => true,
            };
            let fastest = (0..3)
                .filter(|&i| applies(i))
                .min_by(|&a, &b| medians[a].total_cmp(&medians[b]))
                .expect("GEMMs apply everywhere");
            let text: Vec<String> = (0..3)
                .map(|i| match i {
                    _ if !applies(i) => "-".to_string(),
                    _ if i == fastest => format!("{:.1} ◀", medians[i]),
                    _ => format!("{:.1}", medians[i]),
                })
                .collect();
            text.join(" / ")
        };
        println!(
            "| {model} | {batch} | {c_in}→{c_out} | {size} | {stride} | {} | {} | {} |",
            cell(0),
            cell(1),
            cell(2)
        );
    }
}
