//! The `stagegate` binary: parses the command line and hands over to the library.
//! Exit codes: 0 ok / all gates passed, 1 a gate failed, 2 error or inconclusive.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
