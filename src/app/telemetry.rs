//! Logging: `RUST_LOG` filters (default `info`), `RUST_LOG_FORMAT=json` for machines.
//! Phone numbers only ever appear masked (`Phone::masked`), secrets never.

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
