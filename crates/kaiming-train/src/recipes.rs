//! The recipe the bare `train` command runs when it is given neither `--config` nor `--model`:
//! on a CPU, ResNet-20 to He et al. 2016's accuracy in under two hours
//! (`configs/resnet20-fast.toml`, compiled in so the command works from any folder); on a GPU,
//! the built-in defaults (ResNet-18, 30 epochs), which a CPU would take far longer over. The
//! line that says so estimates both from what will actually run.

use std::path::Path;

use anyhow::Result;

use kaiming_resnet::{ModelConfig, ModelName};

use crate::config::{RunArgs, RunConfig};

/// `configs/resnet20-fast.toml`.
pub const RESNET20_FAST: &str = include_str!("../../../configs/resnet20-fast.toml");

/// The settings a training command runs with — `flags` over the `--config` recipe, or over the
/// default recipe for its device — and one line saying which recipe that is, why, and how to
/// pick the other.
pub fn choose(flags: RunArgs, config: Option<&Path>) -> Result<(RunArgs, String)> {
    let (args, line) = choose_recipe(flags.clone(), config)?;
    // Depth and width shape plaincnn alone; the other models name their depth (`resnet56`,
    // `plain56`), so a --depth beside them would be silently ignored.
    let model = args.clone().merged()?.model.name;
    if model != ModelName::PlainCnn
        && (flags.is_given("model.depth") || flags.is_given("model.width"))
    {
        anyhow::bail!(
            "--depth and --width shape --model plaincnn only; {model} has its own (for another \
             depth name it: resnet56, plain56, resnet110 …)"
        );
    }
    Ok((args, line))
}

fn choose_recipe(flags: RunArgs, config: Option<&Path>) -> Result<(RunArgs, String)> {
    if let Some(path) = config {
        let args = flags.or(RunArgs::from_file(path)?);
        return Ok((
            args,
            format!("recipe: {} (flags win over it)", path.display()),
        ));
    }
    if flags.is_given("model.name") {
        let line = "recipe: the built-in defaults under the flags given (train --help lists them)";
        return Ok((flags, line.to_string()));
    }
    let defaults = flags.clone().merged()?;
    if defaults.backend.is_gpu() {
        let line = format!(
            "recipe: {} for {} epochs, the default on a GPU ({}); on a CPU the default is \
             resnet20-fast (--backend flex), and --config picks any other",
            defaults.model.name, defaults.schedule.epochs, defaults.backend
        );
        return Ok((flags, line));
    }
    let path = Path::new("configs/resnet20-fast.toml");
    let fast = flags.or(RunArgs::from_toml(RESNET20_FAST, path)?);
    let chosen = fast.clone().merged()?;
    let line = format!(
        "recipe: resnet20-fast ({}: {} for {} epochs, {}) because this run computes on the CPU \
         ({}), where the GPU default ({} for {} epochs) would take {}; --model resnet18 runs \
         that one, --config any other",
        path.display(),
        chosen.model.name,
        chosen.schedule.epochs,
        cpu_estimate(&chosen),
        chosen.backend,
        defaults.model.name,
        defaults.schedule.epochs,
        cpu_estimate(&defaults)
    );
    Ok((fast, line))
}

/// Seconds per training image and epoch of ResNet-20 on the project's 2-core CPU, evaluation
/// included: experiment 9 trained 45 epochs of 50,000 images in 6,669 s.
const RESNET20_SECONDS_PER_IMAGE: f64 = 6669.0 / (45.0 * 50_000.0);

/// "about N hours on 2 CPU cores" for the run `config` describes: experiment 9's pace, scaled by
/// the model's multiply-adds and the images and epochs this run will train.
fn cpu_estimate(config: &RunConfig) -> String {
    let resnet20 = ModelConfig::new(ModelName::CifarResNet(20))
        .complexity([32, 32])
        .macs;
    let macs = config.model_config().complexity([32, 32]).macs;
    let images = config
        .data
        .train_limit
        .unwrap_or(usize::MAX)
        .min(TRAIN_IMAGES.saturating_sub(config.data.val_split));
    let seconds = RESNET20_SECONDS_PER_IMAGE
        * (macs as f64 / resnet20 as f64)
        * images as f64
        * config.schedule.epochs as f64;
    let minutes = (seconds / 60.0).round();
    let time = if minutes <= 1.0 {
        "a minute".to_string()
    } else if minutes < 90.0 {
        format!("{minutes} minutes")
    } else {
        format!("{} hours", (seconds / 3600.0).round())
    };
    format!("about {time} on 2 CPU cores")
}

/// CIFAR-10's training images.
const TRAIN_IMAGES: usize = 50_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(pairs: &[(&str, &str)]) -> RunArgs {
        let mut args = RunArgs::default();
        for (key, value) in pairs {
            args.set(key, value).unwrap();
        }
        args
    }

    #[test]
    fn a_cpu_run_without_model_or_recipe_gets_resnet20_fast_under_its_flags() {
        let (args, line) = choose(flags(&[("init", "xavier"), ("seed", "3")]), None).unwrap();
        let config = args.resolve().unwrap();
        assert_eq!(config.model.name.to_string(), "resnet20");
        assert_eq!(config.init.to_string(), "xavier");
        assert_eq!(config.seed, 3);
        assert_eq!(config.loss.label_smoothing, 0.1);
        assert!(line.starts_with("recipe: resnet20-fast"), "{line}");
        assert!(line.contains("--model resnet18"), "{line}");
        assert!(line.contains("45 epochs, about 2 hours"), "{line}");
        // ResNet-18 (CIFAR stem) has 13.7 times ResNet-20's multiply-adds.
        assert!(
            line.contains("(resnet18 for 30 epochs) would take about 17 hours"),
            "{line}"
        );
    }

    /// The estimate follows the epochs and images that will run, not the recipe's.
    #[test]
    fn the_estimate_is_of_what_will_run() {
        let (_, line) = choose(flags(&[("schedule.epochs", "1")]), None).unwrap();
        assert!(line.contains("1 epochs, about 2 minutes"), "{line}");
        let (_, line) = choose(
            flags(&[("schedule.epochs", "2"), ("data.train_limit", "5000")]),
            None,
        )
        .unwrap();
        assert!(line.contains("2 epochs, about a minute"), "{line}");
        assert!(
            line.contains("(resnet18 for 2 epochs) would take about 7 minutes"),
            "{line}"
        );
    }

    #[test]
    fn a_model_given_or_a_gpu_keeps_the_defaults() {
        let (args, line) = choose(flags(&[("model.name", "resnet56")]), None).unwrap();
        assert_eq!(args.resolve().unwrap().schedule.epochs, 30);
        assert!(line.contains("built-in defaults"), "{line}");
        // Set as a recipe would: the flag refuses a backend this build lacks.
        let mut gpu = RunArgs::default();
        gpu.insert("backend", toml::Value::String("cuda".into()));
        let (args, line) = choose(gpu.clone(), None).unwrap();
        assert_eq!(args, gpu);
        assert!(
            line.contains("resnet18 for 30 epochs, the default on a GPU"),
            "{line}"
        );
    }
}
