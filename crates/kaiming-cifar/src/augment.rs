//! Random crop (from the image zero-padded on every side) and horizontal flip, the standard
//! CIFAR augmentation of the ResNet paper.
//!
//! The crop never materialises the padded image: each output row is filled with the padding
//! value and the part that overlaps the source is copied in, mirrored when flipping. The same
//! routine writes bytes (for tests and inspection) or normalised floats (for training) through
//! a per-channel lookup table, so there is a single code path to get right.

use rand::Rng;

use crate::error::DataError;
use crate::image::{CHANNELS, IMAGE_BYTES, PLANE, SIDE};

/// How training images are augmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AugmentConfig {
    /// Zero padding on each side before the 32×32 crop (4 in the ResNet paper); 0 disables it.
    pub pad: usize,
    /// Whether to mirror half of the images left to right.
    pub flip: bool,
}

impl Default for AugmentConfig {
    /// The ResNet paper's augmentation: pad 4, random crop, random horizontal flip.
    fn default() -> Self {
        AugmentConfig { pad: 4, flip: true }
    }
}

impl AugmentConfig {
    /// Checks that the crop can still overlap the image.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.pad >= SIDE {
            return Err(DataError::Config(format!(
                "padding {} must be below the image side {SIDE}",
                self.pad
            )));
        }
        Ok(())
    }

    /// Draws the transform of one image.
    pub fn sample(&self, rng: &mut impl Rng) -> Transform {
        let pad = self.pad as i32;
        Transform {
            dx: if pad > 0 {
                rng.random_range(-pad..=pad)
            } else {
                0
            },
            dy: if pad > 0 {
                rng.random_range(-pad..=pad)
            } else {
                0
            },
            flip: self.flip && rng.random_bool(0.5),
        }
    }
}

/// The augmentation applied to one image: output pixel `(y, x)` of the crop is source pixel
/// `(y + dy, x + dx)` (padding where that lies outside the image), and the crop is then mirrored
/// left to right when `flip` is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Transform {
    /// Horizontal shift of the crop window, within `-pad..=pad`.
    pub dx: i32,
    /// Vertical shift of the crop window, within `-pad..=pad`.
    pub dy: i32,
    /// Whether the crop is mirrored left to right.
    pub flip: bool,
}

impl Transform {
    /// Leaves the image unchanged (evaluation).
    pub const IDENTITY: Transform = Transform {
        dx: 0,
        dy: 0,
        flip: false,
    };
}

/// Applies `t` to one planar image, writing bytes; padding is 0 (black).
///
/// `src` and `out` must hold [`IMAGE_BYTES`](crate::IMAGE_BYTES) bytes each.
pub fn transform_bytes(src: &[u8], t: Transform, out: &mut [u8]) -> Result<(), DataError> {
    check_lengths(src.len(), out.len())?;
    let identity: [u8; 256] = std::array::from_fn(|v| v as u8);
    transform_mapped(src, t, out, &[identity; CHANNELS]);
    Ok(())
}

fn check_lengths(src: usize, out: usize) -> Result<(), DataError> {
    if src != IMAGE_BYTES || out != IMAGE_BYTES {
        return Err(DataError::Config(format!(
            "an image is {IMAGE_BYTES} values; got {src} in and {out} out"
        )));
    }
    Ok(())
}

/// Applies `t` to one planar image, mapping each byte through its channel's table; padding is
/// the table's value for byte 0, as if the image had been padded with black before mapping.
///
/// Callers guarantee `src.len() == out.len() == IMAGE_BYTES`.
pub(crate) fn transform_mapped<T: Copy>(
    src: &[u8],
    t: Transform,
    out: &mut [T],
    tables: &[[T; 256]; CHANNELS],
) {
    // i64: any i32 shift, however large, is just "all padding", never an overflow.
    let (side, dx, dy) = (SIDE as i64, i64::from(t.dx), i64::from(t.dy));
    // Columns of the crop that fall inside the source image.
    let x_lo = (-dx).clamp(0, side) as usize;
    let x_hi = (side - dx).clamp(0, side) as usize;
    for (c, table) in tables.iter().enumerate() {
        let pad = table[0];
        let plane = &src[c * PLANE..(c + 1) * PLANE];
        let out_plane = &mut out[c * PLANE..(c + 1) * PLANE];
        for (y, row) in out_plane.chunks_exact_mut(SIDE).enumerate() {
            let sy = y as i64 + dy;
            if !(0..side).contains(&sy) || x_lo >= x_hi {
                row.fill(pad);
                continue;
            }
            let src_row = &plane[sy as usize * SIDE..(sy as usize + 1) * SIDE];
            let sx_lo = (x_lo as i64 + dx) as usize;
            let visible = &src_row[sx_lo..sx_lo + (x_hi - x_lo)];
            if t.flip {
                // Crop column x lands at SIDE - 1 - x.
                row[SIDE - x_lo..].fill(pad);
                row[..SIDE - x_hi].fill(pad);
                for (dst, &v) in row[SIDE - x_hi..SIDE - x_lo].iter_mut().rev().zip(visible) {
                    *dst = table[usize::from(v)];
                }
            } else {
                row[..x_lo].fill(pad);
                row[x_hi..].fill(pad);
                for (dst, &v) in row[x_lo..x_hi].iter_mut().zip(visible) {
                    *dst = table[usize::from(v)];
                }
            }
        }
    }
}
