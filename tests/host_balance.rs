//! How a web garden's workers share out connections (docs/ARCHITECTURE.md,
//! "Process model"): a worker that holds more than its share lets the
//! others accept first, so that keep-alive connections do not all stay on
//! whichever worker ran when they arrived. Linux hosts only (no supervisor
//! on Windows).

use std::time::{Duration, Instant};

use crate::host_control::{status, workers};
use crate::support::{self, Host, RawConn, count};

/// Opens a keep-alive connection and has one request answered on it.
fn open(host: &Host) -> RawConn {
    let mut c = host.connect();
    let r = c.roundtrip(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello, world!"[..]));
    c
}

/// The connections each worker holds, by `ctl status`, once they add up to
/// `total` (each is published when accepted).
fn held(host: &Host, total: u64) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = status(host);
        let held: Vec<u64> = workers(&text)
            .iter()
            .map(|w| w.connections.unwrap_or(0))
            .collect();
        if held.iter().sum::<u64>() == total || Instant::now() > deadline {
            return held;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One worker frozen (SIGSTOP) while 12 connections arrive: the other takes
/// them all (a crowded worker still accepts when the others cannot). Then,
/// with both running, 24 more: the crowded worker leaves them to the other
/// until both hold about half, where without balancing they split about
/// evenly and leave the first worker with twice the other's.
#[test]
fn connections_are_shared_out_evenly_between_workers() {
    if support::skip_on_windows("the supervisor is not built on Windows") {
        return;
    }
    let host = Host::with_c_fixture("crash", &["--workers", "2"]);
    assert!(host.wait_for_log_matching(|l| count(l, "worker ready") == 2, Duration::from_secs(30)));
    let pids: Vec<u32> = workers(&status(&host)).iter().map(|w| w.pid).collect();
    assert_eq!(pids.len(), 2);

    support::send_signal(pids[1], "-STOP");
    let started = Instant::now();
    let mut conns: Vec<RawConn> = (0..12).map(|_| open(&host)).collect();
    let frozen_phase = started.elapsed();
    support::send_signal(pids[1], "-CONT");
    assert_eq!(
        held(&host, 12),
        vec![12, 0],
        "the running worker took every connection while the other was stopped"
    );
    // Each of the ten accepted while crowded waited at most the give-way.
    assert!(frozen_phase < Duration::from_secs(5), "{frozen_phase:?}");

    conns.extend((0..24).map(|_| open(&host)));
    let held = held(&host, 36);
    eprintln!("connections per worker: {held:?}");
    assert_eq!(held.iter().sum::<u64>(), 36, "{held:?}");
    assert!(
        held[0].abs_diff(held[1]) <= 4,
        "the workers hold {held:?} of 36 connections: not shared out"
    );
    // Every connection is served wherever it landed.
    for c in &mut conns {
        let r = c.roundtrip(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.status, 200);
    }
}
