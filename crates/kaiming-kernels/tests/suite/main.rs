//! The CPU kernels' integration tests, one binary (each file a module): every kernel against burn's operations and an f64 definition.
mod batch_norm;
mod common;
mod conv;
mod internals;
mod residual;
