//! One case against one target (the host directly, or a proxy in front of
//! it): the attacking client's connection, then a victim's on a second
//! connection, then what the extension saw (the reflect fixture's log), and
//! the verdicts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::cases::Case;
use super::proxy::Proxy;
use crate::wire::{Conn, Response, WireError};

/// The reflect fixture's log: every request that reached the extension.
#[derive(Debug, Clone)]
pub struct Witness {
    /// The file `REFLECT_LOG` names.
    pub path: PathBuf,
}

/// One request as the extension saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The method.
    pub method: String,
    /// `PATH_INFO`, with `?query` when there was one.
    pub path: String,
    /// The body's length.
    pub bytes: u64,
}

impl Witness {
    /// The log's length now.
    pub fn len(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The requests logged after byte `from`.
    pub fn since(&self, from: u64) -> Vec<Seen> {
        let text = std::fs::read(&self.path).unwrap_or_default();
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(text.len());
        String::from_utf8_lossy(&text[start..])
            .lines()
            .filter_map(parse_seen)
            .collect()
    }
}

/// `seen SEQ METHOD PATH bytes=N fnv=H` (the reflect fixture's line).
pub fn parse_seen(line: &str) -> Option<Seen> {
    let mut it = line.split(' ');
    if it.next()? != "seen" {
        return None;
    }
    let _seq = it.next()?;
    let method = it.next()?.to_owned();
    let path = it.next()?.to_owned();
    let bytes = it.next()?.strip_prefix("bytes=")?.parse().ok()?;
    Some(Seen {
        method,
        path,
        bytes,
    })
}

/// Where a case is sent.
pub struct Target<'a> {
    /// Column label: `direct`, `nginx`, `haproxy`.
    pub label: String,
    /// The address clients connect to.
    pub addr: SocketAddr,
    /// The proxy, when there is one.
    pub proxy: Option<&'a Proxy>,
}

/// A case's outcome on one target.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What the proxy did with the attacking request (`-` when direct).
    pub proxy: String,
    /// What the host did with it.
    pub host: String,
    /// Why it failed; empty when it passed.
    pub failures: Vec<String>,
}

impl Outcome {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// How long to wait for each response the attacker may get.
const ATTACK_WAIT: Duration = Duration::from_millis(1500);
/// How long to wait for a response beyond the ones meant.
const EXTRA_WAIT: Duration = Duration::from_millis(300);
/// How long the victim waits for its response.
const VICTIM_WAIT: Duration = Duration::from_secs(10);

/// What the attacker's connection got.
struct Attack {
    responses: Vec<Response>,
    /// How it ended: `timeout`, `closed`, or a protocol error.
    end: String,
}

fn attack(addr: SocketAddr, bytes: &[u8], meant: usize, scale: f64) -> Attack {
    let mut responses = Vec::new();
    let mut conn = match Conn::connect(addr) {
        Ok(c) => c,
        Err(e) => {
            return Attack {
                responses,
                end: format!("connect failed: {e}"),
            };
        }
    };
    if let Err(e) = conn.send(bytes) {
        return Attack {
            responses,
            end: format!("send failed: {e}"),
        };
    }
    let end = loop {
        let wait = if responses.len() < meant {
            ATTACK_WAIT
        } else {
            EXTRA_WAIT
        };
        let _ = conn.set_read_timeout(Some(wait.mul_f64(scale)));
        match conn.read_response(false) {
            Ok(r) => responses.push(r),
            Err(e) if e.is_timeout() => break "open".to_owned(),
            Err(WireError::EofBeforeHead) => break "closed".to_owned(),
            Err(WireError::Io(e)) if crate::wire::is_peer_gone(e.kind()) => {
                break "reset".to_owned();
            }
            Err(e) => break format!("malformed: {e}"),
        }
        if responses.len() > meant + 2 {
            break "open".to_owned();
        }
    };
    Attack { responses, end }
}

/// The victim: `GET /victim/<id>` on a new connection, which must get its own answer.
fn victim(addr: SocketAddr, id: &str, scale: f64) -> Result<(), String> {
    let mut conn = Conn::connect(addr).map_err(|e| format!("victim: connect: {e}"))?;
    let _ = conn.set_read_timeout(Some(VICTIM_WAIT.mul_f64(scale)));
    conn.send(format!("GET /victim/{id} HTTP/1.1\r\nHost: smuggle.test\r\n\r\n").as_bytes())
        .map_err(|e| format!("victim: send: {e}"))?;
    let r = conn
        .read_response(false)
        .map_err(|e| format!("victim got no response: {e}"))?;
    let body = String::from_utf8_lossy(&r.body);
    let want = format!(" GET /victim/{id} ");
    if r.status != 200 || !body.starts_with("seen ") || !body.contains(&want) {
        return Err(format!(
            "victim got a response that is not its own: {} {:?}",
            r.status,
            body.chars().take(120).collect::<String>()
        ));
    }
    Ok(())
}

/// A short description of the attacker's responses: `200 (ext), 400`.
fn statuses(a: &Attack) -> String {
    let mut parts: Vec<String> = a
        .responses
        .iter()
        .map(|r| {
            if r.body.starts_with(b"seen ") {
                format!("{} (ext)", r.status)
            } else {
                r.status.to_string()
            }
        })
        .collect();
    if parts.is_empty() {
        parts.push("no response".to_owned());
    }
    format!("{}; conn {}", parts.join(", "), a.end)
}

/// Runs `case` tagged `id` against `target`, the extension's log in `witness`.
pub fn run_case(
    case: &Case,
    id: &str,
    target: &Target<'_>,
    witness: &Witness,
    scale: f64,
) -> Outcome {
    let from = witness.len();
    let proxy_from = target.proxy.map(|p| p.log_len()).unwrap_or(0);
    let a = attack(target.addr, &case.bytes(id), case.meant, scale);
    let victim_result = victim(target.addr, id, scale);
    // a request completed by the victim's bytes is served right away; allow it to be logged
    std::thread::sleep(Duration::from_millis(100));
    let seen: Vec<Seen> = witness
        .since(from)
        .into_iter()
        .filter(|s| s.path.contains(id))
        .collect();
    let mut failures = Vec::new();
    if let Err(e) = victim_result {
        failures.push(e);
    }
    let mine = format!("/a/{id}");
    let proxy_lines = target
        .proxy
        .map(|p| p.lines_since(proxy_from))
        .unwrap_or_default();
    match target.proxy {
        // Directly, a request hidden in a body must never run (the host rejects
        // the ambiguous framing, or closes the connection after the request).
        None => {
            for s in seen.iter().filter(|s| s.path.starts_with("/smuggled/")) {
                failures.push(format!(
                    "a smuggled request reached the extension: {} {}",
                    s.method, s.path
                ));
            }
        }
        // Through a proxy, every request that runs must be one the proxy
        // parsed as a request and forwarded: otherwise the two disagree on
        // where a request ends.
        Some(_) => {
            for s in seen.iter().filter(|s| !s.path.starts_with("/victim/")) {
                let target_of = format!(" {}", s.path);
                let forwarded = proxy_lines.iter().any(|l| {
                    l.forwarded
                        && l.request.starts_with(&s.method)
                        && l.request.contains(&format!("{target_of} "))
                });
                if !forwarded {
                    failures.push(format!(
                        "desync: the extension ran {} {}, which the proxy never forwarded",
                        s.method, s.path
                    ));
                }
            }
        }
    }
    let victims = seen
        .iter()
        .filter(|s| s.path.starts_with("/victim/"))
        .count();
    if victims > 1 {
        failures.push(format!(
            "the victim's request reached the extension {victims} times"
        ));
    }
    let meant: Vec<&Seen> = seen.iter().filter(|s| s.path.starts_with(&mine)).collect();
    if meant.len() > case.meant {
        failures.push(format!(
            "the extension ran {} /a/ requests, {} meant",
            meant.len(),
            case.meant
        ));
    }
    if let Some(first) = meant.iter().find(|s| s.path == mine)
        && !case.body_lengths.contains(&first.bytes)
    {
        failures.push(format!(
            "the extension saw a {} B body; a consistent reading gives {:?}",
            first.bytes, case.body_lengths
        ));
    }
    for r in &a.responses {
        let body = String::from_utf8_lossy(&r.body);
        if body.starts_with("seen ") && !body.contains(&format!(" {mine}")) {
            let theirs = body.contains("/victim/");
            if theirs || target.proxy.is_none() || !body.contains("/smuggled/") {
                failures.push(format!(
                    "the attacker got a response that is not its own: {:?}",
                    body.trim_end()
                ));
            }
        }
    }
    let reached = if meant.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = meant
            .iter()
            .map(|s| format!("{} {} B", s.method, s.bytes))
            .collect();
        format!("ext ran {}", parts.join(", "))
    };
    let (proxy, host) = match target.proxy {
        None => (
            "-".to_owned(),
            if reached.is_empty() {
                statuses(&a)
            } else {
                format!("{reached}; {}", statuses(&a))
            },
        ),
        Some(_) => {
            let lines: Vec<_> = proxy_lines
                .iter()
                .filter(|l| !l.request.contains("/victim/"))
                .collect();
            let proxy = if lines.is_empty() {
                format!("no request logged ({})", statuses(&a))
            } else {
                lines
                    .iter()
                    .map(|l| {
                        if l.forwarded {
                            format!("forwarded, {}", l.status)
                        } else {
                            format!("rejected {}", l.status)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let host = if !reached.is_empty() {
                reached
            } else if let Some(l) = lines.iter().find(|l| l.forwarded) {
                format!("answered {}", l.host_status())
            } else {
                "never saw it".to_owned()
            };
            (proxy, host)
        }
    };
    Outcome {
        proxy,
        host,
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_lines() {
        let s = parse_seen("seen 12 POST /a/s000001 bytes=5 fnv=00ff").unwrap();
        assert_eq!(s.method, "POST");
        assert_eq!(s.path, "/a/s000001");
        assert_eq!(s.bytes, 5);
        assert!(parse_seen("garbage").is_none());
    }
}
