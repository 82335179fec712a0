//! Logging flags shared by both daemons, and the subscriber they install.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// `--log-format` and `--log-level`, flattened into each daemon's flags.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct LogArgs {
    /// Log format: `text` for people reading a terminal or `kubectl logs`, `json` (one object per
    /// line, with span fields) for log collectors.
    #[arg(long, env = "FERROLB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in `tracing` syntax: a level (`info`, `debug`) or per-module directives such as
    /// `info,ferrolb_speaker=debug`. `RUST_LOG` is not read; use this flag or its variable.
    #[arg(long, env = "FERROLB_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// How log lines are written.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The `--log-level` directive does not parse.
    #[error(
        "invalid --log-level {value:?}: {reason} (expected a level such as `info` or directives such as `info,ferrolb_speaker=debug`)"
    )]
    InvalidLevel { value: String, reason: String },
    /// A global subscriber was installed already (a programming error in the binary).
    #[error("logging was already initialised: {0}")]
    AlreadyInitialised(String),
}

impl LogArgs {
    /// Installs the global `tracing` subscriber that writes to stderr.
    pub fn init(&self) -> Result<(), LoggingError> {
        let filter = self.filter()?;
        // Colours only on a terminal: `kubectl logs` and log files get plain text.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr);
        let result = match self.log_format {
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .try_init(),
        };
        result.map_err(|e| LoggingError::AlreadyInitialised(e.to_string()))
    }

    /// The filter `--log-level` describes.
    pub fn filter(&self) -> Result<EnvFilter, LoggingError> {
        EnvFilter::builder()
            .parse(&self.log_level)
            .map_err(|e| LoggingError::InvalidLevel {
                value: self.log_level.clone(),
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(level: &str) -> LogArgs {
        LogArgs {
            log_format: LogFormat::Text,
            log_level: level.to_string(),
        }
    }

    #[test]
    fn accepts_levels_and_directives() {
        for ok in ["info", "debug", "warn,ferrolb_speaker=trace"] {
            assert!(args(ok).filter().is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_a_bad_directive_naming_the_flag() {
        let err = args("info,ferrolb=loud").filter().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("--log-level"), "{msg}");
        assert!(msg.contains("ferrolb=loud"), "{msg}");
    }
}
