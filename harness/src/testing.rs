//! Servers the unit tests share: the bare hyper server on a thread, and a raw
//! server scripted with one answer per framing the readers must handle.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Start the bare hyper server (one thread) on a free port and wait until it
/// accepts connections.
pub(crate) fn start_bare() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    std::thread::spawn(move || {
        let _ = crate::bare::serve(crate::bare::BareArgs {
            bind: addr,
            threads: 1,
            static_dir: None,
        });
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "bare server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    addr
}

/// On the current tokio runtime, a server accepting one connection and
/// answering its four requests, in turn: 100 Continue then a 13-byte
/// "Hello, world!"; the same body chunked (sizes 5 and 8, trailer `T: v`);
/// a head with Content-Length 13 and no body; a close-delimited
/// "close-delimited".
pub(crate) async fn spawn_framing_server() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let answers: [&[u8]; 4] = [
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nHello\r\n8\r\n, world!\r\n0\r\nT: v\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nclose-delimited",
        ];
        for a in answers {
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(a).await.unwrap();
        }
    });
    addr
}
