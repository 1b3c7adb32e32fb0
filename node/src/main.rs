//! The `fedanno` binary: parses the command line, runs it, and owns the exit codes
//! (0 ok, 1 failure, 2 usage). Everything else lives in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    fedanno_node::tools::cli::main()
}
