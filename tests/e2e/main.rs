//! The end-to-end tests, one binary: each module drives the built CLI, components, servers or
//! host library. (One binary links wasmtime once instead of once per file; `memory.rs` stays
//! its own binary because it measures its own process's memory.)

mod bad_input;
mod cli;
mod faults;
mod foundation;
mod host_api;
mod jco;
mod llama_server;
mod load;
mod sandbox;
mod serve;
mod serve_extras;
mod wasmtime_cli;
mod wit_v0_2;
