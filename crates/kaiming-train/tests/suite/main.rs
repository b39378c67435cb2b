//! The trainer's integration tests, one binary (each file a module), so that the suite links burn and wgpu once per crate instead of once per file.

mod bad_input;
mod commands;
mod common;
mod crash;
mod end_to_end;
mod gpu;
mod gpu_check;
mod interop;
mod monitor;
mod parallel;
mod parsers;
mod precision;
mod probe;
mod published;
mod quoted;
mod tensorboard;
mod trainer;
