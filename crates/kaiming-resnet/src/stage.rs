//! A stage: blocks of one width, the first of which may change resolution and channel count
//! (torchvision's `_make_layer`).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::Hook;
use crate::block::{Block, BlockConfig, BlockKind};
use crate::branch::Branch;
use crate::norm::Norm;
use crate::shortcut::ShortcutKind;

/// Settings of one stage.
#[derive(Config, Debug)]
pub struct StageConfig {
    /// Block kind of every block.
    pub kind: BlockKind,
    /// How many blocks.
    pub num_blocks: usize,
    /// Channels coming into the first block.
    pub in_channels: usize,
    /// Base width of every block.
    pub width: usize,
    /// Stride of the first block; the others keep the resolution.
    #[config(default = 1)]
    pub stride: usize,
    /// Normalisation after each convolution.
    #[config(default = "Norm::Batch")]
    pub norm: Norm,
    /// How the first block's shortcut crosses the change of shape.
    #[config(default = "ShortcutKind::B")]
    pub shortcut: ShortcutKind,
    /// With `false`, blocks without shortcuts: the plain twin.
    #[config(default = true)]
    pub residual: bool,
    /// How each block's residual branch joins its shortcut.
    #[config(default = "Branch::Standard")]
    pub branch: Branch,
}

impl StageConfig {
    /// Channels going out.
    pub fn out_channels(&self) -> usize {
        self.kind.out_channels(self.width)
    }

    /// The settings of block `index`: only the first one strides and changes the channel count.
    pub fn block(&self, index: usize) -> BlockConfig {
        let (in_channels, stride) = match index {
            0 => (self.in_channels, self.stride),
            _ => (self.out_channels(), 1),
        };
        BlockConfig::new(self.kind, in_channels, self.width)
            .with_stride(stride)
            .with_norm(self.norm)
            .with_shortcut(self.shortcut)
            .with_residual(self.residual)
            .with_branch(self.branch)
    }

    /// Builds the stage with burn's layer defaults; the model's initialisation plan replaces them.
    pub fn init(&self, device: &Device) -> Stage {
        Stage {
            blocks: (0..self.num_blocks)
                .map(|index| self.block(index).init(device))
                .collect(),
        }
    }
}

/// Blocks run in sequence.
#[derive(Module, Debug)]
pub struct Stage {
    /// The blocks, first to last.
    pub blocks: Vec<Block>,
}

impl Stage {
    /// Runs every block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.blocks.iter().fold(x, |x, block| block.forward(x))
    }

    /// Runs every block, passing each output through `hook` as `{prefix}.blocks.{index}`.
    pub fn forward_hooked(&self, x: Tensor<4>, prefix: &str, hook: &mut Hook<'_>) -> Tensor<4> {
        self.blocks.iter().enumerate().fold(x, |x, (index, block)| {
            hook(&format!("{prefix}.blocks.{index}"), block.forward(x))
        })
    }
}
