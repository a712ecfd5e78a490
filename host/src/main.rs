//! `edge-llm`: run, chat with, tokenize, inspect and benchmark models through the edge:llm
//! component. Results go to stdout, status to stderr; a failure is one line on stderr and a
//! non-zero exit.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
