//! The server variables of one request, fetched from the ECB before the GIL is taken, all
//! in one buffer; and where the extension's own URL prefix comes from.

use std::ffi::CStr;
use std::io;
use std::ops::Range;

use crate::ffi::Ecb;
use crate::mount;

/// Where the extension's own URL prefix comes from (decided once per process).
#[derive(Debug, Clone)]
pub(crate) enum BaseSource {
    /// `base` from the configuration.
    Fixed(Vec<u8>),
    /// The server's `SCRIPT_NAME` (isapi-host: the mount prefix).
    ScriptName,
    /// IIS: the application's virtual path from `APPL_MD_PATH` (IIS puts the whole URL in
    /// `SCRIPT_NAME` for wildcard handler mappings).
    IisApplication,
}

impl BaseSource {
    /// Decides from the configuration and the server's `SERVER_SOFTWARE`.
    pub(crate) fn detect(configured: Option<&str>, ecb: Ecb) -> Self {
        if let Some(base) = configured {
            return Self::Fixed(base.as_bytes().to_vec());
        }
        let mut buf = Vec::new();
        let iis = ecb
            .server_variable(c"SERVER_SOFTWARE", &mut buf)
            .unwrap_or(false)
            && buf.starts_with(b"Microsoft-IIS");
        if iis {
            Self::IisApplication
        } else {
            Self::ScriptName
        }
    }
}

/// A value of [`RequestInfo`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Var {
    /// The extension's own URL prefix ([`BaseSource`]).
    Base,
    /// `URL`: the request path, percent-decoded.
    Url,
    /// `SERVER_PROTOCOL`.
    Protocol,
    /// `SERVER_NAME`.
    ServerName,
    /// `SERVER_PORT`.
    ServerPort,
    /// `REMOTE_ADDR`.
    RemoteAddr,
    /// `REMOTE_PORT` (empty if the server has none).
    RemotePort,
    /// `HTTPS` (`on` or `off`).
    Https,
    /// `ALL_RAW`: the request headers as `Name: value` lines.
    AllRaw,
}

impl Var {
    const COUNT: usize = 9;

    /// The server variables fetched for every request, in this order (after the base).
    const FETCHED: [(Self, &'static CStr); 8] = [
        (Self::Url, c"URL"),
        (Self::Protocol, c"SERVER_PROTOCOL"),
        (Self::ServerName, c"SERVER_NAME"),
        (Self::ServerPort, c"SERVER_PORT"),
        (Self::RemoteAddr, c"REMOTE_ADDR"),
        (Self::RemotePort, c"REMOTE_PORT"),
        (Self::Https, c"HTTPS"),
        (Self::AllRaw, c"ALL_RAW"),
    ];
}

/// Server variables of one request, fetched before taking the GIL, in one buffer.
#[derive(Debug, Default)]
pub(crate) struct RequestInfo {
    buf: Vec<u8>,
    /// Where each [`Var`] is in `buf`.
    ranges: [Range<usize>; Var::COUNT],
}

impl RequestInfo {
    /// Fetches the base (as `base` says) and the [`Var::FETCHED`] variables.
    pub(crate) fn gather(ecb: Ecb, base: &BaseSource) -> io::Result<Self> {
        let mut buf = Vec::with_capacity(1024);
        let mut ranges: [Range<usize>; Var::COUNT] = Default::default();
        let var = |name: &CStr, buf: &mut Vec<u8>| -> io::Result<Range<usize>> {
            let start = buf.len();
            ecb.append_server_variable(name, buf)?;
            Ok(start..buf.len())
        };
        ranges[Var::Base as usize] = match base {
            BaseSource::Fixed(b) => {
                buf.extend_from_slice(b);
                0..buf.len()
            }
            BaseSource::ScriptName => var(c"SCRIPT_NAME", &mut buf)?,
            BaseSource::IisApplication => {
                let md = var(c"APPL_MD_PATH", &mut buf)?;
                let path = mount::iis_application_path(&buf[md.clone()]);
                buf.truncate(md.start);
                buf.extend_from_slice(&path);
                md.start..buf.len()
            }
        };
        for (which, name) in Var::FETCHED {
            ranges[which as usize] = var(name, &mut buf)?;
        }
        Ok(Self { buf, ranges })
    }

    /// The value of `var`.
    pub(crate) fn get(&self, var: Var) -> &[u8] {
        &self.buf[self.ranges[var as usize].clone()]
    }

    /// Whether the request came over TLS (`HTTPS` is `on`).
    pub(crate) fn https(&self) -> bool {
        self.get(Var::Https).eq_ignore_ascii_case(b"on")
    }
}
