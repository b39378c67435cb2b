//! `train`: see `train --help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use clap::FromArgMatches;
use kaiming_resnet::ModelConfig;
use kaiming_train::cli::{Cli, Command, OutputArgs};
use kaiming_train::config::RunArgs;
use kaiming_train::monitor::MonitorLog;
use kaiming_train::run::{RunOptions, resume, train};
use kaiming_train::store::RunFiles;
use kaiming_train::summary::{Status, Summary};
use kaiming_train::{bench, compare, inspect, monitor_plot, pivot, probe, recipes, sweep, weights};
use tracing_subscriber::EnvFilter;

/// glibc's allocator hands large buffers back to the OS on free, so every training step
/// page-faults and zeroes its activations afresh; mimalloc, told to keep freed pages
/// (`kaiming_train::allocator`), reuses them in the next step (`benches/README.md` has the
/// measured effect).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    kaiming_train::allocator::keep_freed_pages();
    // `train compare … | head` should end quietly, as other command-line tools do, not panic
    // on the closed pipe: the default SIGPIPE action ends the process.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        // usvg warns once per text element when a system lacks fonts; the plot is still drawn.
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,usvg=error".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::command_with_defaults().get_matches_from(std::env::args_os());
    let cli = match Cli::from_arg_matches(&cli) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let code = match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    };
    // A run or sweep stopped by a signal has checkpointed and said how to continue; its exit
    // code says it was stopped (128 + the signal, as a shell reports a killed command), so a
    // scheduler that preempts with SIGTERM, or a script, cannot take it for a finished run.
    match SIGNAL.load(Ordering::SeqCst) {
        0 => code,
        signal => ExitCode::from(128 + signal as u8),
    }
}

/// The signal that asked the process to stop (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The flag the training loop polls, once made.
static INTERRUPT: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_stop_signal(signal: libc::c_int) {
    // Only atomic stores here: a signal handler may interrupt anything, the allocator included.
    SIGNAL.store(signal, Ordering::SeqCst);
    if let Some(flag) = INTERRUPT.get() {
        flag.store(true, Ordering::SeqCst);
    }
}

/// Ctrl-C, SIGTERM or SIGHUP sets the flag; the training loop finishes its step, checkpoints and
/// stops, and the process exits with 128 + the signal.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = INTERRUPT.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: the handler only stores to atomics, which is async-signal-safe.
            let previous = unsafe {
                libc::signal(
                    signal,
                    on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
                )
            };
            if previous == libc::SIG_ERR {
                tracing::warn!("signal {signal} will not checkpoint the run before it stops");
            }
        }
        flag
    });
    flag.clone()
}

fn run_options(output: &OutputArgs) -> RunOptions {
    RunOptions {
        out: output.out.clone(),
        name: output.name.clone(),
        quiet: output.quiet,
        stop_after: output.stop_after,
        no_download: output.no_download,
        device: output.device,
        interrupt: Some(interrupt_flag()),
        checkpoint_every: output.checkpoint_every,
        keep_checkpoints: output.keep_checkpoints,
        data_dir: None,
        devices: output.devices.clone(),
    }
}

/// Flags over the recipe file over the defaults.
fn resolve(flags: RunArgs, config: Option<&PathBuf>) -> Result<RunArgs> {
    Ok(match config {
        Some(path) => flags.or(RunArgs::from_file(path)?),
        None => flags,
    })
}

fn run(mut cli: Cli) -> Result<ExitCode> {
    // `--devices 0,1` is a run of two replicas.
    if let Some(devices) = &cli.output.devices
        && !cli.run.is_given("replicas")
    {
        cli.run
            .insert("replicas", toml::Value::Integer(devices.len() as i64));
    }
    let Some(command) = cli.command else {
        let mut options = run_options(&cli.output);
        let (summary, dir) = match &cli.output.resume {
            Some(dir) => {
                options.data_dir = cli.run.resolve()?.data.dir;
                (resume(dir, &options)?, dir.clone())
            }
            None => {
                let (args, recipe) = recipes::choose(cli.run, cli.output.config.as_deref())?;
                eprintln!("{recipe}");
                let summary = train(args.resolve()?, &options)?;
                let dir = options.out.join(&summary.name);
                (summary, dir)
            }
        };
        println!(
            "{}: {} after {} epochs; best {} accuracy {}",
            summary.name,
            summary.status,
            summary.epochs_completed,
            summary.eval_split,
            summary
                .best_accuracy
                .map_or("-".to_string(), |a| format!("{:.2} %", 100.0 * a))
        );
        if summary.status == Status::Interrupted && SIGNAL.load(Ordering::SeqCst) != 0 {
            eprintln!("continue it with --resume {}", dir.display());
        }
        return Ok(match summary.status {
            Status::Completed | Status::Interrupted => ExitCode::SUCCESS,
            Status::Diverged | Status::Running => ExitCode::from(3),
        });
    };
    match command {
        Command::Sweep(args) => {
            let args = *args;
            let base = resolve(args.run.clone(), args.output.config.as_ref())?;
            let options = RunOptions {
                out: args.output.out.clone(),
                quiet: args.output.quiet,
                no_download: args.output.no_download,
                device: args.output.device,
                interrupt: Some(interrupt_flag()),
                checkpoint_every: args.output.checkpoint_every,
                keep_checkpoints: args.output.keep_checkpoints,
                ..RunOptions::default()
            };
            sweep::refuse_overridden_flags(&args.axes(), &args.run)?;
            let runs = sweep::plan(&args.axes(), &args.seeds, &base)?;
            if args.dry_run {
                print!("{}", sweep::dry_run(&runs, &options));
                return Ok(ExitCode::SUCCESS);
            }
            let dirs = if args.parallel > 1 {
                let interrupt = options.interrupt.clone().unwrap_or_default();
                parallel_sweep(args.parallel, args.devices.as_deref(), &interrupt)?;
                sweep::run_dirs(&runs, &options)
            } else if args.shard.is_some() {
                sweep::sweep(&runs, args.shard, &options)?;
                // Shares that end together race to write the table: each compares again until
                // no run ended meanwhile, so the last write holds every ended run.
                let mut dirs = sweep::ended_run_dirs(&runs, &options);
                loop {
                    compare::compare(&dirs, &args.output.out)?;
                    let now = sweep::ended_run_dirs(&runs, &options);
                    if now == dirs {
                        break dirs;
                    }
                    dirs = now;
                }
            } else {
                sweep::sweep(&runs, args.shard, &options)?
            };
            println!("{}", compare::compare(&dirs, &args.output.out)?);
            println!(
                "table and plots: {}",
                args.output
                    .out
                    .join("comparison.{csv,md,svg,png}")
                    .display()
            );
            print_pivot(&dirs, &args.output.out, &[], &[])?;
        }
        Command::Compare(args) => {
            let runs = compare::expand_run_folders(&args.runs)?;
            let out = match args.out {
                Some(out) => out,
                // A sweep's folder gets its comparison, as the sweep itself writes it.
                None if args.runs.len() == 1 && !RunFiles::is_run(&args.runs[0]) => {
                    args.runs[0].clone()
                }
                None => common_parent(&args.runs),
            };
            println!("{}", compare::compare(&runs, &out)?);
            println!(
                "table and plots: {}",
                out.join("comparison.{csv,md,svg,png}").display()
            );
            print_pivot(&runs, &out, &args.rows, &args.cols)?;
        }
        Command::Probe(args) => {
            let model = ModelConfig::new(args.model)
                .with_norm(args.norm)
                .with_stem(args.stem)
                .with_depth(args.depth)
                .with_width(args.width);
            let config = probe::ProbeConfig {
                model,
                inits: args.init,
                residuals: args.residual,
                batch_size: args.batch_size,
                synthetic: args.synthetic,
                data_dir: args.data_dir,
                seed: args.seed,
                device: args.backend.device(args.device)?,
            };
            let rows = probe::probe(&config)?;
            println!("{}", probe::table(&rows));
            let title = format!("{} (norm {})", args.model, args.norm);
            probe::write(&rows, &args.out, &title)?;
            println!("probe.csv and plots: {}", args.out.display());
        }
        Command::Monitor(args) => {
            for run in &args.runs {
                println!("{}", monitor_report(run)?);
            }
        }
        Command::Eval(args) => {
            let device = args.backend.device(args.device)?;
            let data = weights::EvalData {
                data_dir: args.data_dir.clone(),
                eval_limit: args.eval_limit,
            };
            let evaluation = match (&args.run, &args.weights, args.model) {
                (Some(run), _, _) => {
                    let (config, model) = weights::run_model(run, args.checkpoint, &device)?;
                    weights::evaluate_on_test(
                        &model,
                        Some(&config),
                        None,
                        &data,
                        config.precision,
                        args.backend,
                        &device,
                    )?
                }
                (None, Some(file), Some(name)) => {
                    let config = ModelConfig::new(name)
                        .with_stem(args.stem)
                        .with_norm(args.norm)
                        .with_branch(args.residual)
                        .with_depth(args.depth)
                        .with_width(args.width);
                    let model = weights::file_model(config, file, &device)?;
                    weights::evaluate_on_test(
                        &model,
                        None,
                        weights::file_normalization(file)?,
                        &data,
                        Default::default(),
                        args.backend,
                        &device,
                    )?
                }
                _ => anyhow::bail!("train eval needs a run folder, or --model with --weights"),
            };
            if args.json {
                println!("{}", serde_json::to_string(&evaluation)?);
            } else {
                println!(
                    "loss {:.4}  accuracy {:.2} %  images {}",
                    evaluation.loss,
                    100.0 * evaluation.accuracy,
                    evaluation.images
                );
            }
        }
        Command::Export(args) => {
            weights::export_run(&args.run, args.checkpoint, &args.out)?;
            println!("{}: torchvision names, safetensors", args.out.display());
        }
        Command::Models(args) => {
            println!(
                "{}",
                inspect::models_table(args.num_classes, args.stem, args.image_size)
            );
        }
        Command::Bench(args) => {
            bench::run(args)?;
        }
        Command::Data(args) => {
            print!(
                "{}",
                inspect::data_report(args.data_dir.as_deref(), args.verify, args.grid.as_deref())?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `train sweep --parallel K`: this same command once per share, as K processes at once, each
/// with `--shard i/K` (and `--device` from `--devices` in turn), their progress bars off.
fn parallel_sweep(
    processes: usize,
    devices: Option<&[usize]>,
    interrupt: &AtomicBool,
) -> Result<()> {
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let mut given = std::env::args_os().skip(1);
    while let Some(arg) = given.next() {
        let text = arg.to_string_lossy();
        if text == "--parallel" || text == "--devices" {
            given.next();
        } else if !text.starts_with("--parallel=") && !text.starts_with("--devices=") {
            args.push(arg);
        }
    }
    if !args.iter().any(|a| a == "--quiet" || a == "-q") {
        args.push("--quiet".into());
    }
    let exe = std::env::current_exe().context("cannot find the train binary to run shares")?;
    let mut children = Vec::new();
    for index in 0..processes {
        let mut command = std::process::Command::new(&exe);
        command
            .args(&args)
            .arg("--shard")
            .arg(format!("{index}/{processes}"));
        if let Some(devices) = devices.filter(|d| !d.is_empty()) {
            command
                .arg("--device")
                .arg(devices[index % devices.len()].to_string());
        }
        match command.spawn() {
            Ok(child) => children.push((index, child)),
            Err(error) => {
                for (_, child) in &mut children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(error)
                    .with_context(|| format!("cannot start share {index}/{processes}"));
            }
        }
    }
    // Wait for all; a Ctrl-C or SIGTERM that reached only this process is passed on, so every
    // share checkpoints and stops.
    let mut statuses: Vec<Option<std::process::ExitStatus>> = vec![None; children.len()];
    let mut forwarded = false;
    while statuses.iter().any(Option::is_none) {
        for ((_, child), status) in children.iter_mut().zip(&mut statuses) {
            if status.is_none() {
                *status = child.try_wait().context("a share's process was lost")?;
            }
        }
        if interrupt.load(Ordering::SeqCst) && !forwarded {
            forwarded = true;
            #[cfg(unix)]
            for (_, child) in &children {
                // SAFETY: kill(2) on a child's pid; it only delivers a signal.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let failed: Vec<String> = children
        .iter()
        .zip(&statuses)
        .filter(|(_, status)| !status.is_some_and(|s| s.success()))
        .map(|((index, _), _)| format!("{index}/{processes}"))
        .collect();
    if !failed.is_empty() && interrupt.load(Ordering::SeqCst) {
        anyhow::bail!("sweep interrupted; run the same command again to continue");
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "share(s) {} failed (see above); run the same command again to continue",
            failed.join(", ")
        );
    }
    Ok(())
}

/// Draws `run/monitor.{svg,png}` and lists the run's diagnoses.
/// The pivot of the runs by the settings that vary (or those given), where any does.
fn print_pivot(
    runs: &[PathBuf],
    out: &std::path::Path,
    rows: &[String],
    cols: &[String],
) -> Result<()> {
    if let Some(table) = pivot::report(runs, out, rows, cols)? {
        println!("{table}");
        println!(
            "pivot and heatmap: {}",
            out.join("{pivot.csv,pivot.md,heatmap.svg,heatmap.png}")
                .display()
        );
    }
    Ok(())
}

fn monitor_report(run: &std::path::Path) -> Result<String> {
    let files = RunFiles::new(run);
    let summary = Summary::read(&files.summary())
        .with_context(|| format!("{} is not a run folder", run.display()))?;
    let rows = MonitorLog::read(&files.monitor()).with_context(|| {
        format!(
            "{} has no monitor log; train with --monitor-every N",
            run.display()
        )
    })?;
    monitor_plot::draw(&rows, &summary.name, &run.join("monitor"))?;
    monitor_plot::draw_heatmaps(&rows, &summary.name, &run.join("monitor-heatmap"))?;
    let mut report = format!(
        "{}: {} measurements; plots {} and {}\n",
        summary.name,
        rows.len(),
        run.join("monitor.{svg,png}").display(),
        run.join("monitor-heatmap.{svg,png}").display()
    );
    if summary.signals.is_empty() {
        report.push_str("  no diagnoses\n");
    }
    for s in &summary.signals {
        report.push_str(&format!(
            "  step {:>6}  {:<12} {:<14} {:<28} {:.3e}\n",
            s.step,
            s.kind.to_string(),
            s.quantity,
            s.layer,
            s.value
        ));
    }
    Ok(report)
}

/// The folder above the run folders, where their comparison goes by default.
fn common_parent(runs: &[PathBuf]) -> PathBuf {
    runs.first()
        .and_then(|run| run.parent())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}
