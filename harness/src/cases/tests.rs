//! Case files: parsing, validation, request bytes and fragmenting.

use super::*;

const MINIMAL: &str = r#"
cite = "RFC 9112 §9.3"
why = "HTTP/1.1 defaults to the use of persistent connections"
after = "open"

[[step]]
send = "GET /hello HTTP/1.1\r\nHost: conform\r\n\r\n"
[[step.expect]]
status = 200
framing = "content-length"
body = "Hello, world!"
headers = { "Content-Type" = "text/plain" }
"#;

#[test]
fn parse_minimal_case() {
    let c = Case::parse(MINIMAL, "ka-minimal").unwrap();
    assert_eq!(c.name, "ka-minimal");
    assert_eq!(c.targets, vec![Target::Wsgi, Target::Isapi]);
    assert_eq!(c.after, After::Open);
    assert_eq!(c.fragment, Fragment::Whole);
    assert_eq!(c.timeout_ms, 5000);
    assert_eq!(c.steps.len(), 1);
    let e = &c.steps[0].expect[0];
    assert!(e.status.as_ref().unwrap().contains(&200));
    assert!(
        e.framing
            .as_ref()
            .unwrap()
            .contains(&FramingName::ContentLength)
    );
    assert_eq!(e.headers["Content-Type"], "text/plain");
    assert_eq!(
        c.step_bytes(0).unwrap(),
        b"GET /hello HTTP/1.1\r\nHost: conform\r\n\r\n"
    );
    assert_eq!(c.response_count(), 1);
}

#[test]
fn parse_lists_parts_and_alternatives() {
    let text = r#"
name = "explicit"
cite = "RFC 9110 §8.6"
why = "x"
targets = ["wsgi"]
fragment = "random"
seed = 7
after = "as-signalled"
[[step]]
send = ["POST /echo HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n", { chunked = 10, chunk_size = 4 }]
[[step.expect]]
status = [200, 400]
framing = ["chunked", "close"]
or_closed = true
[[step.expect.any_of]]
status = 200
body_pattern = 10
[[step.expect.any_of]]
status = 400
"#;
    let c = Case::parse(text, "ignored").unwrap();
    assert_eq!(c.name, "explicit");
    assert_eq!(c.targets, vec![Target::Wsgi]);
    assert_eq!(c.fragment, Fragment::Random);
    let bytes = c.step_bytes(0).unwrap();
    let tail = &bytes[bytes.len() - 30..];
    assert_eq!(
        tail,
        b"4\r\n\x00\x01\x02\x03\r\n4\r\n\x04\x05\x06\x07\r\n2\r\n\x08\x09\r\n0\r\n\r\n"
    );
    let e = &c.steps[0].expect[0];
    assert_eq!(e.any_of.len(), 2);
    assert_eq!(e.any_of[0].body_pattern, Some(10));
    assert!(e.status.as_ref().unwrap().contains(&400));
    assert!(!e.status.as_ref().unwrap().contains(&500));
}

#[test]
fn parse_rejects_bad_cases() {
    // missing citation
    assert!(Case::parse("cite = \"\"\nwhy = \"x\"\n[[step]]\nsend = \"x\"\n", "a").is_err());
    // unknown field
    assert!(Case::parse("cite = \"a\"\nwhy = \"x\"\nbogus = 1\n[[step]]\n", "a").is_err());
    // no steps
    assert!(Case::parse("cite = \"a\"\nwhy = \"x\"\n", "a").is_err());
    // bad escape
    assert!(
        Case::parse(
            "cite = \"a\"\nwhy = \"x\"\n[[step]]\nsend = \"\\\\xZZ\"\n",
            "a"
        )
        .is_err()
    );
    // unknown framing name
    assert!(
        Case::parse(
            "cite = \"a\"\nwhy = \"x\"\n[[step]]\n[[step.expect]]\nframing = \"gzip\"\n",
            "a"
        )
        .is_err()
    );
}

#[test]
fn unescape_hex() {
    assert_eq!(unescape(r"a\x00b\xffc").unwrap(), b"a\x00b\xffc");
    assert_eq!(unescape("plain\r\n").unwrap(), b"plain\r\n");
    assert!(unescape(r"\x4").is_err());
    assert!(unescape(r"\xg0").is_err());
}

#[test]
fn repeat_and_pattern_parts() {
    let s = Send::Parts(vec![
        Part::Text("ab".into()),
        Part::Repeat {
            repeat: "xy".into(),
            times: 3,
        },
        Part::Pattern { pattern: 3 },
    ]);
    assert_eq!(send_bytes(&s).unwrap(), b"abxyxyxy\x00\x01\x02");
    let p = pattern(600);
    assert_eq!(p[250], 250);
    assert_eq!(p[251], 0);
    assert_eq!(p[599], (599 % 251) as u8);
}

#[test]
fn fragmenting_preserves_bytes() {
    let data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody-without-newline";
    for mode in [
        Fragment::Whole,
        Fragment::Lines,
        Fragment::Bytes,
        Fragment::Random,
    ] {
        let parts = fragment(data, mode, 42);
        assert_eq!(parts.concat(), data.to_vec(), "{mode}");
        assert!(parts.iter().all(|p| !p.is_empty()), "{mode}");
    }
    assert_eq!(fragment(data, Fragment::Whole, 0).len(), 1);
    assert_eq!(fragment(data, Fragment::Bytes, 0).len(), data.len());
    let lines = fragment(data, Fragment::Lines, 0);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0], b"GET / HTTP/1.1\r\n");
    assert_eq!(lines[3], b"body-without-newline");
    assert!(fragment(b"", Fragment::Whole, 0).is_empty());
}

#[test]
fn random_fragmenting_is_seeded() {
    let data = pattern(10_000);
    let a: Vec<usize> = fragment(&data, Fragment::Random, 5)
        .iter()
        .map(|p| p.len())
        .collect();
    let b: Vec<usize> = fragment(&data, Fragment::Random, 5)
        .iter()
        .map(|p| p.len())
        .collect();
    let c: Vec<usize> = fragment(&data, Fragment::Random, 6)
        .iter()
        .map(|p| p.len())
        .collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a[..64].iter().all(|&n| (1..=16).contains(&n)));
}

#[test]
fn repository_cases_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/cases");
    let cases = load_dir(&dir).unwrap();
    for c in &cases {
        assert!(!c.steps.is_empty(), "{}", c.name);
    }
}
