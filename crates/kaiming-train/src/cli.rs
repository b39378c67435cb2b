//! The command line of the `train` binary.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use kaiming_init::Scheme;
use kaiming_resnet::{Branch, ModelName, Norm, StemKind};

use crate::backend::Backend;
use crate::checkpoint::CheckpointEvery;
use crate::config::{RunArgs, setting, settings};
use crate::precision::Precision;
use crate::settings::Setting;
use crate::sweep::{Axis, Shard};
use crate::weights::Which;

/// Train CIFAR-10 ResNets per init scheme, log loss curves, compare runs, probe signal
/// propagation at init.
///
/// Without a subcommand, trains one run: `train --init he`, then `train --init xavier`, then
/// `train compare runs/*`.
#[derive(Debug, Parser)]
#[command(
    name = "train",
    version,
    args_conflicts_with_subcommands = true,
    allow_negative_numbers = true
)]
pub struct Cli {
    /// What to do besides training one run.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Training settings.
    #[command(flatten)]
    pub run: RunArgs,
    /// Where the run goes.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Settings of a training invocation that do not change its results.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Run folder and checkpoints")]
pub struct OutputArgs {
    /// TOML recipe with any of the run settings (flags win), e.g. configs/resnet20-he2016.toml
    #[arg(long, global = false)]
    pub config: Option<PathBuf>,
    /// Folder that receives run folders
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Run folder name [default: <model>-<init>-s<seed>-<UTC time>]
    #[arg(long)]
    pub name: Option<String>,
    /// Continue the run in this folder from its latest checkpoint set, with the settings of its
    /// config.toml (only --data-dir may be given, where the data has moved)
    #[arg(long, conflicts_with_all = ["config", "name"])]
    pub resume: Option<PathBuf>,
    /// Stop cleanly after N epochs of this invocation (status interrupted; continue with
    /// --resume)
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Never download CIFAR-10; fail if it is not found
    #[arg(long)]
    pub no_download: bool,
    /// No progress bar
    #[arg(long, short)]
    pub quiet: bool,
    /// GPU to use: index among the backend's adapters [default: the backend's default adapter;
    /// for wgpu CUBECL_WGPU_DEFAULT_DEVICE, e.g. DiscreteGpu(1), overrides it]
    #[arg(long)]
    pub device: Option<usize>,
    /// Data-parallel GPUs: split every batch across these adapters, e.g. 0,1 (sets --replicas
    /// to their number)
    #[arg(long, value_delimiter = ',', conflicts_with = "device")]
    pub devices: Option<Vec<usize>>,
    /// Checkpoints during an epoch too: every N steps (500) or every so long (10m, 90s), besides
    /// the one at the end of every epoch
    #[arg(long, default_value_t = CheckpointEvery::default())]
    pub checkpoint_every: CheckpointEvery,
    /// Checkpoint sets to keep: the newest N, and the best one besides
    #[arg(long, default_value_t = 2)]
    pub keep_checkpoints: usize,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a grid of settings × seeds one after another (skipping completed runs), then compare
    /// them
    Sweep(Box<SweepArgs>),
    /// Table and plots (SVG, PNG) of training loss and test accuracy per init scheme, and a
    /// pivot table and heatmap over the settings that vary (a grid sweep's axes)
    Compare(CompareArgs),
    /// Per-layer activation and gradient std at initialisation, per scheme
    Probe(ProbeArgs),
    /// The signal monitor of runs: every quantity per layer over training (SVG, PNG) and the
    /// diagnoses
    Monitor(MonitorArgs),
    /// Loss and accuracy on the CIFAR-10 test split of a run's checkpoint or of a weights file
    /// (torchvision's, or a `train export`)
    Eval(EvalArgs),
    /// A run's trained model as a .safetensors file with torchvision's names, for PyTorch
    Export(ExportArgs),
    /// Every model with its parameter count and forward multiply-adds per image
    Models(ModelsArgs),
    /// Where CIFAR-10 was found, images per class, channel statistics, checksums, sample grid
    Data(DataReportArgs),
    /// Training throughput per model on real CIFAR-10 batches: images/s, GFLOP/s, peak memory,
    /// and the time split between data, forward, backward and optimizer
    Bench(BenchArgs),
}

/// `train bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Models, comma-separated, each measured on its own
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "resnet20,resnet18,resnet50"
    )]
    pub models: Vec<ModelName>,
    /// Images per step
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Timed steps per model (the median is reported)
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps before them
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Compute backend
    #[arg(long, default_value = "flex")]
    pub backend: Backend,
    /// GPU to use: index among the backend's adapters [default: the backend's default adapter;
    /// for wgpu CUBECL_WGPU_DEFAULT_DEVICE, e.g. DiscreteGpu(1), overrides it]
    #[arg(long)]
    pub device: Option<usize>,
    /// Arithmetic: f32, f16, bf16
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// CPU threads of the compute pool [default: RAYON_NUM_THREADS, else every core]
    #[arg(long)]
    pub threads: Option<usize>,
    /// CIFAR-10 folder [default: search as for training]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Also append one JSON object per model to this file
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Ignored: `cargo bench` passes it to the benchmark harness
    #[arg(long, hide = true)]
    pub bench: bool,
}

/// `train sweep`.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct SweepArgs {
    /// A setting and its values, by config.toml name, e.g. --grid model.depth=8,14,20 --grid
    /// init=he,xavier: the sweep runs every combination (the first --grid outermost), each with
    /// every seed
    #[arg(long, value_name = "KEY=V1,V2,…")]
    pub grid: Vec<Axis>,
    /// Init schemes to run, comma-separated: short for --grid init=…
    #[arg(long, value_delimiter = ',')]
    pub inits: Vec<Scheme>,
    /// Seeds to run, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub seeds: Vec<u64>,
    /// List the runs and their folders (with the status of those that exist), train nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Run only share K of N of the run list (runs whose position modulo N is K): the same share
    /// on every machine for the same arguments, so a cluster's job array runs the sweep, e.g.
    /// --shard $SLURM_ARRAY_TASK_ID/4; the shares may write into one shared --out at once
    #[arg(long, value_name = "K/N", conflicts_with = "parallel")]
    pub shard: Option<Shard>,
    /// Run K runs at once, one process per share of the run list; with --devices each on its
    /// own GPU, on a CPU the K processes share the cores (each runs slower)
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = at_least_one)]
    pub parallel: usize,
    /// GPUs for --parallel, one per process in turn, e.g. 0,1,2,3 [default: the backend's
    /// default adapter for all]
    #[arg(long, value_delimiter = ',', conflicts_with = "device")]
    pub devices: Option<Vec<usize>>,
    /// Run settings shared by every run
    #[command(flatten)]
    pub run: RunArgs,
    /// Recipe (flags win), folder and switches as for a single run
    #[command(flatten)]
    pub output: SweepOutputArgs,
}

/// A count of 1 or more.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(error) => Err(error.to_string()),
    }
}

impl SweepArgs {
    /// The grid's axes: every --grid, then --inits.
    pub fn axes(&self) -> Vec<Axis> {
        let mut axes = self.grid.clone();
        if !self.inits.is_empty() {
            let values = self.inits.iter().map(ToString::to_string).collect();
            let setting = setting("init").expect("init is a setting");
            axes.push(Axis { setting, values });
        }
        axes
    }
}

/// Output settings of `train sweep`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Run folders and checkpoints")]
pub struct SweepOutputArgs {
    /// TOML recipe with any of the run settings (flags win)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Folder that receives the run folders and the comparison
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Never download CIFAR-10
    #[arg(long)]
    pub no_download: bool,
    /// No progress bar
    #[arg(long, short)]
    pub quiet: bool,
    /// GPU to use: index among the backend's adapters [default: the backend's default adapter;
    /// for wgpu CUBECL_WGPU_DEFAULT_DEVICE, e.g. DiscreteGpu(1), overrides it]
    #[arg(long)]
    pub device: Option<usize>,
    /// Checkpoints during an epoch too: every N steps or every so long, as for a single run
    #[arg(long, default_value_t = CheckpointEvery::default())]
    pub checkpoint_every: CheckpointEvery,
    /// Checkpoint sets to keep per run: the newest N, and the best one besides
    #[arg(long, default_value_t = 2)]
    pub keep_checkpoints: usize,
}

/// `train compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Run folders (each with summary.json and metrics.csv), or folders of run folders (a
    /// sweep's --out, shared by its shards)
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Folder for comparison.{csv,md,svg,png} and, where settings vary, pivot.{csv,md} and
    /// heatmap.{svg,png} [default: the folder of runs
    /// given, else the runs' parent]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Settings down the pivot table and heatmap, by config.toml name, e.g. model.name
    /// [default: the settings that vary between the runs, but the init]
    #[arg(long, value_delimiter = ',', value_name = "KEYS")]
    pub rows: Vec<String>,
    /// Settings across the pivot, e.g. init [default: init, where it varies]
    #[arg(long, value_delimiter = ',', value_name = "KEYS")]
    pub cols: Vec<String>,
}

/// `train monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Run folders, each with monitor.csv (written by runs with --monitor-every > 0)
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
}

/// `train eval`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["run", "weights"])))]
pub struct EvalArgs {
    /// A run folder: its checkpoint is evaluated, normalised as the run was
    #[arg(conflicts_with_all = ["weights", "model"])]
    pub run: Option<PathBuf>,
    /// Which checkpoint set of the run
    #[arg(long, value_enum, default_value = "best")]
    pub checkpoint: Which,
    /// A weights file (.pth or .safetensors) instead of a run; the class count comes from its
    /// classifier
    #[arg(long, value_name = "FILE", requires = "model")]
    pub weights: Option<PathBuf>,
    /// The architecture of --weights: resnet18…resnet152, resnet20…, …
    #[arg(long)]
    pub model: Option<ModelName>,
    /// Stem of --model: cifar or imagenet
    #[arg(long, default_value = "cifar")]
    pub stem: StemKind,
    /// Normalisation of --model: batch or none
    #[arg(long, default_value = "batch")]
    pub norm: Norm,
    /// Residual branches of --model: standard, skipinit or fixup
    #[arg(long, default_value = "standard")]
    pub residual: Branch,
    /// Weight layers of --model plaincnn
    #[arg(long, default_value_t = 30)]
    pub depth: usize,
    /// First-stage width of --model plaincnn
    #[arg(long, default_value_t = 16)]
    pub width: usize,
    /// The first N test images only
    #[arg(long)]
    pub eval_limit: Option<usize>,
    /// CIFAR-10 folder [default: search as for training]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Compute backend
    #[arg(long, default_value = "flex")]
    pub backend: Backend,
    /// GPU to use: index among the backend's adapters
    #[arg(long)]
    pub device: Option<usize>,
    /// Print one JSON object {"loss": …, "accuracy": …, "images": …}
    #[arg(long)]
    pub json: bool,
}

/// `train export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run folder
    pub run: PathBuf,
    /// Which checkpoint set
    #[arg(long, value_enum, default_value = "best")]
    pub checkpoint: Which,
    /// The .safetensors file to write
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `train probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Model to probe
    #[arg(long, default_value = "plaincnn")]
    pub model: ModelName,
    /// Weight layers of plaincnn
    #[arg(long, default_value_t = 30)]
    pub depth: usize,
    /// First-stage width of plaincnn
    #[arg(long, default_value_t = 16)]
    pub width: usize,
    /// Stem of the torchvision-layout nets
    #[arg(long, default_value = "cifar")]
    pub stem: StemKind,
    /// Normalisation (none shows the init's effect undiluted)
    #[arg(long, default_value = "none")]
    pub norm: Norm,
    /// Residual branches, comma-separated, each probed with every --init: standard, skipinit,
    /// fixup (e.g. --model resnet110 --norm none --residual standard,fixup: He's growth
    /// against Fixup's flat signal)
    #[arg(long, value_delimiter = ',', default_value = "standard")]
    pub residual: Vec<Branch>,
    /// Init schemes, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "he,xavier,torch-default")]
    pub init: Vec<Scheme>,
    /// Images in the probe batch
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Feed N(0, 1) noise instead of a real CIFAR-10 batch
    #[arg(long)]
    pub synthetic: bool,
    /// CIFAR-10 folder [default: search as for training]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seed of the weights and of the batch choice
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute backend
    #[arg(long, default_value = "flex")]
    pub backend: Backend,
    /// GPU to use: index among the backend's adapters [default: the backend's default adapter;
    /// for wgpu CUBECL_WGPU_DEFAULT_DEVICE, e.g. DiscreteGpu(1), overrides it]
    #[arg(long)]
    pub device: Option<usize>,
    /// Folder for probe.csv, probe.svg and probe.png
    #[arg(long, default_value = "runs/probe")]
    pub out: PathBuf,
}

/// `train models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Output classes
    #[arg(long, default_value_t = 10)]
    pub num_classes: usize,
    /// Stem of the torchvision-layout nets
    #[arg(long, default_value = "cifar")]
    pub stem: StemKind,
    /// Input height and width
    #[arg(long, default_value_t = 32)]
    pub image_size: usize,
}

/// `train data`.
#[derive(Debug, Args)]
pub struct DataReportArgs {
    /// CIFAR-10 folder [default: --data-dir > CIFAR10_DIR > ./datasets > burn's cache]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Check every file against the official SHA-1 sums
    #[arg(long)]
    pub verify: bool,
    /// Write a PNG grid of sample training images, one row per class
    #[arg(long)]
    pub grid: Option<PathBuf>,
}

/// The id of `--set`.
const SET: &str = "set";

/// Each setting's flag, from its declaration (`crate::config`): the help says the default, the
/// value is checked as it is parsed, and `--set section.key=value` reaches every setting.
impl Args for RunArgs {
    fn augment_args(mut command: clap::Command) -> clap::Command {
        for setting in settings() {
            command = command.arg(flag(setting));
        }
        command.arg(
            Arg::new(SET)
                .long("set")
                .value_name("KEY=VALUE")
                .action(ArgAction::Append)
                .value_parser(parse_set)
                .help_heading("Run")
                .help(
                    "Any setting by its config.toml name, e.g. --set model.depth=32 --set \
                     optimizer.lr=0.05 (repeatable; wins over the flags)",
                ),
        )
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

fn flag(setting: &'static Setting) -> Arg {
    let help = setting
        .help
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let arg = Arg::new(setting.key)
        .long(setting.flag)
        .value_name(setting.name().to_uppercase())
        .help_heading(setting.heading)
        .help(format!(
            "{help} [default: {}; --set {}]",
            setting.default_text(),
            setting.key
        ))
        .value_parser(move |text: &str| setting.parse(text));
    if setting.switch {
        arg.num_args(0..=1).default_missing_value("true")
    } else {
        arg
    }
}

/// `KEY=VALUE` of `--set`, the key a declared setting and the value one of its values.
fn parse_set(text: &str) -> Result<(&'static str, toml::Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not KEY=VALUE (e.g. optimizer.lr=0.05)"))?;
    let setting = setting(key.trim()).map_err(|error| error.to_string())?;
    Ok((setting.key, setting.parse(value)?))
}

impl FromArgMatches for RunArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = RunArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for setting in settings() {
            if let Some(value) = matches.get_one::<toml::Value>(setting.key) {
                self.insert(setting.key, value.clone());
            }
        }
        let mut set: Vec<&str> = Vec::new();
        for (key, value) in matches
            .get_many::<(&'static str, toml::Value)>(SET)
            .into_iter()
            .flatten()
        {
            if set.contains(key) {
                return Err(clap::Error::raw(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("--set {key}=… is given twice; give it once\n"),
                ));
            }
            set.push(key);
            self.insert(key, value.clone());
        }
        Ok(())
    }
}

impl Cli {
    /// The command line, with `--resume` refusing every setting but the data folder: a resumed
    /// run keeps the settings of its config.toml; only the data may have moved.
    pub fn command_with_defaults() -> clap::Command {
        let mut command = Cli::command().mut_arg("resume", |arg| arg.conflicts_with(SET));
        for setting in settings() {
            if setting.key != "data.dir" {
                command = command.mut_arg("resume", |arg| arg.conflicts_with(setting.key));
            }
        }
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(arguments: &[&str]) -> RunArgs {
        let matches = Cli::command_with_defaults()
            .try_get_matches_from([&["train"], arguments].concat())
            .unwrap_or_else(|error| panic!("{arguments:?}: {error}"));
        Cli::from_arg_matches(&matches).unwrap().run
    }

    /// Every declared setting: its flag, its `--set` form and its TOML key give the same
    /// value, and that value is the example, not the default — so a new setting is tested by
    /// being declared.
    #[test]
    fn every_setting_reads_alike_from_flag_set_and_toml() {
        let defaults = RunArgs::default().resolve_unchecked();
        for setting in settings() {
            let flag = format!("--{}={}", setting.flag, setting.example);
            let by_flag = parse(&[&flag]).resolve_unchecked();
            let set = format!("{}={}", setting.key, setting.example);
            let by_set = parse(&["--set", &set]).resolve_unchecked();
            let value = setting.parse(setting.example).unwrap();
            let (section, name) = setting.key.rsplit_once('.').unwrap_or(("", setting.key));
            let header = if section.is_empty() {
                String::new()
            } else {
                format!("[{section}]\n")
            };
            let text = format!("{header}{name} = {value}\n");
            let by_toml = RunArgs::from_toml(&text, std::path::Path::new("r.toml"))
                .unwrap_or_else(|error| panic!("{}: {error}", setting.key))
                .resolve_unchecked();
            assert_eq!(by_flag, by_set, "{}", setting.key);
            assert_eq!(by_flag, by_toml, "{}", setting.key);
            assert_eq!(by_flag.value(setting.key), Some(value), "{}", setting.key);
            assert_ne!(
                by_flag, defaults,
                "{}: the example is the default",
                setting.key
            );
        }
    }

    #[test]
    fn switches_stand_alone_and_set_wins_over_a_flag() {
        let config = parse(&["--nesterov", "--lr", "0.3", "--set", "optimizer.lr=0.2"])
            .resolve()
            .unwrap();
        assert!(config.optimizer.nesterov);
        assert_eq!(config.optimizer.lr, 0.2);
    }

    #[test]
    fn bad_keys_and_values_are_refused_by_name() {
        for (arguments, expected) in [
            (
                &["--set", "optimizer.lrr=0.1"][..],
                "did you mean 'optimizer.lr'",
            ),
            (&["--set", "optimizer.lr"][..], "is not KEY=VALUE"),
            (&["--lr", "fast"][..], "--lr"),
            (&["--conv", "fft"][..], "unknown convolution algorithm"),
        ] {
            let error = Cli::command_with_defaults()
                .try_get_matches_from([&["train"], arguments].concat())
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{arguments:?}: {error}");
        }
    }
}
