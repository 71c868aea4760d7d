//! Logging: `RUST_LOG` filters (default `info`); `--log-format json` (or
//! `JIAOYING_LOG_FORMAT=json`) writes one JSON object a line for machines, `text` (the
//! default) is for people. Everything goes to standard error.
//! Phone numbers only ever appear masked (`Phone::masked`), secrets never.

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `message`, the fields, `target`, and the
    /// spans it happened in (`span`, `spans`).
    Json,
}

/// Text logs (tests and the demo start here).
pub fn init() {
    init_as(LogFormat::Text)
}

/// Installs the process's subscriber; a second call changes nothing.
pub fn init_as(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
