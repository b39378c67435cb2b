//! The model zoo's integration tests, one binary (each file a module): architectures against torchvision, counts, init, LSUV, branches and the engine.
mod architecture;
mod backward;
mod branch;
mod common;
mod counts;
mod engine;
mod init;
mod lsuv;
mod spec;
mod torchvision;
