//! The timeouts: one task checks every connection, rather than a timer in
//! each (`--keepalive-timeout`, `--io-timeout`, `--header-timeout`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::connections::Connections;
use crate::config::ServeConfig;

/// The connection timeouts the sweeper enforces.
pub(super) struct Limits {
    /// `--keepalive-timeout`: quiet between requests.
    idle: Duration,
    /// `--io-timeout`: quiet while an extension waits on the client.
    io: Duration,
    /// `--header-timeout`: from a head's first byte to its end.
    head: Duration,
}

impl Limits {
    /// The limits the settings give.
    pub(super) fn of(cfg: &ServeConfig) -> Self {
        Limits {
            idle: cfg.keepalive_timeout,
            io: cfg.io_timeout,
            head: cfg.header_timeout,
        }
    }
}

/// Checks every connection once a second (or more often, for shorter
/// limits): one whose client stalled while an extension waited on it, or
/// whose request head is late, is dropped; one idle too long is closed.
pub(super) async fn sweep(conns: Arc<Connections>, limits: Limits) {
    // A time is seen a sweep late at most, so sweep at least twice per limit.
    let every = Duration::from_secs(1)
        .min(limits.idle / 2)
        .min(limits.io / 2)
        .min(limits.head / 2)
        .max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let epoch = Instant::now();
    loop {
        tick.tick().await;
        let now_ms = epoch.elapsed().as_millis() as u64;
        for s in conns.lock().values() {
            let quiet = s.quiet_for(now_ms);
            let head = s.head_for(now_ms);
            if s.is_aborted() {
                continue;
            }
            if s.client_waited_on() && quiet >= limits.io {
                tracing::warn!(remote = %s.remote, timeout = ?limits.io, "client stalled while the extension waited on it; dropping the connection");
                s.hard_abort();
            } else if !s.between_requests() {
                continue;
            } else if head.is_some_and(|h| h >= limits.head) {
                tracing::warn!(remote = %s.remote, timeout = ?limits.head, "request head not complete within --header-timeout; dropping the connection");
                s.hard_abort();
            } else if !s.close_requested() && quiet >= limits.idle {
                tracing::debug!(remote = %s.remote, "closing idle keep-alive connection");
                s.request_close();
            }
        }
    }
}
