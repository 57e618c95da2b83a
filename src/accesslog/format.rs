//! The line formats, as pure functions: NCSA common and combined (as Apache
//! writes them), W3C extended with IIS's default fields and header, and the
//! daily file names IIS gives each format.

use std::borrow::Cow;
use std::fmt::Write as _;

use time::{OffsetDateTime, UtcOffset};

use super::{Entry, Request};

/// IIS's default W3C fields, in IIS's order.
pub(crate) const W3C_FIELDS: &str = "date time s-ip cs-method cs-uri-stem cs-uri-query s-port \
     cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken";

/// The W3C directives that open a log (a file, or standard output): IIS's
/// four lines, with this host as the software.
pub(crate) fn w3c_header(now: OffsetDateTime) -> String {
    let (date, time) = w3c_datetime(now);
    format!(
        "#Software: isapi-host {}\n#Version: 1.0\n#Date: {date} {time}\n#Fields: {W3C_FIELDS}\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// A W3C line (UTC, as IIS's default), newline included.
pub(crate) fn w3c(e: &Entry<'_>, now: OffsetDateTime) -> String {
    let (date, time) = w3c_datetime(now);
    let empty = || Cow::Borrowed("");
    let (method, stem, query, ua, referer) = match &e.request {
        Request::Parsed(r) => (
            Cow::Borrowed(r.method),
            String::from_utf8_lossy(r.stem),
            with_extra(r.query, &e.extra),
            header(r.headers, "user-agent"),
            header(r.headers, "referer"),
        ),
        Request::Line(line) => {
            let (method, target) = split_line(line);
            let (stem, query) = match target.iter().position(|&b| b == b'?') {
                Some(i) => (&target[..i], &target[i + 1..]),
                None => (target, &b""[..]),
            };
            let lossy = |b| String::from_utf8_lossy(b);
            (lossy(method), lossy(stem), lossy(query), empty(), empty())
        }
    };
    let mut out = String::with_capacity(192);
    let _ = writeln!(
        out,
        "{date} {time} {} {} {} {} {} - {} {} {} {} 0 {} {}",
        e.ends.local_ip,
        field(&method),
        field(&stem),
        field(&query),
        e.ends.local_port,
        e.ends.remote_ip,
        field(&ua),
        field(&referer),
        e.status,
        e.win32,
        e.elapsed.as_millis()
    );
    out
}

/// An NCSA line, newline included: common (`%h %l %u %t "%r" %>s %b`), and
/// with `combined`, `"%{Referer}i" "%{User-Agent}i"` after it. Local time
/// with its offset, as Apache and IIS write it.
pub(crate) fn ncsa(e: &Entry<'_>, now: OffsetDateTime, combined: bool) -> String {
    let mut out = String::with_capacity(192);
    let _ = write!(out, "{} - - [{}] \"", e.ends.remote_ip, ncsa_time(now));
    match &e.request {
        Request::Parsed(r) => {
            escape_into(&mut out, r.method.as_bytes());
            out.push(' ');
            // The target as sent, with the ISAPI log data in its query, as
            // IIS logs it in every format.
            let query = with_extra(r.query, &e.extra);
            let path = r.target.split_once('?').map_or(r.target, |(p, _)| p);
            escape_into(&mut out, path.as_bytes());
            if !query.is_empty() {
                out.push('?');
                escape_into(&mut out, query.as_bytes());
            }
            let _ = write!(out, " {:?}", r.version);
        }
        Request::Line(line) if !line.is_empty() => escape_into(&mut out, line),
        Request::Line(_) => out.push('-'),
    }
    out.push('"');
    let _ = write!(out, " {} ", e.status);
    if e.sent == 0 {
        out.push('-');
    } else {
        let _ = write!(out, "{}", e.sent);
    }
    if combined {
        for name in ["referer", "user-agent"] {
            out.push_str(" \"");
            match &e.request {
                Request::Parsed(r) => match r.headers.get(name) {
                    Some(v) => escape_into(&mut out, v.as_bytes()),
                    None => out.push('-'),
                },
                Request::Line(_) => out.push('-'),
            }
            out.push('"');
        }
    }
    out.push('\n');
    out
}

/// A header's value as text (`""` when absent).
fn header<'h>(headers: &'h http::HeaderMap, name: &str) -> Cow<'h, str> {
    headers
        .get(name)
        .map_or(Cow::Borrowed(""), |v| String::from_utf8_lossy(v.as_bytes()))
}

/// The query with the extension's log data appended, `&`-separated, as IIS
/// logs `HSE_APPEND_LOG_PARAMETER` and `lpszLogData` in `cs-uri-query`.
fn with_extra<'q>(query: &'q str, extra: &[&str; 2]) -> Cow<'q, str> {
    if extra.iter().all(|x| x.is_empty()) {
        return query.into();
    }
    let mut q = query.to_owned();
    for x in extra.iter().filter(|x| !x.is_empty()) {
        if !q.is_empty() {
            q.push('&');
        }
        q.push_str(x);
    }
    q.into()
}

/// A raw request line's method and target (`-` parts when missing).
fn split_line(line: &[u8]) -> (&[u8], &[u8]) {
    let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

/// Apache's escaping of logged text (`ap_escape_logitem`): `"` and `\`
/// backslashed, `\n` `\r` `\t` as such, other control and non-ASCII bytes
/// as `\xhh`; so no value can end a field or forge a line.
fn escape_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

/// A W3C field as IIS writes it: `-` when empty, spaces as `+`, and
/// control bytes as `%XX` (a decoded URL must not start a forged line).
pub(crate) fn field(s: &str) -> String {
    if s.is_empty() {
        return "-".to_owned();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' ' => out.push('+'),
            c if c.is_control() => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `YYYY-MM-DD` and `hh:mm:ss`, in UTC.
pub(crate) fn w3c_datetime(t: OffsetDateTime) -> (String, String) {
    let t = t.to_offset(UtcOffset::UTC);
    (
        format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
    )
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `10/Oct/2000:13:55:36 -0700`, in the time's own offset.
pub(crate) fn ncsa_time(t: OffsetDateTime) -> String {
    let off = t.offset();
    let sign = if off.is_negative() { '-' } else { '+' };
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} {sign}{:02}{:02}",
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second(),
        off.whole_hours().unsigned_abs(),
        off.minutes_past_hour().unsigned_abs(),
    )
}

/// The name IIS gives a day's log file: `u_exYYMMDD.log` for W3C (UTF-8
/// logging's `u_` prefix), `u_ncYYMMDD.log` for the NCSA formats.
pub(crate) fn daily_name(w3c: bool, day: time::Date) -> String {
    format!(
        "u_{}{:02}{:02}{:02}.log",
        if w3c { "ex" } else { "nc" },
        day.year().rem_euclid(100),
        u8::from(day.month()),
        day.day()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_escape_spaces_and_controls() {
        assert_eq!(field(""), "-");
        assert_eq!(field("a b"), "a+b");
        assert_eq!(field("/a\n2026 FORGED"), "/a%0A2026+FORGED");
    }

    #[test]
    fn ncsa_escapes_as_apache() {
        let mut s = String::new();
        escape_into(&mut s, b"a\"b\\c\nd\x01\xc3\xa9 e");
        assert_eq!(s, r#"a\"b\\c\nd\x01\xc3\xa9 e"#);
    }

    #[test]
    fn dates() {
        let t = OffsetDateTime::from_unix_timestamp(971_211_336).unwrap(); // 2000-10-10 20:55:36Z
        assert_eq!(w3c_datetime(t), ("2000-10-10".into(), "20:55:36".into()));
        let pdt = t.to_offset(UtcOffset::from_hms(-7, 0, 0).unwrap());
        assert_eq!(ncsa_time(pdt), "10/Oct/2000:13:55:36 -0700");
        let ist = t.to_offset(UtcOffset::from_hms(5, 30, 0).unwrap());
        assert_eq!(ncsa_time(ist), "11/Oct/2000:02:25:36 +0530");
        assert_eq!(w3c_datetime(ist).1, "20:55:36", "W3C is always UTC");
        let leap = OffsetDateTime::from_unix_timestamp(951_782_400).unwrap();
        assert_eq!(w3c_datetime(leap).0, "2000-02-29");
    }

    #[test]
    fn daily_names_are_iis_names() {
        let d = time::Date::from_calendar_date(2026, time::Month::March, 7).unwrap();
        assert_eq!(daily_name(true, d), "u_ex260307.log");
        assert_eq!(daily_name(false, d), "u_nc260307.log");
        let y2k = time::Date::from_calendar_date(2000, time::Month::December, 31).unwrap();
        assert_eq!(daily_name(true, y2k), "u_ex001231.log");
    }

    #[test]
    fn the_header_names_iis_default_fields() {
        let t = OffsetDateTime::from_unix_timestamp(971_211_336).unwrap();
        let h = w3c_header(t);
        let lines: Vec<&str> = h.lines().collect();
        assert!(lines[0].starts_with("#Software: isapi-host "));
        assert_eq!(lines[1], "#Version: 1.0");
        assert_eq!(lines[2], "#Date: 2000-10-10 20:55:36");
        assert_eq!(
            lines[3],
            "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip \
             cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken"
        );
    }
}
