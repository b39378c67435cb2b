//! Conversion to burn's own `nn::Initializer`, where a scheme has an exact equivalent.

use burn::nn::Initializer;

use crate::error::NotExpressible;
use crate::fan::FanMode;
use crate::scheme::{Distribution, Scheme};

impl Scheme {
    /// burn's `Initializer` that draws this scheme's weights, for
    /// `Conv2dConfig::with_initializer` and friends.
    ///
    /// Two caveats come from burn, not from the conversion: burn runs the **bias** through the
    /// same initializer (this crate zeroes it for every scheme but `torch-default`), and for
    /// **grouped** convolutions burn's fan_out is `c_out/groups · k`, not PyTorch's `c_out · k`
    /// that [`crate::Fans`] uses. Use [`crate::InitPlan::apply`] to get exactly this crate's
    /// behaviour.
    ///
    /// # Errors
    /// [`NotExpressible`] for He with fan_avg and for truncated normals, which burn lacks.
    pub fn to_burn_initializer(&self) -> Result<Initializer, NotExpressible> {
        let check = |distribution| match distribution {
            Distribution::TruncatedNormal => Err(NotExpressible::TruncatedNormal),
            _ => Ok(distribution == Distribution::Normal),
        };
        Ok(match *self {
            Scheme::He {
                distribution,
                mode,
                nonlinearity,
            } => {
                let fan_out_only = match mode {
                    FanMode::FanIn => false,
                    FanMode::FanOut => true,
                    FanMode::FanAvg => return Err(NotExpressible::FanAvg),
                };
                kaiming(check(distribution)?, nonlinearity.gain(), fan_out_only)
            }
            Scheme::LeCun { distribution } => kaiming(check(distribution)?, 1.0, false),
            Scheme::Xavier {
                distribution,
                nonlinearity,
            } => {
                let gain = nonlinearity.gain();
                if check(distribution)? {
                    Initializer::XavierNormal { gain }
                } else {
                    Initializer::XavierUniform { gain }
                }
            }
            Scheme::Orthogonal { nonlinearity } => Initializer::Orthogonal {
                gain: nonlinearity.gain(),
            },
            // burn's KaimingUniform bound is gain·√(3/fan_in); gain 1/√3 gives 1/√fan_in.
            Scheme::TorchDefault => kaiming(false, 1.0 / 3f64.sqrt(), false),
            Scheme::Constant(value) => Initializer::Constant { value },
        })
    }
}

fn kaiming(normal: bool, gain: f64, fan_out_only: bool) -> Initializer {
    if normal {
        Initializer::KaimingNormal { gain, fan_out_only }
    } else {
        Initializer::KaimingUniform { gain, fan_out_only }
    }
}
