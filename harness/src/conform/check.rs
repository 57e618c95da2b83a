//! Judging one response against a case's expectation, and saying what is
//! wrong in one line.

use std::time::Duration;

use crate::cases::{Expect, pattern, unescape};
use crate::wire::{Response, WireError};

pub(super) fn snippet(b: &[u8]) -> String {
    let max = 60;
    let s: String = b[..b.len().min(max)].escape_ascii().to_string();
    if b.len() > max {
        format!("\"{s}\"...")
    } else {
        format!("\"{s}\"")
    }
}

pub(super) fn is_closed_error(e: &WireError) -> bool {
    match e {
        WireError::EofBeforeHead => true,
        WireError::Io(io) => crate::wire::is_peer_gone(io.kind()),
        _ => false,
    }
}

pub(super) fn describe_err(e: &WireError, timeout: Duration) -> String {
    if e.is_timeout() {
        format!(
            "timed out after {} ms waiting for the response",
            timeout.as_millis()
        )
    } else if is_closed_error(e) {
        "connection closed without a response".to_owned()
    } else {
        format!("bad response: {e}")
    }
}

/// Check the response fields of an expectation (not the read mode fields).
pub fn check_fields(exp: &Expect, r: &Response) -> Result<(), String> {
    if let Some(st) = &exp.status
        && !st.contains(&r.status)
    {
        let want: Vec<String> = st.as_slice().iter().map(u16::to_string).collect();
        return Err(format!(
            "status {}, want {} (body {})",
            r.status,
            want.join(" or "),
            snippet(&r.body)
        ));
    }
    if let Some(reason) = &exp.reason
        && &r.reason != reason
    {
        return Err(format!("reason phrase {:?}, want {reason:?}", r.reason));
    }
    if exp.interim_only && exp.status.is_none() && !(100..200).contains(&r.status) {
        return Err(format!(
            "got final status {} where an interim 1xx was expected",
            r.status
        ));
    }
    if let Some(i) = exp.interim
        && !r.interim.iter().any(|x| x.status == i)
    {
        return Err(format!(
            "no {i} interim response before the final {}",
            r.status
        ));
    }
    if exp.no_interim && !r.interim.is_empty() {
        return Err(format!(
            "unexpected interim {} response",
            r.interim[0].status
        ));
    }
    if let Some(f) = &exp.framing
        && !f.as_slice().iter().any(|n| n.matches(r.framing))
    {
        return Err(format!("framing {:?}, want {:?}", r.framing, f.as_slice()));
    }
    if let Some(b) = &exp.body {
        let want = unescape(b).map_err(|e| e.to_string())?;
        if r.body != want {
            return Err(format!(
                "body {} ({} bytes), want {} ({} bytes)",
                snippet(&r.body),
                r.body.len(),
                snippet(&want),
                want.len()
            ));
        }
    }
    if let Some(n) = exp.body_pattern
        && r.body != pattern(n)
    {
        let first_diff = r.body.iter().zip(pattern(n)).position(|(a, b)| *a != b);
        return Err(format!(
            "body is not the {n}-byte pattern: got {} bytes, first difference at {:?}",
            r.body.len(),
            first_diff
        ));
    }
    if let Some(n) = exp.body_len
        && r.body.len() != n
    {
        return Err(format!(
            "body length {}, want {n} (body {})",
            r.body.len(),
            snippet(&r.body)
        ));
    }
    for c in &exp.body_contains {
        let want = unescape(c).map_err(|e| e.to_string())?;
        if !r
            .body
            .windows(want.len().max(1))
            .any(|w| w == want.as_slice())
        {
            return Err(format!(
                "body lacks {} (body {})",
                snippet(&want),
                snippet(&r.body)
            ));
        }
    }
    for c in &exp.body_lacks {
        let bad = unescape(c).map_err(|e| e.to_string())?;
        if r.body
            .windows(bad.len().max(1))
            .any(|w| w == bad.as_slice())
        {
            return Err(format!("body contains {}", snippet(&bad)));
        }
    }
    for (name, value) in &exp.headers {
        match r.header(name) {
            Some(v) if v == value => {}
            Some(v) => return Err(format!("header {name}: {v:?}, want {value:?}")),
            None => return Err(format!("header {name} missing, want {value:?}")),
        }
    }
    for name in &exp.headers_present {
        if r.header(name).is_none() {
            return Err(format!("header {name} missing"));
        }
    }
    for name in &exp.headers_absent {
        if let Some(v) = r.header(name) {
            return Err(format!("header {name}: {v:?} present, want absent"));
        }
    }
    if let Some(tok) = &exp.connection_token
        && !r.connection_has(tok)
    {
        return Err(format!(
            "Connection header {:?} lacks {tok:?}",
            r.headers_all("connection").collect::<Vec<_>>()
        ));
    }
    if !exp.any_of.is_empty() {
        let mut why = Vec::new();
        for (i, alt) in exp.any_of.iter().enumerate() {
            match check_fields(alt, r) {
                Ok(()) => return Ok(()),
                Err(e) => why.push(format!("#{}: {e}", i + 1)),
            }
        }
        return Err(format!("no alternative matched ({})", why.join("; ")));
    }
    Ok(())
}
