//! The CIFAR image layout and the two splits: the vocabulary every reader and transform shares,
//! kept apart from the dataset so the file readers do not depend on the type they fill.

/// Height and width of every image.
pub const SIDE: usize = 32;
/// Colour channels (red, green, blue).
pub const CHANNELS: usize = 3;
/// Pixels in one channel plane.
pub const PLANE: usize = SIDE * SIDE;
/// Bytes of one image: three planes, red then green then blue, each row by row.
pub const IMAGE_BYTES: usize = CHANNELS * PLANE;

/// Which half of the dataset to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The 50,000 training images.
    Train,
    /// The 10,000 test images.
    Test,
}
