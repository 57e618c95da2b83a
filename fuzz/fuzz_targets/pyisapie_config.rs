//! pyisapie's configuration: TOML text (`parse_toml`, and `load` through
//! `PYISAPIE_CONFIG`) and the environment (`PYISAPIE_APP`,
//! `PYISAPIE_PYTHONPATH`, ...). A loaded configuration must be valid: at
//! least one app, unique prefixes sorted longest first, `optimize` ≤ 2,
//! every app routable; an error must name its source; and the same input
//! must give the same answer.
#![no_main]

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use pyisapie::config::{self, Config, Env};
use pyisapie_fuzz::toml_string;

#[derive(Arbitrary, Debug)]
struct AppEntry {
    prefix: String,
    callable: String,
}

#[derive(Arbitrary, Debug)]
enum Text {
    /// Any text.
    Raw(String),
    /// A file of the documented shape with fuzzed values.
    Shaped {
        apps: Vec<AppEntry>,
        python_path: Vec<String>,
        optimize: Option<i64>,
        write_bytecode: Option<bool>,
        debug: Option<bool>,
        log: Option<String>,
        log_level: Option<String>,
        base: Option<String>,
        virtualenv: Option<String>,
        extra: String,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    text: Text,
    /// Load through `PYISAPIE_CONFIG` (a file) instead of `parse_toml`.
    through_env: bool,
    app: Option<String>,
    python_path: Option<String>,
    debug: Option<String>,
    log: Option<String>,
    log_level: Option<String>,
    virtual_env: Option<String>,
}

fn shaped(text: &Text) -> String {
    let Text::Shaped {
        apps,
        python_path,
        optimize,
        write_bytecode,
        debug,
        log,
        log_level,
        base,
        virtualenv,
        extra,
    } = text
    else {
        let Text::Raw(t) = text else { unreachable!() };
        return t.clone();
    };
    let mut out = String::new();
    let opt = |out: &mut String, key: &str, v: &Option<String>| {
        if let Some(v) = v {
            out.push_str(&format!("{key} = {}\n", toml_string(v)));
        }
    };
    if !python_path.is_empty() {
        let list: Vec<String> = python_path.iter().map(|p| toml_string(p)).collect();
        out.push_str(&format!("python_path = [{}]\n", list.join(", ")));
    }
    if let Some(o) = optimize {
        out.push_str(&format!("optimize = {o}\n"));
    }
    if let Some(w) = write_bytecode {
        out.push_str(&format!("write_bytecode = {w}\n"));
    }
    if let Some(d) = debug {
        out.push_str(&format!("debug = {d}\n"));
    }
    opt(&mut out, "log", log);
    opt(&mut out, "log_level", log_level);
    opt(&mut out, "base", base);
    opt(&mut out, "virtualenv", virtualenv);
    out.push_str(extra);
    out.push('\n');
    for a in apps.iter().take(8) {
        out.push_str(&format!(
            "[[app]]\nprefix = {}\ncallable = {}\n",
            toml_string(&a.prefix),
            toml_string(&a.callable)
        ));
    }
    out
}

/// What every loaded configuration promises.
fn check(c: &Config) {
    assert!(!c.apps.is_empty(), "no app");
    assert!(c.optimize <= 2, "optimize {}", c.optimize);
    for w in c.apps.windows(2) {
        assert!(w[0].prefix.len() >= w[1].prefix.len(), "not longest first");
    }
    for (i, a) in c.apps.iter().enumerate() {
        assert!(
            a.prefix.is_empty() || (a.prefix.starts_with('/') && !a.prefix.ends_with('/')),
            "prefix {:?}",
            a.prefix
        );
        assert!(!a.module.is_empty() && !a.attr.is_empty(), "callable {a}");
        assert!(
            c.apps[..i].iter().all(|b| b.prefix != a.prefix),
            "prefix {:?} twice",
            a.prefix
        );
        // The app answers its own prefix, unless a longer one sharing it
        // comes first (it cannot: prefixes are unique).
        let route =
            pyisapie::mount::route(&c.apps, b"", a.prefix.as_bytes()).expect("its prefix routes");
        assert_eq!(
            c.apps[route.app].prefix, a.prefix,
            "prefix {:?} routes elsewhere",
            a.prefix
        );
    }
}

fn outcome(r: &Result<Config, config::ConfigError>) -> String {
    match r {
        Ok(c) => {
            check(c);
            format!("{c:?}")
        }
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.starts_with("pyisapie configuration error in "),
                "{text}"
            );
            text
        }
    }
}

/// The input: a flags byte (bit 0: a shaped file and a structured
/// environment from the rest; else bit 1: through PYISAPIE_CONFIG, and
/// the rest is the TOML text, so seeds are real files).
fn input(data: &[u8]) -> Option<Input> {
    let (&flags, rest) = data.split_first()?;
    if flags & 1 == 1 {
        return Input::arbitrary(&mut Unstructured::new(rest)).ok();
    }
    Some(Input {
        text: Text::Raw(String::from_utf8_lossy(rest).into_owned()),
        through_env: flags & 2 == 2,
        app: None,
        python_path: None,
        debug: None,
        log: None,
        log_level: None,
        virtual_env: None,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = input(data) else { return };
    let text = shaped(&input.text);
    let env = Env {
        app: input.app.clone(),
        python_path: input.python_path.clone(),
        debug: input.debug.clone(),
        log: input.log.clone(),
        log_level: input.log_level.clone(),
        virtual_env: input.virtual_env.clone(),
        ..Env::default()
    };
    let base = Path::new("/srv/site");
    let parsed = config::parse_toml(&text, "fuzz.toml", base);
    let first = outcome(&parsed);
    assert_eq!(
        first,
        outcome(&config::parse_toml(&text, "fuzz.toml", base)),
        "not deterministic"
    );
    if let Ok(c) = &parsed {
        for p in &c.python_path {
            assert!(p.is_absolute(), "python_path {p:?} not resolved");
        }
    }
    if input.through_env {
        // PYISAPIE_CONFIG names a file with the text.
        let path = std::env::temp_dir().join(format!("pyisapie-fuzz-{}.toml", std::process::id()));
        std::fs::write(&path, &text).expect("a temporary file");
        let env = Env {
            config: Some(path.display().to_string()),
            ..env
        };
        let loaded = config::load(&env, None);
        outcome(&loaded);
        assert_eq!(
            loaded.is_ok(),
            parsed.is_ok(),
            "the file and the text disagree"
        );
    } else {
        outcome(&config::load(&env, None));
    }
});
