//! `serve-bare`: a plain hyper HTTP/1.1 server answering the benchmark
//! routes with the same bytes as `fixtures/wsgi/bench_app.py` and the C hello
//! fixture. It is the ceiling our host is measured against. With
//! `--static-dir DIR` it also serves `/static/...` from DIR with tower-http's
//! `ServeDir`, as the host serves `--static` (the `static-10k` workload).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Result;
use bytes::Bytes;
use clap::Args;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tower_http::services::ServeDir;
use tower_http::services::fs::ServeFileSystemResponseBody;

/// The options of `isapi-harness serve-bare`.
#[derive(Args, Debug)]
pub struct BareArgs {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Serve `/static/...` from this directory.
    #[arg(long, value_name = "DIR")]
    pub static_dir: Option<std::path::PathBuf>,
}

/// A response body: one buffer, `n` blocks of 1 KiB with no declared length (chunked),
/// or a static file.
enum Out {
    Full(Option<Bytes>),
    Blocks(usize),
    File(ServeFileSystemResponseBody),
}

impl Body for Out {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if let Out::File(f) = this {
            return Pin::new(f).poll_frame(cx);
        }
        Poll::Ready(match this {
            Out::Full(b) => b.take().map(|b| Ok(Frame::data(b))),
            Out::Blocks(0) => None,
            Out::Blocks(n) => {
                *n -= 1;
                Some(Ok(Frame::data(Bytes::from_static(&[b's'; 1024]))))
            }
            Out::File(_) => unreachable!("polled above"),
        })
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Out::File(f) => f.is_end_stream(),
            _ => matches!(self, Out::Full(None) | Out::Blocks(0)),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Out::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Out::Full(None) => SizeHint::with_exact(0),
            Out::Blocks(_) => SizeHint::default(),
            Out::File(f) => f.size_hint(),
        }
    }
}

fn pattern(n: usize) -> Bytes {
    crate::cases::pattern(n).into()
}

fn resp(ctype: &'static str, body: Bytes) -> Response<Out> {
    let mut r = Response::new(Out::Full(Some(body)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}

async fn handle(
    req: Request<Incoming>,
    cache: std::sync::Arc<[Bytes; 3]>,
    files: Option<ServeDir>,
) -> Result<Response<Out>, Infallible> {
    if let (Some(files), Some(rest)) = (files, req.uri().path().strip_prefix("/static/")) {
        let mut file_req = Request::new(http_body_util::Empty::<Bytes>::new());
        *file_req.uri_mut() = format!("/{rest}").parse().unwrap_or_default();
        *file_req.method_mut() = req.method().clone();
        *file_req.headers_mut() = req.headers().clone();
        return Ok(match files.clone().try_call(file_req).await {
            Ok(r) => r.map(Out::File),
            Err(_) => {
                let mut r = Response::new(Out::Full(None));
                *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                r
            }
        });
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    Ok(match path.as_str() {
        "/echo" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            resp("application/octet-stream", body)
        }
        "/count" => {
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    n += d.len() as u64;
                }
            }
            resp("text/plain", Bytes::from(format!("bytes={n}\n")))
        }
        "/bytes" => {
            let n: usize = query
                .strip_prefix("n=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let body = match n {
                0 => cache[0].clone(),
                10240 => cache[1].clone(),
                1048576 => cache[2].clone(),
                n => pattern(n.min(64 << 20)),
            };
            resp("application/octet-stream", body)
        }
        "/stream" => {
            let mut r = Response::new(Out::Blocks(10));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain"),
            );
            r
        }
        // "/hello" and anything else: the hello bytes, like the C hello fixture
        _ => resp("text/plain", Bytes::from_static(b"Hello, world!")),
    })
}

/// Run the bare server until killed. Prints `... listening on http://ADDR`.
pub fn serve(a: BareArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.bind).await?;
        println!(
            "isapi-harness bare-hyper listening on http://{}",
            listener.local_addr()?
        );
        let cache = std::sync::Arc::new([pattern(0), pattern(10240), pattern(1048576)]);
        let files = a.static_dir.as_ref().map(ServeDir::new);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let cache = cache.clone();
            let files = files.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    handle(req, cache.clone(), files.clone())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}
