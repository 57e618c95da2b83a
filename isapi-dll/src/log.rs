//! Logging: the library's own `tracing` subscriber, writing to stderr or to a file.
//!
//! The library carries its own copy of `tracing`, so it installs its own global subscriber
//! (the server's, if it has one, is a different copy and is not affected). Start-up errors
//! are also printed to stderr directly, so that a server that refuses to start shows why
//! even when the log goes to a file.

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing::Level;

use crate::config::LogTarget;

/// Installs the subscriber. Calling it again is harmless (the first one stays).
pub(crate) fn init(target: &LogTarget, level: &str) -> Result<(), String> {
    let level = match level.to_ascii_lowercase().as_str() {
        "error" => Some(Level::ERROR),
        "warn" => Some(Level::WARN),
        "debug" => Some(Level::DEBUG),
        "trace" => Some(Level::TRACE),
        "off" => None,
        _ => Some(Level::INFO),
    };
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(true)
        .with_max_level(level.map_or(tracing::level_filters::LevelFilter::OFF, Into::into));
    let result = match target {
        LogTarget::Stderr => builder.with_writer(std::io::stderr).try_init(),
        LogTarget::File(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?;
            builder.with_writer(Mutex::new(file)).try_init()
        }
    };
    // An error here means a subscriber is already installed: keep it.
    drop(result);
    Ok(())
}
