//! Conformance case files (`fixtures/cases/*.toml`): schema, loading and
//! request-byte generation.
//!
//! A case is a list of steps; each step sends bytes (optionally fragmented)
//! and then reads and checks zero or more responses. After the last step the
//! connection state is checked (`after`). See `fixtures/cases/README.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Which kind of server application a case targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A WSGI server running `fixtures/wsgi/conform_app.py` (host-py and the peers).
    Wsgi,
    /// Our host with the C fixtures of `fixtures/isapi-c/` (host-c).
    Isapi,
}

/// How the request bytes of a step are split into writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fragment {
    /// One write.
    #[default]
    Whole,
    /// One write per line (split after every LF).
    Lines,
    /// One write per byte.
    Bytes,
    /// Seeded random split points (pieces of 1 to 16 bytes, then larger).
    Random,
}

impl std::str::FromStr for Fragment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "whole" => Ok(Fragment::Whole),
            "lines" => Ok(Fragment::Lines),
            "bytes" => Ok(Fragment::Bytes),
            "random" => Ok(Fragment::Random),
            _ => Err(format!(
                "unknown fragment mode {s:?} (whole|lines|bytes|random)"
            )),
        }
    }
}

impl fmt::Display for Fragment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fragment::Whole => "whole",
            Fragment::Lines => "lines",
            Fragment::Bytes => "bytes",
            Fragment::Random => "random",
        })
    }
}

/// The connection state required after the last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum After {
    /// Still open, and a follow-up `GET /hello` on it gets its own correct response.
    Open,
    /// Closed by the server (EOF or reset) within `close_timeout_ms`, with no extra bytes.
    Closed,
    /// Open if the last response signalled keep-alive (RFC 9112 §9.3), else closed.
    AsSignalled,
    /// Either, but never desynchronised: a follow-up request gets either a
    /// correct response or EOF.
    #[default]
    Any,
}

impl fmt::Display for After {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            After::Open => "open",
            After::Closed => "closed",
            After::AsSignalled => "as-signalled",
            After::Any => "any",
        })
    }
}

/// One piece of request bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Part {
    /// Literal text. TOML escapes apply, plus `\xHH` for arbitrary bytes.
    Text(String),
    /// `times` copies of `repeat`.
    Repeat {
        /// The text to repeat (escapes as in `Text`).
        repeat: String,
        /// How many copies.
        times: usize,
    },
    /// `pattern` bytes of the shared body pattern (`i % 251`).
    Pattern {
        /// How many bytes.
        pattern: usize,
    },
    /// The body pattern of `chunked` bytes, chunk-encoded in `chunk_size`
    /// pieces, including the last-chunk and the final CRLF.
    Chunked {
        /// Body bytes in all.
        chunked: usize,
        /// Bytes per chunk.
        chunk_size: usize,
    },
}

/// Request bytes: a string or a list of parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Send {
    /// One text (escapes as in [`Part::Text`]).
    One(String),
    /// Parts, concatenated.
    Parts(Vec<Part>),
}

/// One allowed value or a list of allowed values.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// The only allowed value.
    One(T),
    /// Each of these is allowed.
    Many(Vec<T>),
}

impl<T: PartialEq> OneOrMany<T> {
    /// Whether `v` is allowed.
    pub fn contains(&self, v: &T) -> bool {
        match self {
            OneOrMany::One(x) => x == v,
            OneOrMany::Many(xs) => xs.contains(v),
        }
    }
    /// The allowed values.
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(x) => std::slice::from_ref(x),
            OneOrMany::Many(xs) => xs,
        }
    }
}

/// Expected response framing, as in [`crate::wire::Framing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FramingName {
    /// `content-length`.
    ContentLength,
    /// `chunked`.
    Chunked,
    /// `close`: delimited by the server closing the connection.
    Close,
    /// `none`: no body (HEAD, 1xx, 204, 304).
    None,
    /// Content-Length or chunked.
    SelfDelimited,
}

impl FramingName {
    /// Whether framing `f` is the one named.
    pub fn matches(self, f: crate::wire::Framing) -> bool {
        use crate::wire::Framing as F;
        matches!(
            (self, f),
            (FramingName::ContentLength, F::ContentLength(_))
                | (FramingName::Chunked, F::Chunked)
                | (FramingName::Close, F::CloseDelimited)
                | (FramingName::None, F::None)
                | (FramingName::SelfDelimited, F::ContentLength(_) | F::Chunked)
        )
    }
}

/// What one response must look like. All given fields must hold.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Allowed status code(s).
    pub status: Option<OneOrMany<u16>>,
    /// The request was HEAD (the response has no body whatever its headers say).
    #[serde(default)]
    pub head: bool,
    /// Exact reason phrase.
    pub reason: Option<String>,
    /// Read a single 1xx interim response (and nothing more) for this expectation.
    #[serde(default)]
    pub interim_only: bool,
    /// A 1xx interim response with this status must precede the final response.
    pub interim: Option<u16>,
    /// No 1xx interim response may precede the final response.
    #[serde(default)]
    pub no_interim: bool,
    /// Allowed framing(s).
    pub framing: Option<OneOrMany<FramingName>>,
    /// Exact body (same escapes as request text).
    pub body: Option<String>,
    /// Body equals the first N bytes of the shared pattern.
    pub body_pattern: Option<usize>,
    /// Body contains each of these strings.
    #[serde(default)]
    pub body_contains: Vec<String>,
    /// Body contains none of these strings.
    #[serde(default)]
    pub body_lacks: Vec<String>,
    /// Exact body length.
    pub body_len: Option<usize>,
    /// Headers that must be present with exactly this value (names case-insensitive).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers that must be present (any value).
    #[serde(default)]
    pub headers_present: Vec<String>,
    /// Headers that must be absent.
    #[serde(default)]
    pub headers_absent: Vec<String>,
    /// `Connection` must contain this token (case-insensitive).
    pub connection_token: Option<String>,
    /// The response must be detectably incomplete (truncated body or head),
    /// i.e. the server aborted it instead of faking a complete message.
    #[serde(default)]
    pub truncated: bool,
    /// Instead of a response, the server may close the connection (EOF/reset).
    #[serde(default)]
    pub or_closed: bool,
    /// Instead of a response, the server may abort it visibly (truncated body or head).
    #[serde(default)]
    pub or_truncated: bool,
    /// Instead of a response, the server may keep waiting (for a body it was
    /// told is huge): a read timeout passes, and the connection is abandoned.
    #[serde(default)]
    pub or_timeout: bool,
    /// Before parsing, this text must arrive within `marker_within_ms`.
    pub marker: Option<String>,
    /// How long `marker` may take (default 1000 ms).
    pub marker_within_ms: Option<u64>,
    /// Any one of these alternative expectations must hold (each is checked
    /// on its own; fields above apply too).
    #[serde(default)]
    pub any_of: Vec<Expect>,
}

/// One step of a case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Bytes to send (may be absent: just read).
    pub send: Option<Send>,
    /// Overrides the case's fragmenting mode for this step.
    pub fragment: Option<Fragment>,
    /// Sleep this long before sending.
    #[serde(default)]
    pub delay_ms: u64,
    /// Responses to read, in order.
    #[serde(default)]
    pub expect: Vec<Expect>,
}

/// A conformance case, as stored in `fixtures/cases/NAME.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Defaults to the file stem.
    #[serde(default)]
    pub name: String,
    /// Short reference: "RFC 9112 §6.3", "PEP 3333 (Buffering and Streaming)", "IIS: ..."
    pub cite: String,
    /// The sentence of the reference that justifies the expectation.
    pub why: String,
    /// One-line description of what is sent and what is checked.
    #[serde(default)]
    pub description: String,
    /// Which servers the case applies to; default both.
    #[serde(default = "default_targets")]
    pub targets: Vec<Target>,
    /// The C fixture (without .c) the isapi variant needs, when not just hello/echo.
    pub isapi_fixture: Option<String>,
    /// How the request bytes are split into writes.
    #[serde(default)]
    pub fragment: Fragment,
    /// Pause between fragments (default 1 ms when fragmenting).
    pub fragment_delay_ms: Option<u64>,
    /// Seed for `random` fragmenting.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Read timeout per response.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// How long to wait for a close when `after` is `closed`.
    #[serde(default = "default_close_timeout")]
    pub close_timeout_ms: u64,
    /// The state the connection must be in after the last response.
    #[serde(default)]
    pub after: After,
    /// Free-form labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// What to send and read, in order (`[[step]]` tables).
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
    /// Where it was loaded from.
    #[serde(skip)]
    pub file: PathBuf,
}

fn default_targets() -> Vec<Target> {
    vec![Target::Wsgi, Target::Isapi]
}
fn default_seed() -> u64 {
    1
}
fn default_timeout() -> u64 {
    5000
}
fn default_close_timeout() -> u64 {
    3000
}

impl Case {
    /// Parse a case from TOML text; `stem` names it when `name` is absent.
    pub fn parse(text: &str, stem: &str) -> Result<Case> {
        let mut case: Case = toml::from_str(text)?;
        if case.name.is_empty() {
            case.name = stem.to_owned();
        }
        case.validate()?;
        Ok(case)
    }

    fn validate(&self) -> Result<()> {
        if self.cite.trim().is_empty() || self.why.trim().is_empty() {
            bail!("case {}: `cite` and `why` are required", self.name);
        }
        if self.steps.is_empty() {
            bail!("case {}: no [[step]]", self.name);
        }
        if self.targets.is_empty() {
            bail!("case {}: empty targets", self.name);
        }
        for (i, s) in self.steps.iter().enumerate() {
            if let Some(send) = &s.send {
                send_bytes(send).with_context(|| format!("case {} step {}", self.name, i + 1))?;
            }
            for e in &s.expect {
                if let Some(b) = &e.body {
                    unescape(b)
                        .with_context(|| format!("case {} step {}: body", self.name, i + 1))?;
                }
            }
        }
        Ok(())
    }

    /// Whether a step sends a HEAD as its last response-producing request is up
    /// to the case author (`head = true`); this returns the step bytes.
    pub fn step_bytes(&self, step: usize) -> Result<Vec<u8>> {
        match &self.steps[step].send {
            None => Ok(Vec::new()),
            Some(s) => send_bytes(s),
        }
    }

    /// The total number of responses the case reads.
    pub fn response_count(&self) -> usize {
        self.steps.iter().map(|s| s.expect.len()).sum()
    }
}

/// Load all `*.toml` cases of a directory, sorted by name. Names must be unique.
pub fn load_dir(dir: &Path) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading case directory {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("case");
        let mut case =
            Case::parse(&text, stem).with_context(|| format!("parsing {}", path.display()))?;
        case.file = path.clone();
        cases.push(case);
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    for w in cases.windows(2) {
        if w[0].name == w[1].name {
            bail!("duplicate case name {}", w[0].name);
        }
    }
    Ok(cases)
}

/// The shared body pattern: byte `i` is `i % 251`.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Decode `\xHH` escapes (on top of TOML's own escapes) into bytes.
pub fn unescape(s: &str) -> Result<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            let hex = b.get(i + 2..i + 4).context("truncated \\x escape")?;
            let hex = std::str::from_utf8(hex)?;
            out.push(
                u8::from_str_radix(hex, 16).with_context(|| format!("bad \\x escape {hex:?}"))?,
            );
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn send_bytes(send: &Send) -> Result<Vec<u8>> {
    match send {
        Send::One(s) => unescape(s),
        Send::Parts(parts) => {
            let mut out = Vec::new();
            for p in parts {
                match p {
                    Part::Text(s) => out.extend(unescape(s)?),
                    Part::Repeat { repeat, times } => {
                        let unit = unescape(repeat)?;
                        for _ in 0..*times {
                            out.extend_from_slice(&unit);
                        }
                    }
                    Part::Pattern { pattern: n } => out.extend(pattern(*n)),
                    Part::Chunked {
                        chunked,
                        chunk_size,
                    } => {
                        if *chunk_size == 0 {
                            bail!("chunk_size must be > 0");
                        }
                        let body = pattern(*chunked);
                        for c in body.chunks(*chunk_size) {
                            out.extend(format!("{:x}\r\n", c.len()).into_bytes());
                            out.extend_from_slice(c);
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Split `bytes` into the writes of a fragmenting mode.
pub fn fragment(bytes: &[u8], mode: Fragment, seed: u64) -> Vec<&[u8]> {
    match mode {
        Fragment::Whole => {
            if bytes.is_empty() {
                vec![]
            } else {
                vec![bytes]
            }
        }
        Fragment::Bytes => bytes.chunks(1).collect(),
        Fragment::Lines => bytes.split_inclusive(|&b| b == b'\n').collect(),
        Fragment::Random => {
            let mut rng = SplitMix64(seed);
            let mut out = Vec::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                // small pieces through the head, then bigger ones so large bodies stay fast
                let max = if out.len() < 64 { 16 } else { 4096 };
                let n = (1 + (rng.next_u64() % max) as usize).min(rest.len());
                let (a, b) = rest.split_at(n);
                out.push(a);
                rest = b;
            }
            out
        }
    }
}

/// A tiny deterministic PRNG (SplitMix64) for reproducible random splits.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests;
