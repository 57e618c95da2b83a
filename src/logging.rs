//! The host's own log (tracing events) on stderr: human-readable text, or
//! one JSON object per line (`--log-format json`), filtered by `RUST_LOG`
//! (default `info`).
//!
//! The subscriber starts before the settings are read, as text, so that
//! nothing said while reading them is lost; [`set_format`] switches it once
//! they are. Lines are written by a thread of their own, so that request
//! threads never wait on stderr; nothing is dropped when it falls behind.

use std::sync::OnceLock;

use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::LogFormat;

/// The formatting layer, swapped by [`set_format`].
type Format = Box<dyn Layer<Registry> + Send + Sync>;

/// What [`set_format`] needs: the layer's handle and the writer.
struct Switch {
    handle: reload::Handle<Format, Registry>,
    writer: NonBlocking,
}

static SWITCH: OnceLock<Switch> = OnceLock::new();

/// Keeps the log's writer thread; dropping it writes what is left.
#[must_use = "the log's last lines are written when this is dropped"]
pub(crate) struct Guard(#[allow(dead_code)] WorkerGuard);

/// Starts the log, as text.
pub(crate) fn init() -> Guard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let (layer, handle) = reload::Layer::new(layer(LogFormat::Text, writer.clone()));
    tracing_subscriber::registry()
        .with(layer)
        .with(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let _ = SWITCH.set(Switch { handle, writer });
    Guard(guard)
}

/// Switches the log to the format the settings chose.
pub(crate) fn set_format(format: LogFormat) {
    if format == LogFormat::Text {
        return;
    }
    if let Some(s) = SWITCH.get() {
        let _ = s.handle.reload(layer(format, s.writer.clone()));
    }
}

fn layer(format: LogFormat, writer: NonBlocking) -> Format {
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        // Fields at the top level, as log shippers expect.
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    }
}
