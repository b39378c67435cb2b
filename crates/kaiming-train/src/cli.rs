//! The command line of the `train` binary.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};
use kaiming_init::Scheme;
use kaiming_resnet::{Branch, ModelName, Norm, StemKind};

use crate::backend::Backend;
use crate::checkpoint::CheckpointEvery;
use crate::config::{RunArgs, help_defaults};
use crate::precision::Precision;
use crate::sweep::Shard;
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
    /// Run every init × seed combination one after another (skipping completed runs), then
    /// compare them
    Sweep(Box<SweepArgs>),
    /// Table and plots (SVG, PNG) of training loss and test accuracy per init scheme
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
    /// Init schemes to run, comma-separated
    #[arg(long, value_delimiter = ',', required = true)]
    pub inits: Vec<Scheme>,
    /// Seeds to run, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub seeds: Vec<u64>,
    /// Run only share K of N of the run list (runs whose position modulo N is K): the same share
    /// on every machine for the same arguments, so a cluster's job array runs the sweep, e.g.
    /// --shard $SLURM_ARRAY_TASK_ID/4; the shares may write into one shared --out at once
    #[arg(long, value_name = "K/N", conflicts_with = "parallel")]
    pub shard: Option<Shard>,
    /// Run K runs at once, one process per share of the run list; with --devices each on its
    /// own GPU, on a CPU the K processes share the cores (each runs slower)
    #[arg(long, value_name = "K", default_value_t = 1)]
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
    /// Folder for comparison.csv, comparison.svg and comparison.png [default: the folder of runs
    /// given, else the runs' parent]
    #[arg(long)]
    pub out: Option<PathBuf>,
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

impl Cli {
    /// The command line with the run settings' defaults in their help, taken from the
    /// [`RunConfig`](crate::config::RunConfig) defaults (the one place they are stated).
    pub fn command_with_defaults() -> clap::Command {
        let annotate = |mut command: clap::Command| {
            for (id, default) in help_defaults() {
                command = command.mut_arg(id, |arg| {
                    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                    arg.help(format!("{help} [default: {default}]"))
                });
            }
            command
        };
        // A resumed run keeps the settings of its config.toml; only the data may have moved.
        let mut command = annotate(Cli::command());
        for (id, _) in help_defaults() {
            if id != "data_dir" {
                command = command.mut_arg("resume", |arg| arg.conflicts_with(id));
            }
        }
        command.mut_subcommand("sweep", annotate)
    }
}
