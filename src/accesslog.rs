//! The access log: one line per request, under the `access` tracing target.

use std::time::{Duration, SystemTime};

use http::{Version, header};

use crate::config::AccessLogFormat;
use crate::vars::RequestInfo;

/// What one line records.
pub(crate) struct Entry<'a> {
    /// The request.
    pub(crate) info: &'a RequestInfo,
    /// The status sent.
    pub(crate) status: u16,
    /// Body bytes sent.
    pub(crate) sent: u64,
    /// `lpszLogData` as the extension left it.
    pub(crate) log_data: String,
    /// `HSE_APPEND_LOG_PARAMETER` values, joined with `&`.
    pub(crate) params: String,
    /// From the request's head to its end.
    pub(crate) elapsed: Duration,
}

/// Writes the line in the chosen format.
pub(crate) fn emit(format: AccessLogFormat, e: &Entry<'_>) {
    let i = e.info;
    match format {
        AccessLogFormat::Off => {}
        AccessLogFormat::W3c => {
            // IIS's default fields: date time s-ip cs-method cs-uri-stem
            // cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer)
            // sc-status sc-substatus sc-win32-status time-taken. IIS logs
            // HSE_APPEND_LOG_PARAMETER and lpszLogData in cs-uri-query.
            let mut query = i.query().to_owned();
            for extra in [e.params.as_str(), e.log_data.as_str()] {
                if !extra.is_empty() {
                    if !query.is_empty() {
                        query.push('&');
                    }
                    query.push_str(extra);
                }
            }
            let (date, time) = w3c_datetime(SystemTime::now());
            tracing::info!(
                target: "access",
                "{date} {time} {} {} {} {} {} - {} {} {} {} 0 0 {}",
                i.ends.local_ip,
                i.method,
                field(&String::from_utf8_lossy(&i.url)),
                field(&query),
                i.ends.local_port,
                i.ends.remote_ip,
                field(header_str(i, header::USER_AGENT)),
                field(header_str(i, header::REFERER)),
                e.status,
                e.elapsed.as_millis()
            );
        }
        AccessLogFormat::Common => {
            let proto = if i.version == Version::HTTP_10 {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            };
            tracing::info!(
                target: "access",
                "{} - - \"{} {} {proto}\" {} {} \"{}\" \"{}\" {}ms",
                i.ends.remote_ip,
                i.method,
                i.raw_target(),
                e.status,
                e.sent,
                e.log_data,
                e.params,
                e.elapsed.as_millis()
            );
        }
    }
}

fn header_str(i: &RequestInfo, name: header::HeaderName) -> &str {
    i.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A W3C field: `-` when empty, spaces as `+`, control bytes as `%XX` (a
/// decoded URL must not start a forged log line).
fn field(s: &str) -> String {
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
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// UTC `YYYY-MM-DD` and `hh:mm:ss`.
fn w3c_datetime(t: SystemTime) -> (String, String) {
    let t = time::OffsetDateTime::from(t);
    (
        format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn fields_escape_spaces_and_controls() {
        assert_eq!(field(""), "-");
        assert_eq!(field("a b"), "a+b");
        assert_eq!(field("/a\n2026 FORGED"), "/a%0A2026+FORGED");
    }

    #[test]
    fn w3c_dates() {
        assert_eq!(
            w3c_datetime(UNIX_EPOCH),
            ("1970-01-01".into(), "00:00:00".into())
        );
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(w3c_datetime(t), ("2026-11-18".into(), "11:06:40".into()));
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(w3c_datetime(leap).0, "2000-02-29");
    }
}
