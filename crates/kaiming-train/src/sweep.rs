//! `train sweep`: every init × seed combination, one after another, restartable.

use std::path::PathBuf;

use anyhow::{Result, bail};
use kaiming_init::Scheme;

use crate::config::{RunArgs, RunConfig};
use crate::run::{RunOptions, resume, train};
use crate::summary::{Status, Summary};

/// The run folder name a sweep gives one combination: `<model>-<init>-s<seed>`, stable so a
/// restarted sweep finds its earlier runs.
pub fn run_name(config: &RunConfig) -> String {
    let init = config.init.to_string().replace([':', '(', ')'], "_");
    format!("{}-{init}-s{}", config.model, config.seed)
}

/// Trains every combination not yet completed and returns the run folders, in order.
pub fn sweep(
    inits: &[Scheme],
    seeds: &[u64],
    base: &RunArgs,
    options: &RunOptions,
) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    let total = inits.len() * seeds.len();
    for &init in inits {
        for &seed in seeds {
            let config = RunArgs {
                init: Some(init),
                seed: Some(seed),
                ..base.clone()
            }
            .resolve()?;
            let name = run_name(&config);
            let dir = options.out.join(&name);
            tracing::info!("sweep run {}/{total}: {name}", dirs.len() + 1);
            let existing = Summary::read(&dir.join("summary.json")).ok();
            let same_config = std::fs::read_to_string(dir.join("config.toml"))
                .ok()
                .and_then(|text| toml::from_str::<RunConfig>(&text).ok())
                .is_some_and(|saved| saved == config);
            let summary = match existing {
                Some(_) if !same_config => bail!(
                    "{} holds a run with other settings than this sweep's; use another --out",
                    dir.display()
                ),
                Some(summary) if summary.status == Status::Completed => {
                    tracing::info!("{name} is already completed; skipping");
                    summary
                }
                Some(summary) if summary.status == Status::Diverged => {
                    tracing::info!("{name} diverged before; keeping that result");
                    summary
                }
                Some(_) if dir.join("checkpoint/latest-progress.json").exists() => {
                    resume(&dir, options)?
                }
                _ => {
                    if dir.exists() {
                        // A run that died before its first checkpoint: start it again.
                        std::fs::remove_dir_all(&dir)?;
                    }
                    let options = RunOptions {
                        name: Some(name),
                        ..options.clone()
                    };
                    train(config, &options)?
                }
            };
            let stop = summary.status == Status::Interrupted;
            dirs.push(dir);
            if stop {
                bail!("sweep interrupted; run the same command again to continue");
            }
        }
    }
    Ok(dirs)
}
