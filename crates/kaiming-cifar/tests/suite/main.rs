//! The data crate's integration tests, one binary (each file a module) except `env.rs`, which sets process environment variables and so runs alone in its own.
mod augment;
mod binary;
mod common;
mod download;
mod folder;
mod locate;
mod real_data;
mod resident;
