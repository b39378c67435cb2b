//! Training throughput on real CIFAR-10 batches, per model and backend: the same measurement as
//! `train bench`, run by cargo's bench harness.
//!
//! ```sh
//! CIFAR10_DIR=… cargo bench --workspace --bench throughput -- --models resnet20 --threads 2
//! ```
//!
//! Flags are those of `train bench --help`; `benches/README.md` has the figures and the PyTorch
//! comparison.

use std::process::ExitCode;

use clap::Parser;
use kaiming_train::bench;
use kaiming_train::cli::BenchArgs;

/// The allocator the `train` binary uses, with its setting, so both measure the same thing.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Training throughput per model (see `train bench --help`).
#[derive(Debug, Parser)]
#[command(name = "throughput")]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn main() -> ExitCode {
    kaiming_train::allocator::keep_freed_pages();
    match bench::run(Cli::parse().args) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
