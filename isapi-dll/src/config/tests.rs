//! The configuration's sources, files and errors.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_toml(text, "test.toml", Path::new("/etc/site"))
}

#[test]
fn full_file() {
    let c = parse(
        r#"
        python_path = ["app", "/abs"]
        virtualenv = "venv"
        optimize = 2
        write_bytecode = false
        debug = true
        log = "logs/py.log"
        log_level = "debug"
        base = "/vdir/"
        [[app]]
        prefix = "/"
        callable = "root:app"
        [[app]]
        prefix = "/api/"
        callable = "pkg.api:make.app"
        "#,
    )
    .unwrap();
    assert_eq!(
        c.python_path,
        [PathBuf::from("/etc/site/app"), PathBuf::from("/abs")]
    );
    assert_eq!(c.virtualenv, Some(PathBuf::from("/etc/site/venv")));
    assert_eq!((c.optimize, c.write_bytecode, c.debug), (2, false, true));
    assert_eq!(
        c.log,
        LogTarget::File(PathBuf::from("/etc/site/logs/py.log"))
    );
    assert_eq!(c.base.as_deref(), Some("/vdir"));
    assert_eq!(c.apps[0].prefix, "/api");
    assert_eq!(
        (c.apps[0].module.as_str(), c.apps[0].attr.as_str()),
        ("pkg.api", "make.app")
    );
    assert_eq!(c.apps[1].prefix, "");
}

#[test]
fn windows_paths_in_the_file() {
    let text = r#"
        python_path = ["app", 'D:\shared', '\\fs\share\lib', '\common']
        virtualenv = "venv"
        python_home = 'C:\Python311'
        log = 'logs\pyisapie.log'
        [[app]]
        callable = "m:app"
        "#;
    let dir = Path::new(r"C:\inetpub\pyisapie");
    let c = parse_toml_in(Style::Windows, text, "pyisapie.toml", dir).unwrap();
    assert_eq!(
        c.python_path,
        [
            PathBuf::from(r"C:\inetpub\pyisapie\app"),
            PathBuf::from(r"D:\shared"),
            PathBuf::from(r"\\fs\share\lib"),
            PathBuf::from(r"C:\common"),
        ]
    );
    assert_eq!(
        c.virtualenv,
        Some(PathBuf::from(r"C:\inetpub\pyisapie\venv"))
    );
    assert_eq!(c.python_home, Some(PathBuf::from(r"C:\Python311")));
    assert_eq!(
        c.log,
        LogTarget::File(PathBuf::from(r"C:\inetpub\pyisapie\logs\pyisapie.log"))
    );
    // the same file beside a DLL on a share
    let share = Path::new(r"\\fs\sites\a");
    let c = parse_toml_in(Style::Windows, text, "pyisapie.toml", share).unwrap();
    assert_eq!(c.python_path[0], PathBuf::from(r"\\fs\sites\a\app"));
    assert_eq!(c.python_path[3], PathBuf::from(r"\\fs\sites\common"));
}

#[test]
fn defaults() {
    let c = parse("[[app]]\ncallable = \"m:app\"\n").unwrap();
    assert_eq!(c.apps[0].prefix, "");
    assert!(c.write_bytecode && !c.debug && c.optimize == 0);
    assert_eq!(c.log, LogTarget::Stderr);
}

#[test]
fn errors_name_the_file_and_problem() {
    let e = parse("python_path = 3\n[[app]]\ncallable='m:a'")
        .unwrap_err()
        .to_string();
    assert!(e.contains("test.toml") && e.contains("python_path"), "{e}");
    let e = parse("").unwrap_err().to_string();
    assert!(e.contains("no [[app]]"), "{e}");
    let e = parse("[[app]]\ncallable='nocolon'")
        .unwrap_err()
        .to_string();
    assert!(e.contains("module:callable"), "{e}");
    let e = parse("[[app]]\ncallable='m:a'\nprefix='x'")
        .unwrap_err()
        .to_string();
    assert!(e.contains("must start with /"), "{e}");
    let e = parse("[[app]]\ncallable='m:a'\nbogus=1")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bogus"), "{e}");
    let e = parse("optimize=3\n[[app]]\ncallable='m:a'")
        .unwrap_err()
        .to_string();
    assert!(e.contains("optimize"), "{e}");
    let e = parse("[[app]]\ncallable='m:a'\n[[app]]\ncallable='n:b'\nprefix='/'")
        .unwrap_err()
        .to_string();
    assert!(e.contains("same prefix"), "{e}");
}

#[test]
fn env_source() {
    let sep = if cfg!(windows) { ";" } else { ":" };
    let env = Env {
        app: Some("demo:app".into()),
        python_path: Some(format!("/a{sep}/b")),
        debug: Some("yes".into()),
        virtual_env: Some("/venv".into()),
        ..Env::default()
    };
    let c = load(&env, None).unwrap();
    assert_eq!(c.source, "PYISAPIE_APP");
    assert_eq!(c.python_path, [PathBuf::from("/a"), PathBuf::from("/b")]);
    assert!(c.debug);
    assert_eq!(c.virtualenv, Some(PathBuf::from("/venv")));
    assert!(c.virtualenv_found);
    let env = Env {
        app: Some("demo:app".into()),
        cwd_venv: Some("/w/.venv".into()),
        ..Env::default()
    };
    assert_eq!(
        load(&env, None).unwrap().virtualenv,
        Some(PathBuf::from("/w/.venv"))
    );
    let hosted = Env {
        app: Some("demo:app".into()),
        app_source: Some("--app".into()),
        ..Env::default()
    };
    assert_eq!(load(&hosted, None).unwrap().source, "--app");
    let bad = Env {
        app: Some("demo".into()),
        ..Env::default()
    };
    assert!(
        load(&bad, None)
            .unwrap_err()
            .to_string()
            .contains("PYISAPIE_APP")
    );
}

#[test]
fn factories() {
    let spec = app_spec("/", "pkg.web:create_app()").unwrap();
    assert_eq!(
        (spec.attr.as_str(), spec.args.as_deref()),
        ("create_app", Some(""))
    );
    assert_eq!(spec.to_string(), "pkg.web:create_app()");
    let spec = app_spec("/", "m:make('prod', debug=False)").unwrap();
    assert_eq!(spec.args.as_deref(), Some("'prod', debug=False"));
    assert_eq!(app_spec("/", "m:app").unwrap().args, None);
    assert!(app_spec("/", "m:make(").is_err());
    assert!(app_spec("/", "m:(x)").is_err());
}

#[test]
fn nothing_configured() {
    let e = load(&Env::default(), Some(Path::new("/nonexistent-dir"))).unwrap_err();
    let msg = e.to_string();
    let looked = Path::new("/nonexistent-dir").join(CONFIG_FILE_NAME);
    assert!(
        msg.contains("PYISAPIE_APP") && msg.contains(&looked.display().to_string()),
        "{msg}"
    );
}

#[test]
fn config_file_beside_library() {
    let dir = std::env::temp_dir().join(format!("pyisapie-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(CONFIG_FILE_NAME), "[[app]]\ncallable='x:y'\n").unwrap();
    let c = load(&Env::default(), Some(&dir)).unwrap();
    assert_eq!(c.apps[0].module, "x");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn interpreter_modes_replicas_and_app_paths() {
    let c = parse(
        r#"
        [[app]]
        prefix = "/a"
        callable = "a:app"
        interpreter = "isolated"
        replicas = 4
        python_path = ["site_a", "/abs/a"]
        [[app]]
        prefix = "/b"
        callable = "b:app"
        interpreter = "shared"
        [[app]]
        prefix = "/c"
        callable = "c:app"
        interpreter = "main"
        [[app]]
        callable = "d:app"
        replicas = 2
        "#,
    )
    .unwrap();
    let by = |p: &str| c.apps.iter().find(|a| a.prefix == p).unwrap();
    let a = by("/a");
    assert_eq!(
        (a.interpreter, a.replicas),
        (Some(InterpreterMode::Isolated), 4)
    );
    assert_eq!(
        a.python_path,
        [PathBuf::from("/etc/site/site_a"), PathBuf::from("/abs/a")]
    );
    assert_eq!(
        (by("/b").interpreter, by("/b").replicas),
        (Some(InterpreterMode::Shared), 1)
    );
    assert_eq!(by("/c").interpreter, Some(InterpreterMode::Main));
    assert!(by("/c").python_path.is_empty());
    // no mode named: the default is decided at start-up, against the Python
    assert_eq!((by("").interpreter, by("").replicas), (None, 2));
    assert_eq!(
        InterpreterMode::default_for(true),
        InterpreterMode::Isolated
    );
    assert_eq!(InterpreterMode::default_for(false), InterpreterMode::Main);
}

#[test]
fn bad_interpreter_and_replicas_are_clear_errors() {
    let e = parse("[[app]]\ncallable='m:a'\ninterpreter='own'")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("test.toml") && e.contains("own") && e.contains("isolated"),
        "{e}"
    );
    for mode in ["main", "shared"] {
        let e = parse(&format!(
            "[[app]]\ncallable='m:a'\ninterpreter='{mode}'\nreplicas=2"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("m:a")
                && e.contains("replicas = 2")
                && e.contains("\"isolated\"")
                && e.contains(&format!("not \"{mode}\"")),
            "{e}"
        );
    }
    // one replica is what every app has: allowed in any mode
    assert!(parse("[[app]]\ncallable='m:a'\ninterpreter='main'\nreplicas=1").is_ok());
    for n in ["0", "65"] {
        let e = parse(&format!("[[app]]\ncallable='m:a'\nreplicas={n}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 1 and 64") && e.contains(n), "{e}");
    }
}

#[test]
fn interpreter_and_replicas_from_the_environment() {
    let env = Env {
        app: Some("m:app".into()),
        interpreter: Some("Shared".into()),
        ..Env::default()
    };
    let c = load(&env, None).unwrap();
    assert_eq!(
        (c.apps[0].interpreter, c.apps[0].replicas),
        (Some(InterpreterMode::Shared), 1)
    );
    let env = Env {
        app: Some("m:app".into()),
        interpreter: Some("isolated".into()),
        replicas: Some("3".into()),
        ..Env::default()
    };
    assert_eq!(load(&env, None).unwrap().apps[0].replicas, 3);
    let env = Env {
        app: Some("m:app".into()),
        interpreter: Some("own".into()),
        ..Env::default()
    };
    let e = load(&env, None).unwrap_err().to_string();
    assert!(
        e.contains("PYISAPIE_INTERPRETER") && e.contains("\"own\""),
        "{e}"
    );
    let env = Env {
        app: Some("m:app".into()),
        interpreter: Some("main".into()),
        replicas: Some("2".into()),
        ..Env::default()
    };
    let e = load(&env, None).unwrap_err().to_string();
    assert!(
        e.contains("PYISAPIE_REPLICAS") && e.contains("\"isolated\""),
        "{e}"
    );
}
