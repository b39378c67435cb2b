//! The CIFAR-10 ResNets of He et al. 2016, §4.2: a 3×3 stem of 16 filters, three stages of `n`
//! basic blocks with 16, 32 and 64 filters on 32×32, 16×16 and 8×8 maps, global average pooling
//! and a 10-way classifier: `6n + 2` weight layers.

use crate::block::BlockKind;
use crate::error::ModelError;
use crate::resnet::ResNetConfig;
use crate::shortcut::ShortcutKind;
use crate::stem::StemKind;

impl ResNetConfig {
    /// The depths the paper reports (n = 3, 5, 7, 9, 18, 200).
    pub const CIFAR_DEPTHS: [usize; 6] = [20, 32, 44, 56, 110, 1202];
    /// Filters per stage.
    pub const CIFAR_WIDTHS: [usize; 3] = [16, 32, 64];

    /// The CIFAR ResNet of `depth = 6n + 2` (any n ≥ 1), with the paper's option A shortcuts and
    /// 10 classes.
    pub fn cifar(depth: usize) -> Result<Self, ModelError> {
        if depth < 8 || !(depth - 2).is_multiple_of(6) {
            return Err(ModelError::BadDepth {
                family: "CIFAR ResNet",
                depth,
                valid: "6n + 2 for n ≥ 1, e.g. 20, 32, 44, 56, 110, 1202".to_string(),
            });
        }
        let n = (depth - 2) / 6;
        Ok(
            Self::new(BlockKind::Basic, vec![n; 3], Self::CIFAR_WIDTHS.to_vec())
                .with_stem(StemKind::Cifar)
                .with_shortcut(ShortcutKind::A)
                .with_num_classes(10),
        )
    }
}
