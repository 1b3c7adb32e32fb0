//! Layer 5, tools: the command line ([`cli`], the only module that writes to stdout),
//! logging ([`logging`]), deterministic synthetic data ([`synth`]), benchmarks ([`bench`]) and
//! `fedanno demo` ([`demo`]).

pub mod bench;
pub mod cli;
pub mod demo;
pub mod local_consortium;
pub mod logging;
pub mod synth;
