//! The reverse proxies put in front of the host: nginx and HAProxy, each
//! started unprivileged from a generated configuration in its own directory
//! (no system configuration, a free loopback port, logs beside the
//! configuration), with keep-alive upstream connections, and a log line per
//! request that says whether the proxy forwarded it.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Which proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// nginx (`proxy_http_version 1.1`, upstream `keepalive 16`).
    Nginx,
    /// HAProxy (`mode http`, `http-reuse always`).
    Haproxy,
}

impl Kind {
    /// The executable's name.
    pub fn program(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }

    /// The executable, if installed (`$PATH`, then `/usr/sbin`).
    pub fn find(self) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
            .map(|d| d.join(self.program()))
            .find(|p| p.is_file())
    }
}

/// One proxy's log line: what it answered and whether the request went upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The status the proxy sent its client.
    pub status: String,
    /// Whether it forwarded the request to the host.
    pub forwarded: bool,
    /// nginx's `$upstream_status` (HAProxy logs the server's name there).
    pub upstream: String,
    /// The request line as the proxy logged it.
    pub request: String,
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    /// Which one.
    pub kind: Kind,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its directory: configuration, logs, pid and temporary files.
    pub dir: PathBuf,
    /// `nginx -v` or `haproxy -v`, for the report.
    pub version: String,
    log: PathBuf,
    child: Child,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether this process runs as root (then nginx needs a `user` for its workers).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn version(exe: &Path) -> String {
    Command::new(exe)
        .arg("-v")
        .output()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines().next().unwrap_or("").trim().to_owned()
        })
        .unwrap_or_default()
}

fn nginx_conf(dir: &Path, port: u16, upstream: SocketAddr) -> String {
    let d = dir.display();
    // As root, nginx's workers switch to `nobody`, whose group is Debian's nogroup.
    let user = if is_root() {
        "user nobody nogroup;\n"
    } else {
        ""
    };
    format!(
        r#"{user}daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format smuggle 'SMUGGLE $status $upstream_status "$request"';
    access_log {d}/access.log smuggle;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream isapi_host {{
        server {upstream};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://isapi_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    )
}

fn haproxy_conf(port: u16, upstream: SocketAddr) -> String {
    format!(
        r#"global
    log stdout format raw local0
defaults
    mode http
    log global
    log-format "SMUGGLE %ST %s %{{+Q}}r"
    option http-keep-alive
    option dontlognull
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
frontend smuggle
    bind 127.0.0.1:{port}
    default_backend isapi_host
backend isapi_host
    server host {upstream}
"#
    )
}

/// Starts `kind` in `dir` (made empty first) in front of `upstream`, and
/// waits until it accepts connections.
pub fn start(kind: Kind, dir: &Path, upstream: SocketAddr) -> Result<Proxy> {
    let exe = kind.find().with_context(|| {
        format!(
            "{} is not installed (apt-get install {}; ci/install.sh does)",
            kind.program(),
            kind.program()
        )
    })?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let port = free_port()?;
    let mut cmd = Command::new(&exe);
    let log;
    match kind {
        Kind::Nginx => {
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, nginx_conf(dir, port, upstream))?;
            log = dir.join("access.log");
            cmd.arg("-p").arg(dir).arg("-c").arg(&conf);
            cmd.stdout(Stdio::from(File::create(dir.join("stdout.log"))?));
        }
        Kind::Haproxy => {
            let conf = dir.join("haproxy.cfg");
            std::fs::write(&conf, haproxy_conf(port, upstream))?;
            log = dir.join("access.log");
            cmd.arg("-db").arg("-f").arg(&conf);
            cmd.stdout(Stdio::from(File::create(&log)?));
        }
    }
    cmd.stderr(Stdio::from(File::create(dir.join("stderr.log"))?))
        .stdin(Stdio::null())
        .current_dir(dir)
        .process_group(0);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let mut proxy = Proxy {
        kind,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        dir: dir.to_owned(),
        version: version(&exe),
        log,
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = proxy.child.try_wait()? {
            let err = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            bail!("{} exited with {status}: {}", kind.program(), err.trim());
        }
        if TcpStream::connect_timeout(&proxy.addr, Duration::from_millis(200)).is_ok() {
            return Ok(proxy);
        }
        if Instant::now() > deadline {
            bail!(
                "{} does not accept on {} after 20 s",
                kind.program(),
                proxy.addr
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Proxy {
    /// The length of the request log now (read the lines after it with [`Proxy::lines_since`]).
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// The request log's lines written after byte `from`.
    pub fn lines_since(&self, from: u64) -> Vec<LogLine> {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(text.len());
        String::from_utf8_lossy(&text[start..])
            .lines()
            .filter_map(|l| parse_line(l.strip_prefix("SMUGGLE ")?))
            .collect()
    }

    /// The tail of its error log (for failure reports).
    pub fn error_tail(&self, n: usize) -> String {
        let name = match self.kind {
            Kind::Nginx => "error.log",
            Kind::Haproxy => "stderr.log",
        };
        let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// `STATUS UPSTREAM "REQUEST"`: nginx's upstream status is `-` when it
/// answered itself, HAProxy's server name `<NOSRV>`.
fn parse_line(rest: &str) -> Option<LogLine> {
    let mut it = rest.splitn(3, ' ');
    let status = it.next()?.to_owned();
    let upstream = it.next()?;
    let request = it.next().unwrap_or("").trim_matches('"').to_owned();
    Some(LogLine {
        status,
        forwarded: upstream != "-" && upstream != "<NOSRV>",
        upstream: upstream.to_owned(),
        request,
    })
}

impl LogLine {
    /// The host's status: nginx's `$upstream_status` when it is one, else the status sent.
    pub fn host_status(&self) -> &str {
        if self.upstream.bytes().all(|b| b.is_ascii_digit()) && !self.upstream.is_empty() {
            &self.upstream
        } else {
            &self.status
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let pgid = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &pgid])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &pgid])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines() {
        let l = parse_line("400 - \"POST /a/s1 HTTP/1.1\"").unwrap();
        assert!(!l.forwarded && l.status == "400" && l.request == "POST /a/s1 HTTP/1.1");
        assert!(parse_line("200 200 \"GET / HTTP/1.1\"").unwrap().forwarded);
        assert!(!parse_line("400 <NOSRV> \"<BADREQ>\"").unwrap().forwarded);
        assert!(parse_line("200 host \"GET / HTTP/1.1\"").unwrap().forwarded);
    }
}
