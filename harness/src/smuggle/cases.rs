//! The request-smuggling cases: the classic desync shapes (CL.TE, TE.CL,
//! TE.TE with an obfuscated `Transfer-Encoding`) and their variants, each as
//! the raw bytes one attacking client sends.
//!
//! Every request line names its role in its path, with the case's unique id:
//! `/a/<id>` (and `/a/<id>/2`) are requests the client means, answered on its
//! own connection; `/smuggled/<id>` is a request hidden in a body (under the
//! RFC 9112 reading, or under one of two conflicting readings). The checks are
//! in [`super::run`].

/// One case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short name, `shape/variant`.
    pub name: String,
    /// What it sends, for the report.
    pub what: String,
    /// The bytes, with `{id}` for the case's id.
    template: Vec<u8>,
    /// How many `/a/` requests the client means (1, or 2 when pipelined).
    pub meant: usize,
    /// The `/a/` body lengths a consistent reading gives (the extension must
    /// see one of them, when it sees the request at all).
    pub body_lengths: Vec<u64>,
}

impl Case {
    /// The bytes to send, tagged with `id`.
    pub fn bytes(&self, id: &str) -> Vec<u8> {
        let t = String::from_utf8_lossy(&self.template).into_owned();
        // the templates are built from ASCII; ids are ASCII
        t.replace("{id}", id).into_bytes()
    }
}

const HOST: &str = "Host: smuggle.test\r\n";

/// The smuggled request, complete, as it would sit in a body.
fn smuggled() -> String {
    format!("GET /smuggled/{{id}} HTTP/1.1\r\n{HOST}\r\n")
}

/// The smuggled request left open (no blank line), so a following request on
/// the same upstream connection would be swallowed as its headers.
fn smuggled_open() -> String {
    format!("GET /smuggled/{{id}} HTTP/1.1\r\n{HOST}X-Ignore: ")
}

/// The length of `s` once `{id}` is replaced by an id of `ID_LEN` bytes.
fn len_with_id(s: &str) -> usize {
    s.len() + s.matches("{id}").count() * (ID_LEN - "{id}".len())
}

/// The length of every id (`s` + 6 digits).
pub const ID_LEN: usize = 7;

fn case(name: &str, what: &str, raw: String, meant: usize, body_lengths: &[u64]) -> Case {
    Case {
        name: name.to_owned(),
        what: what.to_owned(),
        template: raw.into_bytes(),
        meant,
        body_lengths: body_lengths.to_vec(),
    }
}

/// CL.TE: a Content-Length that covers the whole body, and a chunked body that
/// ends early (at `0`), the smuggled request after it. `te` is the
/// Transfer-Encoding header line(s), as sent.
fn cl_te(name: &str, what: &str, te: &str) -> Case {
    let body = format!("0\r\n\r\n{}", smuggled_open());
    let cl = len_with_id(&body);
    let raw = format!("POST /a/{{id}} HTTP/1.1\r\n{HOST}Content-Length: {cl}\r\n{te}\r\n{body}");
    // chunked: an empty body; Content-Length: all of it
    case(name, what, raw, 1, &[0, cl as u64])
}

/// TE.CL: a chunked body that carries the smuggled request inside its first
/// chunk, and a Content-Length that ends after the chunk-size line.
fn te_cl(name: &str, what: &str, te: &str) -> Case {
    let inner = smuggled();
    let n = len_with_id(&inner);
    let size_line = format!("{n:x}\r\n");
    let body = format!("{size_line}{inner}\r\n0\r\n\r\n");
    let cl = size_line.len();
    let raw = format!("POST /a/{{id}} HTTP/1.1\r\n{HOST}Content-Length: {cl}\r\n{te}\r\n{body}");
    case(name, what, raw, 1, &[n as u64, cl as u64])
}

/// The second request a client means, pipelined after the first.
fn second() -> String {
    format!("GET /a/{{id}}/2 HTTP/1.1\r\n{HOST}\r\n")
}

/// A chunked body whose size line is `size_line` (holding `5`), `hello`, then
/// a second request, pipelined.
fn chunk_line(name: &str, what: &str, size_line: &str) -> Case {
    let raw = format!(
        "POST /a/{{id}} HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n{size_line}hello\r\n0\r\n\r\n{}",
        second()
    );
    case(name, what, raw, 2, &[5])
}

/// A request whose head ends with `headers`, a body of `hello`, then a second
/// request: meant (pipelined) when the headers frame the body as 5 bytes,
/// `smuggled` when another reading of them covers it.
fn with_headers(name: &str, what: &str, headers: &str, lengths: &[u64], smuggle: bool) -> Case {
    let (next, meant) = if smuggle {
        (smuggled(), 1)
    } else {
        (second(), 2)
    };
    let raw = format!("POST /a/{{id}} HTTP/1.1\r\n{HOST}{headers}\r\nhello{next}");
    case(name, what, raw, meant, lengths)
}

/// The obfuscated `Transfer-Encoding` lines of the TE.TE cases.
const TE_VARIANTS: &[(&str, &str)] = &[
    ("plain", "Transfer-Encoding: chunked\r\n"),
    ("xchunked", "Transfer-Encoding: xchunked\r\n"),
    ("space-value", "Transfer-Encoding:  chunked\r\n"),
    (
        "chunked-identity",
        "Transfer-Encoding: chunked, identity\r\n",
    ),
    (
        "identity-chunked",
        "Transfer-Encoding: identity, chunked\r\n",
    ),
    ("tab", "Transfer-Encoding:\tchunked\r\n"),
    ("uppercase", "Transfer-Encoding: CHUNKED\r\n"),
    ("space-before-colon", "Transfer-Encoding : chunked\r\n"),
    ("leading-space-name", " Transfer-Encoding: chunked\r\n"),
    (
        "duplicate",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
    ),
    (
        "duplicate-x",
        "Transfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n",
    ),
    ("obs-fold", "Transfer-Encoding:\r\n chunked\r\n"),
    ("bare-lf-before", "X-Pad: x\nTransfer-Encoding: chunked\r\n"),
    ("bare-lf-after", "Transfer-Encoding: chunked\n"),
    ("vertical-tab", "Transfer-Encoding:\x0bchunked\r\n"),
    ("quoted", "Transfer-Encoding: \"chunked\"\r\n"),
    ("nul", "Transfer-Encoding: chunked\x00\r\n"),
];

/// Every case, in report order.
pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    for (variant, te) in TE_VARIANTS {
        let shown = te.escape_debug().to_string();
        v.push(cl_te(
            &format!("cl.te/{variant}"),
            &format!("Content-Length over all, `{shown}`, `0` chunk then an open GET"),
            te,
        ));
        v.push(te_cl(
            &format!("te.cl/{variant}"),
            &format!("`{shown}`, a chunk holding a GET, Content-Length ending at its size line"),
            te,
        ));
    }
    let s = smuggled();
    let s_len = len_with_id(&s) as u64;
    v.push(with_headers(
        "cl.cl/equal",
        "`Content-Length: 5` twice",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        &[5],
        false,
    ));
    v.push(with_headers(
        "cl.cl/different",
        "`Content-Length: 5` and one covering the smuggled GET",
        &format!("Content-Length: 5\r\nContent-Length: {}\r\n", 5 + s_len),
        &[5, 5 + s_len],
        true,
    ));
    v.push(with_headers(
        "cl.cl/list",
        "`Content-Length: 5, 5`",
        "Content-Length: 5, 5\r\n",
        &[5],
        false,
    ));
    v.push(with_headers(
        "cl.cl/list-different",
        "`Content-Length: 5, N` (N covers the smuggled GET)",
        &format!("Content-Length: 5, {}\r\n", 5 + s_len),
        &[5, 5 + s_len],
        true,
    ));
    v.push(with_headers(
        "cl/plus-sign",
        "`Content-Length: +5`",
        "Content-Length: +5\r\n",
        &[5],
        false,
    ));
    v.push(with_headers(
        "cl/space-before-colon",
        "`Content-Length : 5`",
        "Content-Length : 5\r\n",
        &[5],
        false,
    ));
    v.push(with_headers(
        "cl/obs-fold",
        "`Content-Length:` folded onto `5`",
        "Content-Length:\r\n 5\r\n",
        &[5],
        false,
    ));
    v.push(with_headers(
        "obs-fold/other-header",
        "a folded `X-Folded` header, `Content-Length: 5`",
        "X-Folded: a\r\n b\r\nContent-Length: 5\r\n",
        &[5],
        false,
    ));
    for (variant, line, what) in [
        ("ext-token", "5;name=value\r\n", "valid `5;name=value`"),
        (
            "ext-quoted",
            "5;name=\"v a;l\"\r\n",
            "valid quoted extension",
        ),
        ("ext-bws", "5 ; name = value\r\n", "extension with BWS"),
        ("ext-empty-value", "5;invalid=\r\n", "invalid `5;invalid=`"),
        (
            "ext-unterminated",
            "5;a=\"unterminated\r\n",
            "invalid unterminated quote",
        ),
        ("ext-double-semicolon", "5;;\r\n", "invalid `5;;`"),
        ("ext-control", "5;a=\x01\r\n", "invalid control character"),
        ("size-bare-lf", "5\n", "size line ended by bare LF"),
        ("size-0x", "0x5\r\n", "`0x5`"),
        (
            "size-leading-zeros",
            "0000000000000005\r\n",
            "16 leading zeros",
        ),
        ("size-overflow", "10000000000000005\r\n", "a size over 2^64"),
        ("size-space-before", " 5\r\n", "space before the size"),
    ] {
        v.push(chunk_line(&format!("chunk/{variant}"), what, line));
    }
    v.push(case(
        "bare-lf/head",
        "a whole head with bare LF line ends, `Content-Length: 5`",
        format!(
            "POST /a/{{id}} HTTP/1.1\nHost: smuggle.test\nContent-Length: 5\n\nhello{}",
            second()
        ),
        2,
        &[5],
    ));
    v.push(case(
        "bare-lf/chunk-data",
        "chunk data ended by a bare LF",
        format!(
            "POST /a/{{id}} HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n{}",
            second()
        ),
        2,
        &[5],
    ));
    v.push(case(
        "pipeline/in-body",
        "a GET inside a Content-Length body",
        format!("POST /a/{{id}} HTTP/1.1\r\n{HOST}Content-Length: {s_len}\r\n\r\n{s}"),
        1,
        &[s_len],
    ));
    v.push(case(
        "pipeline/two-requests",
        "two GETs in one write (both meant)",
        format!("GET /a/{{id}} HTTP/1.1\r\n{HOST}\r\nGET /a/{{id}}/2 HTTP/1.1\r\n{HOST}\r\n"),
        2,
        &[0],
    ));
    v.push(case(
        "zero-chunk/get-body",
        "a GET whose Content-Length body is `0\\r\\n\\r\\n` and a GET",
        {
            let body = format!("0\r\n\r\n{s}");
            let n = len_with_id(&body);
            format!("GET /a/{{id}} HTTP/1.1\r\n{HOST}Content-Length: {n}\r\n\r\n{body}")
        },
        1,
        &[0, (5 + s_len)],
    ));
    v.push(case(
        "zero-chunk/get-te",
        "a chunked GET ending at `0\\r\\n\\r\\n`, then a GET (meant)",
        format!(
            "GET /a/{{id}} HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /a/{{id}}/2 HTTP/1.1\r\n{HOST}\r\n"
        ),
        2,
        &[0],
    ));
    let http10_len = len_with_id(&format!("0\r\n\r\n{}", smuggled_open()));
    v.push(case(
        "http10/te",
        "HTTP/1.0 with `Transfer-Encoding: chunked` and a Content-Length",
        {
            let body = format!("0\r\n\r\n{}", smuggled_open());
            let n = len_with_id(&body);
            format!(
                "POST /a/{{id}} HTTP/1.0\r\n{HOST}Connection: keep-alive\r\nContent-Length: {n}\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
            )
        },
        1,
        &[0, http10_len as u64],
    ));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_lengths() {
        let id = "s000001";
        assert_eq!(id.len(), ID_LEN);
        let all = all();
        assert!(all.len() > 40);
        let names: std::collections::HashSet<_> = all.iter().map(|c| &c.name).collect();
        assert_eq!(names.len(), all.len(), "names are unique");
        for c in &all {
            let b = String::from_utf8(c.bytes(id)).unwrap();
            assert!(!b.contains("{id}"), "{}", c.name);
            assert!(b.contains(&format!("/a/{id}")), "{}", c.name);
        }
        // the CL.TE body length is exact once the id is in
        let c = all.iter().find(|c| c.name == "cl.te/plain").unwrap();
        let b = String::from_utf8(c.bytes(id)).unwrap();
        let body = b.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(c.body_lengths[1], body.len() as u64);
    }
}
