//! Learning-rate schedules as pure functions of the step.
//!
//! burn's schedulers are stateful iterators that must be stepped once per iteration and
//! restored from a record on resume, and they reject learning rates above 1. A pure
//! `lr(step)` makes a resumed run land on exactly the learning rate of an uninterrupted one, and
//! is what the paper recipes state ("divide by 10 at 32k and 48k iterations").

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The shape of the schedule after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// The base learning rate throughout.
    Constant,
    /// Cosine annealing from the base rate to zero at the last step (Loshchilov & Hutter 2017).
    Cosine,
    /// The base rate multiplied by `gamma` at each milestone (He et al. 2016: ÷10 twice).
    Multistep,
}

impl fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScheduleKind::Constant => "constant",
            ScheduleKind::Cosine => "cosine",
            ScheduleKind::Multistep => "multistep",
        })
    }
}

impl FromStr for ScheduleKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <Self as clap::ValueEnum>::from_str(s, false)
            .map_err(|_| format!("unknown schedule '{s}'; valid: constant, cosine, multistep"))
    }
}

/// A learning-rate schedule over a run of `total_steps` optimizer steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Peak learning rate.
    pub base_lr: f64,
    /// Shape after warm-up.
    pub kind: ScheduleKind,
    /// Steps at which a multistep schedule multiplies the rate by `gamma`, increasing.
    pub milestones: Vec<usize>,
    /// Factor applied at each milestone.
    pub gamma: f64,
    /// Steps of linear warm-up from `base_lr / warmup_steps` to `base_lr`.
    pub warmup_steps: usize,
    /// Length of the run, for cosine.
    pub total_steps: usize,
}

impl Schedule {
    /// `lr` at every step.
    pub fn constant(lr: f64) -> Self {
        Schedule {
            base_lr: lr,
            kind: ScheduleKind::Constant,
            milestones: Vec::new(),
            gamma: 1.0,
            warmup_steps: 0,
            total_steps: 0,
        }
    }

    /// Learning rate for the optimizer step with this 0-based index.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            ScheduleKind::Constant => self.base_lr,
            ScheduleKind::Multistep => {
                let passed = self.milestones.iter().filter(|&&m| step >= m).count();
                self.base_lr * self.gamma.powi(passed as i32)
            }
            ScheduleKind::Cosine => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                let progress = (step - self.warmup_steps) as f64 / span as f64;
                0.5 * self.base_lr * (1.0 + (PI * progress.min(1.0)).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind) -> Schedule {
        Schedule {
            base_lr: 0.1,
            kind,
            milestones: vec![32_000, 48_000],
            gamma: 0.1,
            warmup_steps: 0,
            total_steps: 64_000,
        }
    }

    #[test]
    fn multistep_divides_by_ten_at_each_milestone() {
        let s = schedule(ScheduleKind::Multistep);
        assert_eq!(s.lr(0), 0.1);
        assert_eq!(s.lr(31_999), 0.1);
        assert!((s.lr(32_000) - 0.01).abs() < 1e-15);
        assert!((s.lr(48_000) - 0.001).abs() < 1e-15);
    }

    #[test]
    fn cosine_falls_from_base_to_zero() {
        let s = schedule(ScheduleKind::Cosine);
        assert_eq!(s.lr(0), 0.1);
        assert!((s.lr(32_000) - 0.05).abs() < 1e-12);
        assert!(s.lr(63_999) < 1e-9);
    }

    #[test]
    fn warmup_rises_linearly_then_hands_over() {
        let s = Schedule {
            warmup_steps: 10,
            ..schedule(ScheduleKind::Constant)
        };
        assert!((s.lr(0) - 0.01).abs() < 1e-15);
        assert!((s.lr(4) - 0.05).abs() < 1e-15);
        assert_eq!(s.lr(9), 0.1);
        assert_eq!(s.lr(10), 0.1);
    }
}
