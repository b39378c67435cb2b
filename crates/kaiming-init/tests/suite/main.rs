//! The init crate's integration tests, one binary (each file a module): statistics against the formulas, gains against PyTorch's, names and modules.

mod gains;
mod modules;
mod names;
mod statistics;
