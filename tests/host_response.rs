//! Large responses and backpressure: a client that does not read must stall
//! the extension's WriteClient instead of growing the host's memory.

use std::io::Read;
use std::time::Duration;

use crate::support::*;

const MIB: u64 = 1024 * 1024;

fn expected_byte(i: u64) -> u8 {
    (i % 251) as u8
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
    // Now read everything and check it, without buffering it all.
    c.set_read_timeout(Some(Duration::from_secs(60)));
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = c.read_raw(1);
        assert_eq!(
            b.len(),
            1,
            "EOF in head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.extend_from_slice(&b);
    }
    let head_s = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head_s.starts_with("http/1.1 200"), "{head_s}");
    assert!(
        head_s.contains(&format!("content-length: {n}\r\n")),
        "{head_s}"
    );
    let mut got = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    while got < n {
        let want = buf.len().min((n - got) as usize);
        let k = c.reader().read(&mut buf[..want]).expect("read body");
        assert!(k > 0, "EOF after {got} of {n} bytes");
        for (j, &b) in buf[..k].iter().enumerate() {
            if b != expected_byte(got + j as u64) {
                panic!("byte {} differs", got + j as u64);
            }
        }
        got += k as u64;
    }
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
        host.wait_for_log("big: WriteClient failed errno=", Duration::from_secs(15)),
        "WriteClient must fail (not block) once the client is gone:\n{}",
        host.stderr()
    );
    assert_eq!(host.get("/big?5").body, vec![0, 1, 2, 3, 4]);
}
