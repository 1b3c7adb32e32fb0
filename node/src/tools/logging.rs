//! Tracing setup: human-readable lines by default, JSON lines with `--log-format json`; level
//! from `--verbose`/`--quiet` or `FEDANNO_LOG` (an `EnvFilter` directive). Logs go to stderr so
//! stdout stays clean for `--json` output. Log events carry counts, pseudonyms and reasons,
//! never PHI, paths or key material.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber. `verbosity`: −1 quiet (errors), 0 warnings, 1 info,
/// 2 debug, 3+ trace. `FEDANNO_LOG` overrides it.
pub fn init(format: LogFormat, verbosity: i8) {
    let default = match verbosity {
        i8::MIN..=-1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("FEDANNO_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
