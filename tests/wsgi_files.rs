//! `wsgi.file_wrapper`: TRANSMIT_FILE for real files (from the current
//! position, honouring the app's Content-Length), iteration for other
//! file-like objects, and close() of the wrapped file.

use std::time::Duration;

use crate::support::{Framing, get_req};
use crate::{body, probe_file, probe_host_with};

#[test]
fn real_files_go_through_transmit_file() {
    let (path, data) = probe_file();
    let host = probe_host_with(&["--trace-callbacks"], &[("PROBE_FILE", path.as_str())]);
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/file"));
    assert_eq!(r.status, 200);
    assert_eq!(r.framing, Framing::ContentLength(data.len() as u64));
    assert!(r.body == data, "the file's bytes");
    assert!(
        host.wait_for_log("HSE_REQ_TRANSMIT_FILE", Duration::from_secs(5)),
        "TRANSMIT_FILE must be used for a real file"
    );
    // from the file's current position
    let r = c.roundtrip(&get_req("/file?150000"));
    assert_eq!(r.framing, Framing::ContentLength(50_000));
    assert!(r.body == data[150_000..]);
    // the app's Content-Length is honoured (and the connection stays in sync)
    let r = c.roundtrip(&get_req("/file-cl?1000"));
    assert_eq!(r.framing, Framing::ContentLength(1000));
    assert!(r.body == data[..1000]);
    let r = c.roundtrip(&get_req("/hello"));
    assert_eq!(body(&r), "Hello, world!");
    // a Content-Length beyond the file: the body is short, the connection closes
    c.send(&get_req("/file-cl?300000"));
    let (raw, closed) = c.read_until_close();
    assert!(raw.ends_with(&data), "the whole file, then nothing");
    assert!(closed);
}

#[test]
fn file_like_objects_are_iterated() {
    let (path, _) = probe_file();
    let host = probe_host_with(&[], &[("PROBE_FILE", path.as_str())]);
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/filelike"));
    assert_eq!(r.framing, Framing::Chunked);
    assert_eq!(body(&r), "from a BytesIO, ".repeat(100));
    assert!(
        r.chunk_sizes.iter().all(|&n| n <= 256),
        "blksize is honoured: {:?}",
        r.chunk_sizes
    );
    let r = c.roundtrip(&get_req("/filelike-cl?15"));
    assert_eq!(
        (body(&r).as_str(), r.framing),
        ("012345678901234", Framing::ContentLength(15))
    );
    let r = c.roundtrip(&get_req("/hello"));
    assert_eq!(body(&r), "Hello, world!");
}

#[test]
fn the_wrapped_file_is_closed() {
    let (path, data) = probe_file();
    let host = probe_host_with(&[], &[("PROBE_FILE", path.as_str())]);
    let r = host.get("/file-closed");
    assert!(r.body == data);
    assert_eq!(body(&host.get("/closed?file:True")), "closed");
}
