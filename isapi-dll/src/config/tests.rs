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
