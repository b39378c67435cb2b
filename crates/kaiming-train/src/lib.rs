//! The trainer behind the `train` binary: runs on CIFAR-10 per init scheme, their comparison,
//! and the signal-propagation probe. The binary is a thin layer over these modules.

pub mod atomic;
pub mod backend;
pub mod bench;
pub mod cli;
pub mod compare;
pub mod config;
pub mod feed;
pub mod inspect;
pub mod metrics;
pub mod plot;
pub mod precision;
pub mod probe;
pub mod run;
pub mod schedule;
pub mod summary;
pub mod sweep;
