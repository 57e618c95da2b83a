//! The supervisor's own answer while rapid-fail protection has stopped the
//! application pool: 503 for every request, on the listening socket, with a
//! body that says why and how to restart (IIS answers 503 too).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use crate::vars::Endpoints;

/// The body of every response while rapid-fail protection holds. It names
/// no process id or path: the client may be anyone.
const UNAVAILABLE: &str = "503 Service Unavailable: the application pool is stopped. \
Its worker processes crashed too often (rapid-fail protection, --rapid-fail). \
On the server: see the isapi-host log, fix the cause, then restart the workers with \
`isapi-host ctl start` (add --pid PID, or --control PATH, when several run) \
or by sending SIGHUP to the isapi-host supervisor.\n";

/// Answers every request on `listener` with 503 until aborted.
pub(super) async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let ends = Endpoints::new(remote, local);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|req: http::Request<_>| {
                let resp = http::Response::builder()
                    .status(http::StatusCode::SERVICE_UNAVAILABLE)
                    .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                    .header(http::header::RETRY_AFTER, "60")
                    .body(Full::new(Bytes::from_static(UNAVAILABLE.as_bytes())))
                    .expect("static response");
                let (method, uri) = (req.method(), req.uri());
                crate::accesslog::answered(&ends, method, uri, req.version(), req.headers(), &resp);
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
