//! A raw request head (the first input byte picks the mount) through
//! httparse (what hyper parses with), the host's head checks, the ECB and
//! the server variables; then pyisapie's side: the variables it fetches
//! for every request, its base (from `SCRIPT_NAME`, and as under IIS from
//! `APPL_MD_PATH`, which must agree), and the WSGI `SCRIPT_NAME` /
//! `PATH_INFO` split, which must put the URL back together.
#![no_main]

use std::net::SocketAddr;

use isapi_host::fuzzing::{self, RequestSpec};
use libfuzzer_sys::fuzz_target;
use pyisapie::config::app_spec;
use pyisapie::mount;

const MOUNTS: [&str; 4] = ["", "/app", "/a/b", "/ROOT"];
/// What pyisapie fetches for every request (`server_vars::Var::FETCHED`),
/// and its two sources of the base.
const FETCHED: [&str; 10] = [
    "URL",
    "SERVER_PROTOCOL",
    "SERVER_NAME",
    "SERVER_PORT",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "HTTPS",
    "ALL_RAW",
    "SCRIPT_NAME",
    "APPL_MD_PATH",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, raw)) = data.split_first() else {
        return;
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = req.parse(raw) else {
        return;
    };
    let spec = RequestSpec {
        method: req.method.unwrap_or_default().as_bytes().to_vec(),
        target: req.path.unwrap_or_default().as_bytes().to_vec(),
        minor: req.version.unwrap_or(1),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec()))
            .collect(),
        remote: SocketAddr::from(([192, 0, 2, 1], 50000)),
        local: SocketAddr::from(([127, 0, 0, 1], 8080)),
        script_name: MOUNTS[usize::from(pick) % MOUNTS.len()].to_owned(),
        preload: raw[len..].iter().take(64).copied().collect(),
    };
    let names: Vec<(Vec<u8>, Vec<(Option<u32>, bool)>)> = FETCHED
        .iter()
        .map(|n| {
            (
                n.as_bytes().to_vec(),
                vec![(Some(u32::from(pick) % 8), true), (Some(0), false)],
            )
        })
        .collect();
    let Some(out) = fuzzing::request(&spec, &names) else {
        return;
    };
    let var = |name: &str| {
        let (_, v) = out
            .vars
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .expect("fetched");
        v.clone().unwrap_or_else(|| panic!("{name} unknown"))
    };
    assert_eq!(var("URL"), out.url);
    // pyisapie's base: the host's SCRIPT_NAME; under IIS, APPL_MD_PATH's
    // part after /ROOT. The host gives both: they must agree.
    let script_name = var("SCRIPT_NAME");
    let from_iis = mount::iis_application_path(&var("APPL_MD_PATH"));
    let trimmed = script_name.strip_suffix(b"/").unwrap_or(&script_name);
    assert_eq!(from_iis, trimmed, "APPL_MD_PATH and SCRIPT_NAME disagree");
    let apps: Vec<_> = ["/api/v1", "/api", "/static", ""]
        .iter()
        .map(|p| app_spec(p, "m:app").expect("a valid app"))
        .collect();
    let route = mount::route(&apps, &script_name, &out.url).expect("the root app takes every URL");
    let mut joined = route.script_name.clone();
    joined.extend_from_slice(route.path_info);
    assert_eq!(joined, out.url, "SCRIPT_NAME + PATH_INFO is not the URL");
    assert!(
        !route.script_name.ends_with(b"/"),
        "SCRIPT_NAME ends with /"
    );
    assert!(
        route.path_info.is_empty() || route.path_info.starts_with(b"/"),
        "PATH_INFO"
    );
});
