//! `train sweep`: every init × seed combination, restartable, one after another — or a fixed
//! share of them (`--shard K/N`, one job of a cluster's array), or several at once (`--parallel`,
//! one process per share).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Result, bail};
use kaiming_init::Scheme;

use crate::config::{RunArgs, RunConfig};
use crate::run::{RunOptions, resume, train};
use crate::store::{RunStore, Slot};
use crate::summary::{Status, Summary};

/// Share `index` of `count` of a sweep's run list: the runs whose position modulo `count` is
/// `index`, so every share is the same on every machine given the same arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based share.
    pub index: usize,
    /// Shares in all.
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = s
            .split_once('/')
            .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if count > 0 && index < count => Ok(Shard { index, count }),
            _ => Err(format!(
                "'{s}' is not a share K/N with 0 ≤ K < N (e.g. 0/4, or $SLURM_ARRAY_TASK_ID/4)"
            )),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The sweep's runs in their fixed order: every init, then every seed within it.
pub fn plan(inits: &[Scheme], seeds: &[u64], base: &RunArgs) -> Result<Vec<RunConfig>> {
    let mut runs = Vec::new();
    for &init in inits {
        for &seed in seeds {
            runs.push(
                RunArgs {
                    init: Some(init),
                    seed: Some(seed),
                    ..base.clone()
                }
                .resolve()?,
            );
        }
    }
    Ok(runs)
}

/// The run folders of a sweep's runs, in order.
pub fn run_dirs(runs: &[RunConfig], options: &RunOptions) -> Vec<PathBuf> {
    let store = RunStore::new(&options.out);
    runs.iter().map(|run| store.path(&run.label())).collect()
}

/// Trains every run of `runs` (of `shard`, if given) not yet completed, and returns their
/// folders, in order.
///
/// Each run is named by [`RunConfig::label`], so running the same command again finds the
/// earlier runs: completed and diverged ones are kept, the others continue from their latest
/// checkpoint set. A run another process is training is refused by its lock.
pub fn sweep(
    runs: &[RunConfig],
    shard: Option<Shard>,
    options: &RunOptions,
) -> Result<Vec<PathBuf>> {
    let store = RunStore::new(&options.out);
    let mine: Vec<&RunConfig> = runs
        .iter()
        .enumerate()
        .filter(|(i, _)| shard.is_none_or(|s| i % s.count == s.index))
        .map(|(_, run)| run)
        .collect();
    let total = mine.len();
    let mut dirs = Vec::new();
    for config in mine {
        let name = config.label();
        let dir = store.path(&name);
        match shard {
            Some(shard) => tracing::info!("shard {shard}, run {}/{total}: {name}", dirs.len() + 1),
            None => tracing::info!("sweep run {}/{total}: {name}", dirs.len() + 1),
        }
        let summary: Summary = match store.slot(&name, config) {
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
                train(config.clone(), &options)?
            }
        };
        let stop = summary.status == Status::Interrupted;
        dirs.push(dir);
        if stop {
            bail!("sweep interrupted; run the same command again to continue");
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_parse() {
        assert_eq!("1/4".parse(), Ok(Shard { index: 1, count: 4 }));
        for bad in ["4/4", "1/0", "-1/2", "a/b", "3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
