//! What the fuzz targets share: structured inputs (`arbitrary`) and the
//! encoders that turn them into bytes a valid peer would send.

use arbitrary::Arbitrary;

/// A chunk extension: `;name`, `;name=token` or `;name="quoted"`, with
/// optional whitespace where RFC 9112 allows it (before `;`, around `=`).
#[derive(Arbitrary, Debug, Clone)]
pub struct Ext {
    /// Index into the token alphabet for the name (1..=8 bytes).
    pub name: Vec<u8>,
    /// `None`: no value.
    pub value: Option<ExtValue>,
    /// Whitespace before `;` and around `=`.
    pub bws: (bool, bool, bool),
}

/// A chunk extension's value.
#[derive(Arbitrary, Debug, Clone)]
pub enum ExtValue {
    /// A token.
    Token(Vec<u8>),
    /// A quoted string (any bytes; `"` and `\` escaped, controls replaced).
    Quoted(Vec<u8>),
}

/// One chunk of a valid chunked body.
#[derive(Arbitrary, Debug, Clone)]
pub struct Chunk {
    /// The data (an empty chunk is skipped: it would end the body).
    pub data: Vec<u8>,
    /// Its extensions.
    pub exts: Vec<Ext>,
    /// Leading zeros on the size.
    pub zeros: u8,
    /// Upper-case hex digits.
    pub upper: bool,
}

/// A valid chunked body: chunks, the last chunk, trailers.
#[derive(Arbitrary, Debug, Clone)]
pub struct ChunkedBody {
    /// The chunks.
    pub chunks: Vec<Chunk>,
    /// The last chunk's extensions.
    pub last_exts: Vec<Ext>,
    /// Trailer fields: name (token bytes), value (field-value bytes).
    pub trailers: Vec<(Vec<u8>, Vec<u8>)>,
}

const TCHARS: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A non-empty token made of `raw`'s bytes mapped onto the token alphabet.
pub fn token(raw: &[u8]) -> Vec<u8> {
    let mut t: Vec<u8> = raw
        .iter()
        .take(16)
        .map(|b| TCHARS[*b as usize % TCHARS.len()])
        .collect();
    if t.is_empty() {
        t.push(b'x');
    }
    t
}

fn push_ext(out: &mut Vec<u8>, e: &Ext) {
    if e.bws.0 {
        out.push(b' ');
    }
    out.push(b';');
    out.extend(token(&e.name));
    let Some(v) = &e.value else { return };
    if e.bws.1 {
        out.push(b'\t');
    }
    out.push(b'=');
    if e.bws.2 {
        out.push(b' ');
    }
    match v {
        ExtValue::Token(t) => out.extend(token(t)),
        ExtValue::Quoted(q) => {
            out.push(b'"');
            for &b in q.iter().take(32) {
                match b {
                    b'"' | b'\\' => out.extend([b'\\', b]),
                    b'\t' | b' ' | 0x21..=0x7E | 0x80..=0xFF => out.push(b),
                    _ => out.push(b'?'),
                }
            }
            out.push(b'"');
        }
    }
}

impl ChunkedBody {
    /// The wire bytes, and the data they carry.
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let mut wire = Vec::new();
        let mut data = Vec::new();
        for c in self.chunks.iter().filter(|c| !c.data.is_empty()) {
            wire.extend(std::iter::repeat_n(b'0', usize::from(c.zeros % 4)));
            let size = if c.upper {
                format!("{:X}", c.data.len())
            } else {
                format!("{:x}", c.data.len())
            };
            wire.extend(size.as_bytes());
            for e in c.exts.iter().take(4) {
                push_ext(&mut wire, e);
            }
            wire.extend(b"\r\n");
            wire.extend(&c.data);
            wire.extend(b"\r\n");
            data.extend(&c.data);
        }
        wire.push(b'0');
        for e in self.last_exts.iter().take(4) {
            push_ext(&mut wire, e);
        }
        wire.extend(b"\r\n");
        for (name, value) in self.trailers.iter().take(4) {
            wire.extend(token(name));
            wire.push(b':');
            wire.extend(value.iter().map(|&b| match b {
                b'\t' | b' ' | 0x21..=0x7E | 0x80..=0xFF => b,
                _ => b'?',
            }));
            wire.extend(b"\r\n");
        }
        wire.extend(b"\r\n");
        (wire, data)
    }
}

/// Cut points for splitting bytes into pieces (as `WriteClient` calls or
/// TCP reads would).
pub fn pieces<'a>(bytes: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) % (bytes.len() + 1))
        .collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

/// A TOML basic string holding `s` exactly.
pub fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
