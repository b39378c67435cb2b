//! `train sweep`: every init × seed combination, one after another, restartable.

use std::path::PathBuf;

use anyhow::{Result, bail};
use kaiming_init::Scheme;

use crate::config::RunArgs;
use crate::run::{RunOptions, resume, train};
use crate::store::{RunStore, Slot};
use crate::summary::{Status, Summary};

/// Trains every combination not yet completed and returns the run folders, in order.
///
/// Each run is named by [`RunConfig::label`](crate::config::RunConfig::label), so running the
/// same command again finds the earlier runs: completed and diverged ones are kept, the others
/// continue from their latest checkpoint set.
pub fn sweep(
    inits: &[Scheme],
    seeds: &[u64],
    base: &RunArgs,
    options: &RunOptions,
) -> Result<Vec<PathBuf>> {
    let store = RunStore::new(&options.out);
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
            let name = config.label();
            let dir = store.path(&name);
            tracing::info!("sweep run {}/{total}: {name}", dirs.len() + 1);
            let summary: Summary = match store.slot(&name, &config) {
                Slot::Other => bail!(
                    "{} holds a run with other settings than this sweep's; use another --out",
                    dir.display()
                ),
                Slot::SameRun(Some(summary)) if summary.status == Status::Completed => {
                    tracing::info!("{name} is already completed; skipping");
                    *summary
                }
                Slot::SameRun(Some(summary)) if summary.status == Status::Diverged => {
                    tracing::info!("{name} diverged before; keeping that result");
                    *summary
                }
                Slot::SameRun(_) => resume(&dir, options)?,
                Slot::Free => {
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
