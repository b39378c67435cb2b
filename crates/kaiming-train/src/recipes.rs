//! The recipe the bare `train` command runs when it is given neither `--config` nor `--model`:
//! on a CPU, ResNet-20 to He et al. 2016's accuracy in under two hours
//! (`configs/resnet20-fast.toml`, compiled in so the command works from any folder); on a GPU,
//! the built-in defaults (ResNet-18, 30 epochs), which a CPU would take 8–17 hours over.

use std::path::Path;

use anyhow::Result;

use crate::config::RunArgs;

/// `configs/resnet20-fast.toml`.
pub const RESNET20_FAST: &str = include_str!("../../../configs/resnet20-fast.toml");

/// The settings a training command runs with — `flags` over the `--config` recipe, or over the
/// default recipe for its device — and one line saying which recipe that is, why, and how to
/// pick the other.
pub fn choose(flags: RunArgs, config: Option<&Path>) -> Result<(RunArgs, String)> {
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
        "recipe: resnet20-fast ({}: {} for {} epochs, about 2 hours on 2 CPU cores) because \
         this run computes on the CPU ({}), where the GPU default ({} for {} epochs) would take \
         8–17 hours; --model resnet18 runs that one, --config any other",
        path.display(),
        chosen.model.name,
        chosen.schedule.epochs,
        chosen.backend,
        defaults.model.name,
        defaults.schedule.epochs
    );
    Ok((fast, line))
}

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
