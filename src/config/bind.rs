//! `--bind`: the address as written (`HOST:PORT`, `[IPV6]:PORT`, or a `HOST`
//! alone, on port 8080) and its resolution at start-up.
//!
//! A name is resolved once, at start-up, and the server listens on one
//! address, as gunicorn does: the name's first IPv4 address (gunicorn binds
//! a name with an IPv4 socket), or its first IPv6 address when it has no
//! IPv4 one. `localhost:8080` is `127.0.0.1:8080`; `[::1]:8080` listens on
//! IPv6's loopback; `0.0.0.0:80` and `[::]:80` on every interface.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use serde::Deserialize;

/// The port of an address written without one.
pub(crate) const DEFAULT_PORT: u16 = 8080;

/// An address to listen on, as written: an IP address or a host name, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct BindAddr {
    /// An IP address (IPv6 without its brackets) or a host name.
    host: String,
    /// The TCP port; 0 picks a free one.
    port: u16,
}

impl TryFrom<String> for BindAddr {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        parse_bind(&s)
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `HOST:PORT`, `[IPV6]:PORT`, `HOST` or `[IPV6]` (port 8080).
pub(crate) fn parse_bind(s: &str) -> Result<BindAddr, String> {
    let usage =
        "expected HOST:PORT, [IPV6]:PORT or HOST (e.g. localhost:8080, 0.0.0.0:80, [::1]:8080)";
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid port {p:?} in {s:?}: {usage}"))
    };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in {s:?}: {usage}"))?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| format!("{v6:?} is not an IPv6 address in {s:?}"))?;
        let port = match after {
            "" => DEFAULT_PORT,
            _ => port(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {after:?} after ']' in {s:?}: {usage}"))?,
            )?,
        };
        (v6, port)
    } else if s.parse::<Ipv6Addr>().is_ok() {
        (s, DEFAULT_PORT)
    } else {
        match s.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(format!(
                    "an IPv6 address takes brackets before its port, as in [::1]:8080; got {s:?}"
                ));
            }
            Some((host, p)) => (host, port(p)?),
            None if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() => {
                return Err(format!(
                    "{s:?} has no host: {usage}; 127.0.0.1:{s} listens on this machine only, 0.0.0.0:{s} on every interface"
                ));
            }
            None => (s, DEFAULT_PORT),
        }
    };
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if !name_ok {
        return Err(format!(
            "{host:?} is not a host name or IP address: {usage}"
        ));
    }
    Ok(BindAddr {
        host: host.to_owned(),
        port,
    })
}

impl BindAddr {
    /// The address to listen on: the IP address itself, or the name's first
    /// IPv4 address (else its first IPv6 one), looked up now.
    pub(crate) fn resolve(&self) -> std::io::Result<SocketAddr> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let all: Vec<SocketAddr> = (self.host.as_str(), self.port).to_socket_addrs()?.collect();
        all.iter()
            .find(|a| a.is_ipv4())
            .or_else(|| all.first())
            .copied()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} has no address", self.host),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        parse_bind(s).unwrap().to_string()
    }

    #[test]
    fn forms() {
        assert_eq!(ok("localhost:8080"), "localhost:8080");
        assert_eq!(ok("0.0.0.0:80"), "0.0.0.0:80");
        assert_eq!(ok("[::1]:9000"), "[::1]:9000");
        assert_eq!(ok("[::]"), "[::]:8080");
        assert_eq!(ok("::1"), "[::1]:8080");
        assert_eq!(ok("example.org"), "example.org:8080");
        assert_eq!(ok("127.0.0.1:0"), "127.0.0.1:0");
        for bad in [
            "",
            ":80",
            "8080",
            "[::1]80",
            "[x]:1",
            "a b:1",
            "host:99999",
            "host:",
        ] {
            assert!(parse_bind(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(parse_bind("8080").unwrap_err().contains("127.0.0.1:8080"));
    }

    #[test]
    fn resolution() {
        let at = |s: &str| parse_bind(s).unwrap().resolve().unwrap();
        assert_eq!(at("127.0.0.1:0"), "127.0.0.1:0".parse().unwrap());
        assert_eq!(at("[::1]:7"), "[::1]:7".parse().unwrap());
        assert_eq!(
            at("localhost:8080"),
            "127.0.0.1:8080".parse().unwrap(),
            "a name binds its first IPv4 address"
        );
    }
}
