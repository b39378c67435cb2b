//! `train sweep`: a grid over any settings × seeds, restartable, one run after another — or a
//! fixed share of them (`--shard K/N`, one job of a cluster's array), or several at once
//! (`--parallel`, one process per share).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Result, bail};

use crate::config::{RunArgs, RunConfig, setting};
use crate::run::{RunOptions, resume, train};
use crate::settings::Setting;
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

/// One axis of a grid: a setting and the values it takes, as `--grid model.depth=8,14,20` gives
/// them (each checked as the setting's flag would be).
#[derive(Debug, Clone)]
pub struct Axis {
    /// The setting varied.
    pub setting: &'static Setting,
    /// Its values, in the order given.
    pub values: Vec<String>,
}

impl Axis {
    /// Refuses a value given twice, compared as parsed (0.1 and 1e-1 are one value): a grid
    /// that named a run twice would list its folder twice and count it as two seeds.
    fn refuse_duplicates(&self) -> Result<()> {
        let mut parsed: Vec<(toml::Value, &str)> = Vec::new();
        for value in &self.values {
            let value_parsed = self
                .setting
                .parse(value)
                .map_err(|error| anyhow::anyhow!("{}={value}: {error}", self.setting.key))?;
            if let Some((_, first)) = parsed.iter().find(|(v, _)| *v == value_parsed) {
                bail!(
                    "--grid {}: {first} and {value} are the same value; give each once",
                    self.setting.key
                );
            }
            parsed.push((value_parsed, value));
        }
        Ok(())
    }
}

impl FromStr for Axis {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (key, values) = text
            .split_once('=')
            .ok_or_else(|| format!("'{text}' is not KEY=V1,V2,… (e.g. model.depth=8,14,20)"))?;
        let setting = setting(key.trim()).map_err(|error| error.to_string())?;
        let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
        for value in &values {
            if value.is_empty() {
                return Err(format!("{text}: an empty value in the list"));
            }
            setting
                .parse(value)
                .map_err(|error| format!("{}={value}: {error}", setting.key))?;
        }
        Ok(Axis { setting, values })
    }
}

/// One run of a sweep: its folder name and its settings.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    /// The run folder's name: the model, the init, every other varied value, the seed
    /// (`plaincnn-xavier-depth32-s1`), so that running the same sweep again finds it.
    pub name: String,
    /// Its settings.
    pub config: RunConfig,
}

/// Refuses flags that a sweep would silently override: `--seed` (the sweep's seeds are
/// `--seeds`) and a flag or `--set` of a setting that a `--grid` (or `--inits`) also varies.
pub fn refuse_overridden_flags(axes: &[Axis], flags: &RunArgs) -> Result<()> {
    if flags.is_given("seed") {
        bail!("train sweep takes its seeds from --seeds, not --seed");
    }
    for axis in axes {
        if flags.is_given(axis.setting.key) {
            bail!(
                "--{} and --grid {}=… both set {}; give it once",
                axis.setting.flag,
                axis.setting.key,
                axis.setting.key
            );
        }
    }
    Ok(())
}

/// The sweep's runs in their fixed order: the cartesian product of the axes, the first axis
/// outermost, and every seed within each cell.
pub fn plan(axes: &[Axis], seeds: &[u64], base: &RunArgs) -> Result<Vec<PlannedRun>> {
    let mut keys: Vec<&str> = axes.iter().map(|axis| axis.setting.key).collect();
    keys.sort_unstable();
    if let Some(pair) = keys.windows(2).find(|pair| pair[0] == pair[1]) {
        bail!("--grid names {} twice", pair[0]);
    }
    for axis in axes {
        axis.refuse_duplicates()?;
    }
    if keys.contains(&"seed") {
        bail!("--grid seed=…: give the seeds with --seeds");
    }
    if let Some(seed) = seeds
        .iter()
        .enumerate()
        .find_map(|(i, seed)| seeds[..i].contains(seed).then_some(seed))
    {
        bail!("--seeds names {seed} twice; give each seed once");
    }
    let mut cells: Vec<Vec<(&Axis, &str)>> = vec![Vec::new()];
    for axis in axes {
        cells = cells
            .into_iter()
            .flat_map(|cell| {
                axis.values.iter().map(move |value| {
                    let mut cell = cell.clone();
                    cell.push((axis, value.as_str()));
                    cell
                })
            })
            .collect();
    }
    let mut runs = Vec::new();
    for cell in cells {
        for &seed in seeds {
            let mut args = RunArgs::default();
            for &(axis, value) in &cell {
                args.set(axis.setting.key, value)?;
            }
            args.set("seed", &seed.to_string())?;
            let config = args.or(base.clone()).resolve()?;
            let varied = cell
                .iter()
                .filter(|(axis, _)| !matches!(axis.setting.key, "model.name" | "init"))
                .map(|(axis, value)| format!("{}{value}", axis.setting.name()));
            let name = [config.model.name.to_string(), config.init.to_string()]
                .into_iter()
                .chain(varied)
                .chain([format!("s{seed}")])
                .collect::<Vec<_>>()
                .join("-")
                .replace(
                    |c: char| !(c.is_ascii_alphanumeric() || "-._".contains(c)),
                    "_",
                );
            runs.push(PlannedRun { name, config });
        }
    }
    Ok(runs)
}

/// The run folders of a sweep's runs, in order.
pub fn run_dirs(runs: &[PlannedRun], options: &RunOptions) -> Vec<PathBuf> {
    let store = RunStore::new(&options.out);
    runs.iter().map(|run| store.path(&run.name)).collect()
}

/// The folders of a sweep's runs that have ended (any status but running), in order: what a
/// share of a sharded sweep compares at its end, so that the table it writes into the shared
/// folder is the whole sweep's as far as it has run — not its own share's, which the last share
/// to finish would leave as the sweep's table.
pub fn ended_run_dirs(runs: &[PlannedRun], options: &RunOptions) -> Vec<PathBuf> {
    run_dirs(runs, options)
        .into_iter()
        .filter(|dir| {
            Summary::read(&crate::store::RunFiles::new(dir).summary())
                .is_ok_and(|summary| summary.status != Status::Running)
        })
        .collect()
}

/// The run list as `--dry-run` prints it: position, name, folder, and the status of the runs
/// already there.
pub fn dry_run(runs: &[PlannedRun], options: &RunOptions) -> String {
    let store = RunStore::new(&options.out);
    let mut text = String::new();
    for (position, run) in runs.iter().enumerate() {
        let status = match store.slot(&run.name, &run.config) {
            Slot::Free => "to run".to_string(),
            Slot::SameRun(Some(summary)) => summary.status.to_string(),
            Slot::SameRun(None) => "started".to_string(),
            Slot::Other => "folder holds other settings".to_string(),
        };
        text.push_str(&format!(
            "{:>4}  {}  {}  ({status})\n",
            position + 1,
            run.name,
            store.path(&run.name).display()
        ));
    }
    text.push_str(&format!("{} runs\n", runs.len()));
    text
}

/// Trains every run of `runs` (of `shard`, if given) not yet completed, and returns their
/// folders, in order.
///
/// Each run is named by its settings ([`PlannedRun::name`]), so running the same command again
/// finds the earlier runs: completed and diverged ones are kept, the others continue from their latest
/// checkpoint set. A run another process is training is refused by its lock.
pub fn sweep(
    runs: &[PlannedRun],
    shard: Option<Shard>,
    options: &RunOptions,
) -> Result<Vec<PathBuf>> {
    let store = RunStore::new(&options.out);
    let mine: Vec<&PlannedRun> = runs
        .iter()
        .enumerate()
        .filter(|(i, _)| shard.is_none_or(|s| i % s.count == s.index))
        .map(|(_, run)| run)
        .collect();
    let total = mine.len();
    let mut dirs = Vec::new();
    for PlannedRun { name, config } in mine {
        let name = name.clone();
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

    fn axis(text: &str) -> Axis {
        text.parse().unwrap()
    }

    #[test]
    fn a_grid_is_the_product_of_its_axes_in_order_with_seeds_innermost() {
        let mut base = RunArgs::default();
        base.set("model.name", "plaincnn").unwrap();
        let axes = [axis("model.depth=8,14"), axis("init=he,xavier")];
        let runs = plan(&axes, &[0, 1], &base).unwrap();
        let names: Vec<&str> = runs.iter().map(|run| run.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "plaincnn-he-depth8-s0",
                "plaincnn-he-depth8-s1",
                "plaincnn-xavier-depth8-s0",
                "plaincnn-xavier-depth8-s1",
                "plaincnn-he-depth14-s0",
                "plaincnn-he-depth14-s1",
                "plaincnn-xavier-depth14-s0",
                "plaincnn-xavier-depth14-s1",
            ]
        );
        assert_eq!(runs[5].config.model.depth, 14);
        assert_eq!(runs[5].config.seed, 1);
        assert_eq!(runs[2].config.init.to_string(), "xavier");
        // The model and init alone name a run as a single run's label does.
        let models = plan(
            &[axis("model.name=plain8,plain14")],
            &[3],
            &RunArgs::default(),
        )
        .unwrap();
        assert_eq!(models[1].name, models[1].config.label());
    }

    #[test]
    fn grid_axes_are_checked_as_they_are_parsed() {
        for (bad, expected) in [
            ("model.depht=8", "did you mean 'model.depth'"),
            ("model.depth=8,x", "model.depth=x"),
            ("model.depth", "is not KEY=V1,V2"),
        ] {
            let error = bad.parse::<Axis>().unwrap_err();
            assert!(error.contains(expected), "{bad}: {error}");
        }
        let twice = [axis("init=he"), axis("init=xavier")];
        assert!(plan(&twice, &[0], &RunArgs::default()).is_err());
        assert!(plan(&[axis("seed=1")], &[0], &RunArgs::default()).is_err());
    }

    #[test]
    fn shares_parse() {
        assert_eq!("1/4".parse(), Ok(Shard { index: 1, count: 4 }));
        for bad in ["4/4", "1/0", "-1/2", "a/b", "3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
