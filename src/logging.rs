//! Logging setup: `tracing` to stderr, JSON or text, filtered by `RUST_LOG` (default `info`).
//!
//! Pingora logs through the `log` crate; its records are bridged into the same output, but only
//! after [`crate::redact::text`] has removed query strings, credentials and raw message buffers
//! from them (Pingora's error lines quote the request line and dump malformed responses). Lines
//! about a client's own broken connection are demoted to `debug`, so that a client cannot fill the
//! logs: the gateway's access log and metrics already count those.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Forwards `log` records to `tracing`, redacted.
struct RedactingLogger(tracing_log::LogTracer);

/// The level a Pingora record is logged at: failures caused by the client side of a connection
/// (it closed, sent garbage, was too slow) are the client's problem, not the operator's.
fn level_for(record: &log::Record<'_>, message: &str) -> log::Level {
    let downstream = message.contains("Downstream") || message.contains("downstream session type");
    if record.level() <= log::Level::Warn && record.target().starts_with("pingora") && downstream {
        log::Level::Debug
    } else {
        record.level()
    }
}

impl log::Log for RedactingLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.0.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        let redacted = crate::redact::text(&message);
        let level = level_for(record, &redacted);
        let metadata = log::Metadata::builder().level(level).target(record.target()).build();
        if level != record.level() && !self.0.enabled(&metadata) {
            return;
        }
        self.0.log(
            &log::Record::builder()
                .args(format_args!("{redacted}"))
                .level(level)
                .target(record.target())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {}
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // `log` macros skip records above this level before formatting anything.
    let max_level = match filter.max_level_hint() {
        Some(tracing_subscriber::filter::LevelFilter::OFF) => log::LevelFilter::Off,
        Some(tracing_subscriber::filter::LevelFilter::ERROR) => log::LevelFilter::Error,
        Some(tracing_subscriber::filter::LevelFilter::WARN) => log::LevelFilter::Warn,
        Some(tracing_subscriber::filter::LevelFilter::INFO) => log::LevelFilter::Info,
        Some(tracing_subscriber::filter::LevelFilter::DEBUG) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // Fails only if a subscriber is already set (tests); that one keeps working.
    let installed = match format {
        LogFormat::Json => tracing::subscriber::set_global_default(builder.json().flatten_event(true).finish()),
        LogFormat::Text => tracing::subscriber::set_global_default(builder.compact().finish()),
    };
    if installed.is_ok() && log::set_boxed_logger(Box::new(RedactingLogger(tracing_log::LogTracer::new()))).is_ok() {
        log::set_max_level(max_level);
    }
}
