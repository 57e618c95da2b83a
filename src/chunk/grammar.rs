//! The chunked transfer coding (RFC 9112 §7.1), byte by byte: chunk-size lines with their
//! extensions (`token` or `quoted-string` values, BWS only before `;` and around `=`),
//! chunk data and its CRLF, and the trailer section. Nothing is buffered, so a line of any
//! length costs no memory. Both directions use it:
//! - a request's chunked body, as the client sent it ([`super::Framing`]);
//! - an extension's self-chunked response ([`crate::response::ChunkDecoder`]).

/// Where a chunked body is, and what it has carried.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedBody {
    line: Line,
    /// The size being read, then the data still to come.
    size: u64,
    /// Data bytes before the current line.
    data: u64,
}

impl Default for ChunkedBody {
    fn default() -> Self {
        ChunkedBody {
            line: Line::Start,
            size: 0,
            data: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Before the first digit of a chunk size.
    Start,
    /// In the size.
    Size,
    /// Whitespace that must lead to a `;` (after the size or a value).
    BwsSemi,
    /// After `;`, before the extension name.
    BwsName,
    Name,
    /// Whitespace after a name: `=` or `;` must follow.
    BwsAfterName,
    /// After `=`, before the value.
    BwsValue,
    TokenValue,
    Quoted,
    QuotedPair,
    /// After the closing quote.
    AfterQuoted,
    /// The CR of the size line was seen.
    SizeLf,
    /// In chunk data (`size` bytes left).
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    EndLf,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `qdtext` (RFC 9110 §5.6.4).
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..=0xFF)
}

/// What may follow a backslash in a quoted string.
fn is_quoted_pair_char(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7E | 0x80..=0xFF)
}

/// `field-vchar` or whitespace: a byte of a field value.
fn is_field_value_byte(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7E | 0x80..=0xFF)
}

/// The state after one byte of a chunk-size line (from the first byte
/// after `Line::Start`'s digit to its CR), or `None` if the byte is invalid
/// there. `Line::SizeLf` means the CR was seen.
fn size_line_step(state: Line, b: u8) -> Option<Line> {
    use Line::*;
    Some(match (state, b) {
        (Size, b) if b.is_ascii_hexdigit() => Size,
        (Size | TokenValue | AfterQuoted | Name, b'\r') => SizeLf,
        (Size | TokenValue | AfterQuoted | BwsSemi, b) if is_ws(b) => BwsSemi,
        (Size | TokenValue | AfterQuoted | BwsSemi | Name | BwsAfterName, b';') => BwsName,
        (BwsName | BwsAfterName | BwsValue, b) if is_ws(b) => state,
        (Name, b) if is_ws(b) => BwsAfterName,
        (BwsName | Name, b) if is_tchar(b) => Name,
        (Name | BwsAfterName, b'=') => BwsValue,
        (BwsValue | TokenValue, b) if is_tchar(b) => TokenValue,
        (BwsValue, b'"') => Quoted,
        (Quoted, b'"') => AfterQuoted,
        (Quoted, b'\\') => QuotedPair,
        (Quoted, b) if is_qdtext(b) => Quoted,
        (QuotedPair, b) if is_quoted_pair_char(b) => Quoted,
        _ => return None,
    })
}

impl ChunkedBody {
    /// Data bytes before the current line (for a request: how far a body may be read
    /// before an invalid line).
    pub(crate) fn data_before(&self) -> u64 {
        self.data
    }

    /// Consumes bytes of the body, handing each run of chunk data to `data`: how many
    /// bytes it took (all, unless the body ended), and whether the body ended. The error
    /// says what broke the grammar.
    pub(crate) fn feed(
        &mut self,
        bytes: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<(usize, bool), &'static str> {
        use Line::*;
        let mut i = 0;
        while i < bytes.len() {
            if self.line == Data {
                let n = self.size.min((bytes.len() - i) as u64);
                data(&bytes[i..i + n as usize]);
                self.size -= n;
                self.data += n;
                i += n as usize;
                if self.size == 0 {
                    self.line = DataCr;
                }
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.line = match self.line {
                Start => {
                    let d = hex(b).ok_or("chunk size is not hexadecimal")?;
                    self.size = u64::from(d);
                    Size
                }
                SizeLf => match b {
                    b'\n' if self.size == 0 => TrailerStart,
                    b'\n' => Data,
                    _ => return Err("chunk-size line not ended by CRLF"),
                },
                DataCr if b == b'\r' => DataLf,
                DataLf if b == b'\n' => Start,
                DataCr | DataLf => return Err("chunk data not followed by CRLF"),
                TrailerStart if b == b'\r' => EndLf,
                TrailerStart | TrailerName if is_tchar(b) => TrailerName,
                TrailerName if b == b':' => TrailerValue,
                TrailerStart | TrailerName => return Err("invalid trailer field name"),
                TrailerValue if b == b'\r' => TrailerLf,
                TrailerValue if is_field_value_byte(b) => TrailerValue,
                TrailerValue => return Err("invalid byte in a trailer field value"),
                TrailerLf if b == b'\n' => TrailerStart,
                TrailerLf | EndLf if b != b'\n' => return Err("trailer line not ended by CRLF"),
                EndLf => return Ok((i, true)),
                Size if b.is_ascii_hexdigit() => {
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(hex(b).unwrap_or(0))))
                        .ok_or("chunk size overflows")?;
                    Size
                }
                state => size_line_step(state, b).ok_or("invalid chunk extension")?,
            };
        }
        Ok((i, false))
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Is `line` (with its CRLF) a valid `chunk-size [ chunk-ext ] CRLF`?
    fn valid_size_line(line: &[u8]) -> bool {
        let mut c = ChunkedBody::default();
        // A zero size leads to the trailer section, any other to data: either
        // way, the line was consumed whole and valid.
        match c.feed(line, |_| {}) {
            Ok((n, false)) => n == line.len() && matches!(c.line, Line::Data | Line::TrailerStart),
            _ => false,
        }
    }

    #[test]
    fn size_lines_follow_the_rfc_9112_grammar() {
        let valid: &[&[u8]] = &[
            b"20\r\n",
            b"0\r\n",
            b"00000000000000000020\r\n",
            b"aF\r\n",
            b"20;name=value\r\n",
            b"20;name\r\n",
            b"20; a\r\n",
            b"20 ;a=b\r\n",
            b"20\t;\ta\t=\tb\r\n",
            b"20;a = b\r\n",
            b"20;a=b;c=\"d\"\r\n",
            b"20;a=\"x\\\"y\"\r\n",
            b"20;a=\"quoted;value with spaces\"\r\n",
            b"20;a=\"\"\r\n",
            b"20;a=\"\\\t\"\r\n",
            b"20;a=\"\x80\xff\"\r\n",
            b"20;a;b;c\r\n",
            b"20;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~\r\n",
            b"20 ; a ; b = c\r\n",
        ];
        for line in valid {
            assert!(
                valid_size_line(line),
                "{:?}",
                line.escape_ascii().to_string()
            );
        }
        let invalid: &[&[u8]] = &[
            b"20;invalid=\r\n",
            b"20;a=\"unterminated\r\n",
            b"20;;\r\n",
            b"20;\r\n",
            b"20; \r\n",
            b"20;a=b c\r\n",
            b"20;a=b \r\n",
            b"20;a \r\n",
            b"20 \r\n",
            b"20\t\r\n",
            b"20;a=\"x\" \r\n",
            b"20;a=\"x\"y\r\n",
            b"20;=b\r\n",
            b"20;a==b\r\n",
            b"20;a=b=c\r\n",
            b"20;a=\"x\r\n",
            b"20;a=\"x\\\"\r\n",
            b"20;a=\"x\\\x01\"\r\n",
            b"20;a=\"x\x01\"\r\n",
            b"20;a=\"x\x7f\"\r\n",
            b"20;a\x00\r\n",
            b"20;a=b\x01\r\n",
            b"20;a=\x7f\r\n",
            b"20;a\x0bb\r\n",
            b"20;a(b)\r\n",
            b"20;a=b,c\r\n",
            b"20;\xc3\xa9\r\n",
            b"20;a\r\r\n",
            b"20;a\n",
            b"20\n",
            b"20 20\r\n",
            b" 20\r\n",
            b"\r\n",
            b";a\r\n",
            b"0x20\r\n",
            b"-1\r\n",
            b"10000000000000000\r\n",
        ];
        for line in invalid {
            assert!(
                !valid_size_line(line),
                "{:?}",
                line.escape_ascii().to_string()
            );
        }
    }
}
