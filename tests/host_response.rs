//! Large responses and backpressure: a client that does not read must stall
//! the extension's WriteClient instead of growing the host's memory.

use std::time::Duration;

use crate::support::*;

const MIB: u64 = 1024 * 1024;

fn expected_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// Checks a body against [`expected_byte`] as it streams, keeping none of it.
#[derive(Default)]
struct CheckPattern {
    status: u16,
    framing: Option<Framing>,
    got: u64,
}

impl wire::Sink for CheckPattern {
    fn head(&mut self, head: &wire::Head<'_>, framing: Framing) {
        self.status = head.status;
        self.framing = Some(framing);
    }

    fn data(&mut self, bytes: &[u8]) {
        for (j, &b) in bytes.iter().enumerate() {
            let at = self.got + j as u64;
            assert_eq!(b, expected_byte(at), "byte {at} differs");
        }
        self.got += bytes.len() as u64;
    }
}

#[test]
fn large_response_is_intact() {
    let host = Host::with_c_fixture("echo", &[]);
    let mut c = host.connect();
    let n = 5 * MIB + 3;
    let r = c.roundtrip(&get_req(&format!("/big?{n}")));
    assert_eq!(r.status, 200);
    assert_eq!(r.framing, Framing::ContentLength(n));
    assert!(
        r.body
            .iter()
            .enumerate()
            .all(|(i, &b)| b == expected_byte(i as u64)),
        "body differs"
    );
    let r = c.roundtrip(&get_req("/big?10"));
    assert_eq!(r.body, (0..10).map(expected_byte).collect::<Vec<_>>());
}

#[test]
fn slow_reader_backpressure_bounds_memory() {
    let host = Host::with_c_fixture("echo", &[]);
    assert_eq!(host.get("/big?1000").status, 200); // warm up
    let before = host.rss_kib().expect("VmRSS");
    let n = 256 * MIB;
    let mut c = host.connect();
    c.send(&get_req(&format!("/big?{n}")));
    // Do not read for a while: the extension must block in WriteClient.
    std::thread::sleep(Duration::from_secs(2));
    let stalled = host.rss_kib().expect("VmRSS");
    assert!(
        stalled.saturating_sub(before) < 64 * 1024,
        "host RSS grew by {} KiB while the client was not reading (before {before} KiB)",
        stalled.saturating_sub(before)
    );
    // Now read everything and check it as it streams, without buffering it.
    c.set_read_timeout(Some(Duration::from_secs(60)));
    let mut check = CheckPattern::default();
    c.reader()
        .read_with(ReadOptions::default(), &mut check)
        .expect("read the response");
    assert_eq!(check.status, 200);
    assert_eq!(check.framing, Some(Framing::ContentLength(n)));
    assert_eq!(check.got, n);
    let peak = peak_rss_kib(host.pid()).expect("VmHWM");
    assert!(
        peak.saturating_sub(before) < 64 * 1024,
        "host peak RSS grew by {} KiB for a 256 MiB response",
        peak.saturating_sub(before)
    );
    // The connection is still in sync.
    let r = c.roundtrip(&get_req("/big?3"));
    assert_eq!(r.body, vec![0, 1, 2]);
}

#[test]
fn write_client_fails_when_the_client_goes_away() {
    let host = Host::with_c_fixture("echo", &[]);
    {
        let mut c = host.connect();
        c.send(&get_req(&format!("/big?{}", 1024 * MIB)));
        let got = c.read_raw(1024 * 1024);
        assert!(got.len() > 1000, "the response started");
    }
    assert!(
        host.wait_for_access_log("big: WriteClient failed errno=", Duration::from_secs(15)),
        "WriteClient must fail (not block) once the client is gone:\n{}",
        host.stderr()
    );
    assert_eq!(host.get("/big?5").body, vec![0, 1, 2, 3, 4]);
}
