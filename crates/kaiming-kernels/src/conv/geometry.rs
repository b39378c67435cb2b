//! The sizes of a convolution and how its batch is cut into GEMM-sized chunks.

use std::ops::Range;

use burn::backend::ops::ConvOptions;
use burn::tensor::Shape;

use super::matmul::Threads;

/// GEMM columns (output positions) a chunk aims for. A 3×3 layer's product is
/// `[C_out, C_in·9] · [C_in·9, columns]`: below about a thousand columns the GEMM's packing
/// and edge kernels dominate (ResNet-18's last stage has 16 positions per image, which is why
/// burn's per-image GEMMs are slow there); far above it the im2col matrix leaves the cache.
const TARGET_COLUMNS: usize = 2048;

/// Output positions from which a pointwise convolution's image is a product of its own:
/// ResNet-50's bottlenecks at 32×32 and 16×16 (CIFAR stem). Its GEMMs then read the input
/// image and the output gradient where they lie and write the output and input gradient in
/// place, where a chunk of several images is gathered into columns and its product copied out
/// again.
const IMAGE_COLUMNS: usize = 256;

/// im2col floats a chunk may hold: 16 MiB, so memory stays flat whatever the batch.
const COLUMNS_BUDGET: usize = 1 << 22;

/// A convolution's sizes, from its input, weight and output shapes.
#[derive(Debug, Clone)]
pub(crate) struct Geometry {
    pub batch: usize,
    pub channels_in: usize,
    pub height: usize,
    pub width: usize,
    pub channels_out: usize,
    pub kernel: [usize; 2],
    pub out_height: usize,
    pub out_width: usize,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

impl Geometry {
    /// `x` is `[N, C_in, H, W]`, `weight` `[C_out, C_in, KH, KW]`; symmetric padding, one
    /// group. Panics on any other shapes: the kernels index by the geometry, so a mismatch
    /// would otherwise read or write out of place.
    pub fn new(x: &Shape, weight: &Shape, options: &ConvOptions<2>) -> Self {
        assert!(
            x.num_dims() == 4 && weight.num_dims() == 4,
            "conv2d: input {x:?} and weight {weight:?} must be 4-D"
        );
        assert_eq!(
            weight[1], x[1],
            "conv2d: weight {weight:?} against input {x:?}: input channels differ"
        );
        assert!(
            options
                .stride
                .iter()
                .chain(&options.dilation)
                .all(|&s| s > 0),
            "conv2d: zero stride or dilation in {options:?}"
        );
        let padding = options.padding_begin();
        let out = |size: usize, kernel: usize, axis: usize| {
            let span = options.dilation[axis] * (kernel.max(1) - 1) + 1;
            match (size + 2 * padding[axis]).checked_sub(span) {
                Some(room) => room / options.stride[axis] + 1,
                None => 0,
            }
        };
        Self {
            batch: x[0],
            channels_in: x[1],
            height: x[2],
            width: x[3],
            channels_out: weight[0],
            kernel: [weight[2], weight[3]],
            out_height: out(x[2], weight[2], 0),
            out_width: out(x[3], weight[3], 1),
            stride: options.stride,
            padding,
            dilation: options.dilation,
        }
    }

    /// Panics unless `x` holds this convolution's input, `[N, C_in, H, W]`.
    pub fn check_input(&self, x: &[f32]) {
        let expected = self.batch * self.channels_in * self.in_positions();
        assert_eq!(x.len(), expected, "conv2d input: floats against {self:?}");
    }

    /// Panics unless `weight` holds this convolution's weight, `[C_out, C_in, KH, KW]`.
    pub fn check_weight(&self, weight: &[f32]) {
        let expected = self.channels_out * self.weights_per_output();
        assert_eq!(
            weight.len(),
            expected,
            "conv2d weight: floats against {self:?}"
        );
    }

    /// Panics unless `output` holds this convolution's output (or its gradient),
    /// `[N, C_out, OH, OW]`.
    pub fn check_output(&self, output: &[f32]) {
        let expected = self.batch * self.channels_out * self.out_positions();
        assert_eq!(
            output.len(),
            expected,
            "conv2d output: floats against {self:?}"
        );
    }

    /// The output shape `[N, C_out, OH, OW]`.
    pub fn output_shape(&self) -> Shape {
        Shape::new([
            self.batch,
            self.channels_out,
            self.out_height,
            self.out_width,
        ])
    }

    /// Input positions per image.
    pub fn in_positions(&self) -> usize {
        self.height * self.width
    }

    /// Output positions per image.
    pub fn out_positions(&self) -> usize {
        self.out_height * self.out_width
    }

    /// Weights per output channel, `C_in·KH·KW`: the GEMM's inner dimension.
    pub fn weights_per_output(&self) -> usize {
        self.channels_in * self.kernel[0] * self.kernel[1]
    }

    /// Whether the im2col matrix of one image is the image itself: a 1×1 kernel with stride 1
    /// and no padding (ResNet-50's bottleneck convolutions), which then need no copy.
    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
    }

    /// Whether there is nothing to compute.
    pub fn is_empty(&self) -> bool {
        self.batch == 0
            || self.channels_out == 0
            || self.weights_per_output() == 0
            || self.out_positions() == 0
    }

    /// Images per chunk: enough for [`TARGET_COLUMNS`] columns within [`COLUMNS_BUDGET`], and
    /// no more than a fair share of the batch per thread, so every thread gets work; one for a
    /// pointwise convolution of at least [`IMAGE_COLUMNS`] positions.
    pub fn images_per_chunk(&self, threads: usize) -> usize {
        let positions = self.out_positions().max(1);
        if self.is_pointwise() && positions >= IMAGE_COLUMNS {
            return 1;
        }
        let wanted = TARGET_COLUMNS.div_ceil(positions);
        let affordable = COLUMNS_BUDGET / (positions * self.weights_per_output()).max(1);
        let share = self.batch.div_ceil(threads.max(1));
        wanted.min(affordable).min(share).max(1)
    }

    /// Images per chunk for `rayon`'s current threads, and who runs each chunk's GEMM: the
    /// calling thread when there are chunks for every thread, else all threads.
    pub fn chunking(&self) -> (usize, Threads) {
        let threads = rayon::current_num_threads();
        let size = self.images_per_chunk(threads);
        let gemm_threads = match self.batch.div_ceil(size) < threads {
            true => Threads::All,
            false => Threads::Caller,
        };
        (size, gemm_threads)
    }

    /// The batch cut into one fixed share per thread (fewer for a smaller batch): summing
    /// per-share gradients in this order makes the result independent of scheduling.
    pub fn shares(&self) -> Vec<Range<usize>> {
        let shares = rayon::current_num_threads().clamp(1, self.batch.max(1));
        (0..shares)
            .map(|share| share * self.batch / shares..(share + 1) * self.batch / shares)
            .collect()
    }
}
