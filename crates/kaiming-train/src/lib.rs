//! The trainer behind the `train` binary: runs on CIFAR-10 per init scheme, their comparison,
//! and the signal-propagation probe. The binary is a thin layer over these modules.
//!
//! - [`trainer`]: the training step, shared by runs, sweeps, the bench and the tests.
//! - [`run`]: one run's loop around it; [`sweep`]: many runs.
//! - [`store`]: run folders (names, locks); [`checkpoint`]: checkpoint sets inside them;
//!   [`metrics`], [`summary`]: the files a run leaves for [`compare`] and [`pivot`].
//! - [`config`]: every setting, declared once.

pub mod allocator;
pub mod atomic;
pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod compare;
pub mod config;
pub mod fault;
pub mod feed;
pub mod heatmap;
pub mod inspect;
pub mod logs;
pub mod metrics;
pub mod monitor;
pub mod monitor_plot;
pub mod pivot;
pub mod plot;
pub mod precision;
pub mod probe;
pub mod recipes;
pub mod run;
pub mod schedule;
pub mod settings;
pub mod signals;
pub mod store;
pub mod summary;
pub mod sweep;
pub mod tensorboard;
pub mod trainer;
pub mod weights;
