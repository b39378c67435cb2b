//! What a forward convolution does with each output as it writes it: in evaluation, a batch
//! norm folded into the weights leaves a per-channel bias, and the ReLU after it; both cost
//! nothing while the value is in a register, and a pass over the activation each afterwards.
//! In training, the statistics of the batch norm after the convolution are gathered from each
//! image's output while it is still in cache, where the norm would read the whole activation
//! from memory for them.

use std::mem::MaybeUninit;

use super::geometry::Geometry;
use super::vector::Vector;
use crate::moments::ImageMoments;
use crate::unfilled;

/// A per-channel bias, then optionally a ReLU; and where asked, each image's moments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    /// One value per output channel.
    pub bias: Option<&'a [f32]>,
    pub relu: bool,
    /// Where each image's per-channel moments go, once it is written.
    pub moments: Option<&'a ImageMoments>,
}

impl Epilogue<'_> {
    /// The plain convolution: outputs written as computed.
    pub const NONE: Epilogue<'static> = Epilogue {
        bias: None,
        relu: false,
        moments: None,
    };

    /// Panics unless the bias has one value per output channel of `g`.
    pub fn check(&self, g: &Geometry) {
        if let Some(bias) = self.bias {
            assert_eq!(bias.len(), g.channels_out, "conv2d bias against {g:?}");
        }
    }

    /// Whether outputs are written as computed (moments or not).
    pub fn is_none(&self) -> bool {
        self.bias.is_none() && !self.relu
    }

    /// Output `value` of `channel` as written.
    #[inline(always)]
    pub fn apply(&self, channel: usize, value: f32) -> f32 {
        let value = match self.bias {
            Some(bias) => value + bias[channel],
            None => value,
        };
        if self.relu { value.max(0.0) } else { value }
    }

    /// [`Epilogue::apply`] to every lane of `value`, outputs of `channel`.
    ///
    /// # Safety
    /// Inlined only into functions compiled for `V`'s instruction set.
    #[inline(always)]
    pub unsafe fn apply_lanes<V: Vector>(&self, channel: usize, value: V) -> V {
        unsafe {
            let value = match self.bias {
                Some(bias) => V::add(value, V::splat(&bias[channel])),
                None => value,
            };
            // `max` takes its second operand where the first is NaN, as `f32::max` does 0.
            if self.relu {
                V::max(value, V::zero())
            } else {
                value
            }
        }
    }

    /// Writes `source`, outputs of `channel`, into `target`.
    pub fn write(&self, channel: usize, target: &mut [MaybeUninit<f32>], source: &[f32]) {
        assert_eq!(target.len(), source.len());
        for (target, source) in target.iter_mut().zip(source) {
            target.write(self.apply(channel, *source));
        }
    }

    /// The value a GEMM accumulating `channel`'s outputs in place starts from: [`apply`]'s
    /// bias, so that only [`finish_in_place`] is left to do.
    ///
    /// [`apply`]: Epilogue::apply
    /// [`finish_in_place`]: Epilogue::finish_in_place
    pub fn start(&self, channel: usize) -> f32 {
        self.bias.map_or(0.0, |bias| bias[channel])
    }

    /// The rest of [`Epilogue::apply`] on outputs that already hold their bias
    /// ([`Epilogue::start`]): the ReLU.
    pub fn finish_in_place(&self, values: &mut [f32]) {
        if self.relu {
            values.iter_mut().for_each(|value| *value = value.max(0.0));
        }
    }

    /// Records image `index`'s moments, where they are gathered, from its whole output.
    ///
    /// # Safety
    /// Every element of `output` has been written.
    pub unsafe fn finish_image(&self, index: usize, output: &[MaybeUninit<f32>]) {
        if let Some(moments) = self.moments {
            // SAFETY: the caller vouches that the image is written.
            moments.record(index, unsafe { unfilled::written(output) });
        }
    }
}
