//! `train bench`: training throughput per model on real CIFAR-10 batches.
//!
//! Each step is timed in four phases — building the batch (the loader is part of the
//! measurement), forward with the loss, backward, and the SGD step — with the device synchronised
//! between them, so the split is honest on asynchronous GPUs too. Throughput is the batch size
//! over the median step time after warm-up; achieved FLOP/s counts forward plus backward as three
//! forward passes (2 FLOP per multiply-add of the model crate's count). Evaluation throughput is
//! measured after the training steps: the same batches through the model in evaluation mode
//! (no autodiff, batch norm on its running statistics). The same fields come out of
//! `benches/pytorch_reference.py`, so the two can be put side by side.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use burn::module::Module;
use burn::tensor::Device;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use kaiming_cifar::{CifarDataset, Loader, LoaderConfig, Normalization, Split, locate_data_dir};
use kaiming_init::{InitPlan, Scheme};
use kaiming_resnet::{ModelConfig, ModelName, StemKind};
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::backend::{Backend, describe};
use crate::cli::BenchArgs;
use crate::config::MonitorSettings;
use crate::config::OptimizerSettings;
use crate::feed::Feed;
use crate::monitor::{Monitor, fixed_batch};
use crate::precision::Precision;
use crate::schedule::Schedule;
use crate::summary::KernelsUsed;
use crate::trainer::{Phase, StepObserver, Trainer, TrainerParts, sgd};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Models, each measured on its own.
    pub models: Vec<ModelName>,
    /// Images per step.
    pub batch_size: usize,
    /// Timed steps per model.
    pub steps: usize,
    /// Untimed steps first (allocations, autotuning, caches).
    pub warmup: usize,
    /// Backend to run on.
    pub backend: Backend,
    /// Its GPU index, if not the default.
    pub device: Option<usize>,
    /// Float precision of the forward and backward passes.
    pub precision: Precision,
    /// CIFAR-10 folder, else the usual search.
    pub data_dir: Option<PathBuf>,
}

/// One model's measurement; also one line of the `--json` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    /// Who ran it, e.g. `burn 0.22.1 flex`.
    pub implementation: String,
    /// Model name.
    pub model: String,
    /// Images per step.
    pub batch_size: usize,
    /// Float precision.
    pub precision: String,
    /// The device as it names itself.
    pub device: String,
    /// CPU threads of the compute pool.
    pub threads: usize,
    /// Timed steps.
    pub steps: usize,
    /// Batch size over the median step time.
    pub images_per_s: f64,
    /// Median step time, ms.
    pub step_ms: f64,
    /// Median time to build the batch, ms.
    pub data_ms: f64,
    /// Median forward and loss time, ms.
    pub forward_ms: f64,
    /// Median backward time, ms.
    pub backward_ms: f64,
    /// Median optimizer-step time, ms.
    pub optimizer_ms: f64,
    /// Forward plus backward GFLOP per image (3 × 2 × multiply-adds).
    pub train_gflop_per_image: f64,
    /// Achieved GFLOP/s.
    pub gflops_per_s: f64,
    /// Peak memory of the training steps and evaluation passes, MiB (read before the monitor's
    /// measurement): the process's resident set on CPUs, the allocator's reservation on GPUs.
    pub peak_memory_mib: f64,
    /// Forward multiply-adds per image.
    pub macs_per_image: u64,
    /// Loss of the last step, to show the model trains.
    pub final_loss: f64,
    /// Evaluation images/s: batch size over the median forward time in evaluation mode.
    pub eval_images_per_s: f64,
    /// Median evaluation forward time, ms.
    pub eval_ms: f64,
    /// Median time of one signal-monitor measurement (its fixed-batch pass, the weight and
    /// gradient statistics, the one read-back), ms; absent in rows from before it existed.
    #[serde(default)]
    pub monitor_ms: f64,
    /// What the monitor adds to training at its default interval: monitor_ms over that many
    /// steps' time.
    #[serde(default)]
    pub monitor_overhead: f64,
    /// The CPU kernels of a flex row (`KAIMING_CONV`, `KAIMING_CONV_ISA`, `KAIMING_KERNELS`);
    /// absent on other backends and in rows from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<KernelsUsed>,
}

/// `train bench` and `cargo bench --bench throughput`: sizes the thread pool, measures, prints
/// the table and appends the rows to the `--json` file.
pub fn run(args: BenchArgs) -> Result<Vec<BenchRow>> {
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("--threads: the thread pool was already started")?;
    }
    // A bad kernel variable is an error here, before any measurement, naming the variable.
    kaiming_kernels::configure(kaiming_kernels::from_environment().map_err(anyhow::Error::msg)?)
        .map_err(anyhow::Error::msg)?;
    let config = BenchConfig {
        models: args.models,
        batch_size: args.batch_size,
        steps: args.steps,
        warmup: args.warmup,
        backend: args.backend,
        device: args.device,
        precision: args.precision,
        data_dir: args.data_dir,
    };
    let rows = bench(&config)?;
    println!("{}", table(&rows));
    if let Some(path) = &args.json {
        let mut text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        for row in &rows {
            text.push_str(&serde_json::to_string(row)?);
            text.push('\n');
        }
        write_atomic(path, text.as_bytes())?;
    }
    Ok(rows)
}

/// Measures every model of `config` in turn.
pub fn bench(config: &BenchConfig) -> Result<Vec<BenchRow>> {
    ensure!(config.steps > 0, "--steps must be at least 1");
    ensure!(config.batch_size > 0, "--batch-size must be at least 1");
    let dir = locate_data_dir(config.data_dir.as_deref())?.dir;
    let data = CifarDataset::load(&dir, Split::Train)
        .with_context(|| format!("cannot load CIFAR-10 from {}", dir.display()))?;
    config
        .models
        .iter()
        .map(|&model| bench_model(config, model, data.clone()))
        .collect()
}

/// Per-step phase times, seconds.
#[derive(Debug, Clone, Copy, Default)]
struct StepTimes {
    data: f64,
    forward: f64,
    backward: f64,
    optimizer: f64,
}

impl StepTimes {
    fn total(&self) -> f64 {
        self.data + self.forward + self.backward + self.optimizer
    }
}

/// Records when each phase of a step ends, the device synchronised first so that an
/// asynchronous GPU is timed honestly.
struct PhaseClock {
    ends: Vec<(Phase, Instant)>,
    failed: Option<anyhow::Error>,
}

impl StepObserver for PhaseClock {
    fn ended(&mut self, phase: Phase, device: &Device) {
        if let Err(error) = device.sync() {
            self.failed
                .get_or_insert(anyhow::anyhow!("the device failed: {error:?}"));
        }
        self.ends.push((phase, Instant::now()));
    }
}

impl PhaseClock {
    fn end_of(&self, phase: Phase) -> Option<Instant> {
        self.ends.iter().find(|(p, _)| *p == phase).map(|(_, t)| *t)
    }
}

fn bench_model(config: &BenchConfig, name: ModelName, data: CifarDataset) -> Result<BenchRow> {
    let device = config.backend.device(config.device)?.autodiff();
    config.precision.ensure_supported(&device)?;
    device.seed(0);
    // CIFAR-sized inputs: the torchvision-layout nets get the CIFAR stem, as in `train`.
    let model_config = ModelConfig::new(name).with_stem(StemKind::Cifar);
    let (model, _) = model_config.init_with(&device, &InitPlan::new(Scheme::he()), 0)?;
    let loader = Loader::new(
        data.clone(),
        Normalization::from_dataset(&data)?,
        LoaderConfig::train(config.batch_size, 0),
    )?;
    let feed = Feed::new(loader, &device, config.backend.is_gpu());
    // The default recipe's optimizer at a constant rate: the step `train` takes.
    let optimizer = OptimizerSettings::default();
    let mut trainer = Trainer::new(TrainerParts {
        model,
        optimizer: sgd(&optimizer),
        schedule: Schedule::constant(optimizer.lr),
        precision: config.precision,
    });
    let epoch = feed.epoch(0);
    let sync = |device: &Device| device.sync().context("the device failed");

    let mut times = Vec::with_capacity(config.steps);
    let mut peak_device_bytes = 0;
    let mut final_loss = f64::NAN;
    for step in 0..config.warmup + config.steps {
        let start = Instant::now();
        let batch = epoch
            .batch(step % feed.batches_per_epoch())
            .expect("index below batches_per_epoch");
        sync(&device)?;
        let after_data = Instant::now();
        let mut clock = PhaseClock {
            ends: Vec::with_capacity(3),
            failed: None,
        };
        let stats = trainer.step_observed(batch, &mut clock);
        if let Some(error) = clock.failed {
            return Err(error);
        }
        final_loss = stats.loss;
        let (Some(forward), Some(backward), Some(end)) = (
            clock.end_of(Phase::Forward),
            clock.end_of(Phase::Backward),
            clock.end_of(Phase::Update),
        ) else {
            break; // the loss is not finite: reported below
        };
        let t = StepTimes {
            data: (after_data - start).as_secs_f64(),
            forward: (forward - after_data).as_secs_f64(),
            backward: (backward - forward).as_secs_f64(),
            optimizer: (end - backward).as_secs_f64(),
        };
        // Only GPU devices have a pool; asking a CPU device wakes the wgpu runtime of a
        // wgpu-enabled build, whose Vulkan loader then prints noise on machines without a GPU.
        if config.backend.is_gpu()
            && let Some(usage) = device.memory_pool_usage()
        {
            peak_device_bytes = peak_device_bytes.max(usage.bytes_reserved);
        }
        if step >= config.warmup {
            times.push(t);
        }
    }
    ensure!(
        final_loss.is_finite(),
        "{name}: the loss is {final_loss} after {} steps",
        config.warmup + config.steps
    );

    // Evaluation: the trained model without autodiff, on the same batches.
    let eval_device = device.clone().inner();
    let eval_model = trainer.model().valid();
    let mut eval_times = Vec::with_capacity(config.steps);
    for step in 0..config.warmup + config.steps {
        let batch = epoch
            .batch(step % feed.batches_per_epoch())
            .expect("index below batches_per_epoch");
        let images = batch.images.inner();
        sync(&eval_device)?;
        let start = Instant::now();
        let logits = config.precision.forward(&eval_model, images);
        sync(&eval_device)?;
        drop(logits);
        if step >= config.warmup {
            eval_times.push(start.elapsed().as_secs_f64());
        }
    }
    let eval_s = median(eval_times);
    // Read before the monitor's measurement: its fixed batch (64 images) can be larger than
    // the steps' and PyTorch's reference has no monitor, so its peak is not the training's.
    let peak_memory_mib = if config.backend.is_gpu() {
        peak_device_bytes as f64 / (1 << 20) as f64
    } else {
        peak_resident_mib()
    };

    // The signal monitor at its defaults, timed apart from the steps it watches.
    let settings = MonitorSettings::default();
    let monitor = Monitor::new(
        settings,
        fixed_batch(
            &data,
            feed.loader().normalization(),
            settings.batch_size,
            &device,
        )?,
    );
    let mut monitor_times = Vec::new();
    for step in 0..config.steps.clamp(1, 5) {
        let batch = epoch
            .batch(step % feed.batches_per_epoch())
            .expect("index below batches_per_epoch");
        sync(&device)?;
        let start = Instant::now();
        let mut watch = monitor.watch(trainer.model(), 0);
        sync(&device)?;
        let watching = start.elapsed().as_secs_f64();
        trainer.step_observed(batch, &mut watch);
        sync(&device)?;
        let start = Instant::now();
        watch.finish(trainer.model());
        monitor_times.push(watching + start.elapsed().as_secs_f64());
    }
    let monitor_s = median(monitor_times);

    let median = |f: fn(&StepTimes) -> f64| median(times.iter().map(f).collect());
    let step_s = median(StepTimes::total);
    let macs = model_config.complexity([32, 32]).macs;
    let train_gflop_per_image = 6.0 * macs as f64 / 1e9;
    let images_per_s = config.batch_size as f64 / step_s;
    Ok(BenchRow {
        implementation: format!("burn {} {}", burn_version(), config.backend),
        model: name.to_string(),
        batch_size: config.batch_size,
        precision: config.precision.to_string(),
        device: describe(&device),
        threads: compute_threads(),
        steps: config.steps,
        images_per_s,
        step_ms: 1e3 * step_s,
        data_ms: 1e3 * median(|t| t.data),
        forward_ms: 1e3 * median(|t| t.forward),
        backward_ms: 1e3 * median(|t| t.backward),
        optimizer_ms: 1e3 * median(|t| t.optimizer),
        train_gflop_per_image,
        gflops_per_s: train_gflop_per_image * images_per_s,
        peak_memory_mib,
        macs_per_image: macs,
        final_loss,
        eval_images_per_s: config.batch_size as f64 / eval_s,
        eval_ms: 1e3 * eval_s,
        monitor_ms: 1e3 * monitor_s,
        monitor_overhead: monitor_s / (settings.every as f64 * step_s),
        kernels: (config.backend == Backend::Flex).then(|| kaiming_kernels::current().into()),
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The burn version this binary was built against (pinned in the workspace).
fn burn_version() -> &'static str {
    "0.22.1"
}

/// Threads of the CPU compute pool: flex runs on rayon's global pool.
fn compute_threads() -> usize {
    rayon::current_num_threads()
}

/// The process's peak resident set (Linux `VmHWM`), MiB; NaN where the OS does not say.
fn peak_resident_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// The table `train bench` prints.
pub fn table(rows: &[BenchRow]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header([
        "implementation",
        "model",
        "batch",
        "precision",
        "threads",
        "images/s",
        "GFLOP/s",
        "peak MiB",
        "data ms",
        "fwd ms",
        "bwd ms",
        "opt ms",
        "loss",
        "eval images/s",
        "monitor ms",
        "monitor overhead",
        "kernels",
    ]);
    for r in rows {
        table.add_row([
            r.implementation.clone(),
            r.model.clone(),
            r.batch_size.to_string(),
            r.precision.clone(),
            r.threads.to_string(),
            format!("{:.1}", r.images_per_s),
            format!("{:.1}", r.gflops_per_s),
            format!("{:.0}", r.peak_memory_mib),
            format!("{:.1}", r.data_ms),
            format!("{:.1}", r.forward_ms),
            format!("{:.1}", r.backward_ms),
            format!("{:.1}", r.optimizer_ms),
            format!("{:.3}", r.final_loss),
            format!("{:.1}", r.eval_images_per_s),
            format!("{:.0}", r.monitor_ms),
            format!("{:.2} %", 100.0 * r.monitor_overhead),
            r.kernels
                .as_ref()
                .map_or("-".to_string(), ToString::to_string),
        ]);
    }
    table
}
