//! The settings resolved: defaults, precedence, and the errors of `ServeConfig::resolve`.

use super::settings::parse_map;
use super::*;

/// `serve` with these settings on the command line and no file.
fn cli(settings: Settings) -> ServeArgs {
    ServeArgs {
        settings,
        ..Default::default()
    }
}

#[test]
fn no_arguments_serve_the_demo() {
    let cfg = ServeConfig::resolve(
        ServeArgs::default(),
        Path::new("/lib/libpyisapie.so"),
        Path::new("/demo"),
    )
    .unwrap();
    assert_eq!(
        cfg.maps,
        vec![Mapping {
            prefix: String::new(),
            path: "/lib/libpyisapie.so".into()
        }]
    );
    assert_eq!(cfg.python.unwrap().app, "demo:app");
    assert_eq!(cfg.read_ahead, 49152);
    assert_eq!(cfg.max_body, 30_000_000);
    assert_eq!(cfg.bind, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(cfg.threads, DEFAULT_PYTHON_THREADS);
    assert_eq!(cfg.parallel, 1, "Python runs one thread at a time");
    assert_eq!(cfg.yield_time, crate::pool::YIELD_TIME);
}

#[test]
fn yield_time_is_bounded_and_zero_turns_it_off() {
    let with = |yield_us| {
        ServeConfig::resolve(
            cli(Settings {
                extension: Some("x.so".into()),
                yield_us: Some(yield_us),
                ..Default::default()
            }),
            Path::new("p.so"),
            Path::new("d"),
        )
    };
    assert_eq!(with(0).unwrap().yield_time, Duration::ZERO);
    assert_eq!(with(250).unwrap().yield_time, Duration::from_micros(250));
    let err = with(MAX_YIELD_US + 1).unwrap_err();
    assert!(format!("{err:#}").contains("--yield-us"), "{err:#}");
}

#[test]
fn thread_counts_must_be_positive() {
    for (threads, parallel, io_threads, flag) in [
        (Some(0), None, None, "--threads"),
        (None, Some(0), None, "--parallel"),
        (None, None, Some(0), "--io-threads"),
    ] {
        let args = cli(Settings {
            extension: Some("x.so".into()),
            threads,
            parallel,
            io_threads,
            ..Default::default()
        });
        let err = ServeConfig::resolve(args, Path::new("p.so"), Path::new("d")).unwrap_err();
        assert!(err.to_string().contains(flag), "{err}");
    }
    let args = cli(Settings {
        app: Some("m:app".into()),
        parallel: Some(3),
        ..Default::default()
    });
    let cfg = ServeConfig::resolve(args, Path::new("p.so"), Path::new("d")).unwrap();
    assert_eq!(
        cfg.parallel, 3,
        "an explicit --parallel wins over the Python default"
    );
}

#[test]
fn replicas_run_that_many_python_threads_at_once_up_to_the_cpus() {
    let resolve = |replicas, interpreter, app: bool| {
        let args = cli(Settings {
            app: app.then(|| "m:app".into()),
            extension: (!app).then(|| "x.so".into()),
            replicas,
            interpreter,
            ..Default::default()
        });
        ServeConfig::resolve(args, Path::new("p.so"), Path::new("d"))
    };
    let cpus = crate::pool::cpu_share(1);
    for n in [1, 2, 64] {
        let cfg = resolve(Some(n), None, true).unwrap();
        assert_eq!(cfg.parallel, n.min(cpus), "--replicas {n} on {cpus} CPUs");
        assert_eq!(cfg.threads, DEFAULT_PYTHON_THREADS.max(n));
        let py = cfg.python.unwrap();
        assert_eq!((py.replicas, py.interpreter), (Some(n), None));
    }
    let cfg = resolve(None, Some(InterpreterMode::Shared), true).unwrap();
    assert_eq!(
        cfg.python.unwrap().interpreter,
        Some(InterpreterMode::Shared)
    );
    assert_eq!(cfg.parallel, 1);
    for (replicas, interpreter, app, error) in [
        (
            Some(0),
            None,
            true,
            "--replicas must be from 1 to 64, got 0",
        ),
        (
            Some(65),
            None,
            true,
            "--replicas must be from 1 to 64, got 65",
        ),
        (
            Some(2),
            Some(InterpreterMode::Main),
            true,
            "--replicas 2 needs own-GIL",
        ),
        (Some(2), None, false, "--replicas needs --app"),
        (
            None,
            Some(InterpreterMode::Main),
            false,
            "--interpreter needs --app",
        ),
    ] {
        let e = resolve(replicas, interpreter, app).unwrap_err().to_string();
        assert!(e.contains(error), "{e}");
    }
}

#[test]
#[cfg(unix)] // the supervisor, and so --workers, is Unix-only
fn a_web_garden_shares_the_cpus_among_its_workers() {
    let resolve = |workers, io_threads| {
        let args = cli(Settings {
            extension: Some("x.so".into()),
            workers: Some(workers),
            io_threads,
            ..Default::default()
        });
        ServeConfig::resolve(args, Path::new("p.so"), Path::new("d")).unwrap()
    };
    let cpus = crate::pool::cpu_share(1);
    for workers in [1, 2, cpus, 4 * cpus] {
        let cfg = resolve(workers, None);
        let share = (cpus / workers).max(1);
        assert_eq!(cfg.io_threads, share, "{workers} workers on {cpus} CPUs");
        assert_eq!(cfg.parallel, share, "{workers} workers on {cpus} CPUs");
    }
    assert_eq!(
        resolve(2, Some(3)).io_threads,
        3,
        "an explicit --io-threads wins over the share"
    );
}

#[test]
fn maps_sort_longest_first_and_reject_duplicates() {
    let args = cli(Settings {
        extension: Some("root.so".into()),
        maps: vec![
            parse_map("/a=a.so").unwrap(),
            parse_map("/a/b=b.so").unwrap(),
        ],
        ..Default::default()
    });
    let cfg = ServeConfig::resolve(args, Path::new("p.so"), Path::new("d")).unwrap();
    let prefixes: Vec<_> = cfg.maps.iter().map(|m| m.prefix.as_str()).collect();
    assert_eq!(prefixes, ["/a/b", "/a", ""]);
    assert!(cfg.python.is_none());
    assert_eq!(cfg.threads, DEFAULT_THREADS);
    assert_eq!(cfg.parallel, crate::pool::cpu_share(1));
    assert_eq!(cfg.io_threads, crate::pool::cpu_share(1));

    let dup = cli(Settings {
        maps: vec![
            parse_map("/a=a.so").unwrap(),
            parse_map("/a/=b.so").unwrap(),
        ],
        ..Default::default()
    });
    assert!(ServeConfig::resolve(dup, Path::new("p.so"), Path::new("d")).is_err());
}

#[test]
fn toml_file_is_read_and_command_line_wins() {
    let dir = std::env::temp_dir().join(format!("isapi-host-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("host.toml");
    std::fs::write(
        &file,
        "bind = \"127.0.0.1:9000\"\nread-ahead = 10\nthreads = 3\nparallel = 2\nio-threads = 1\nyield-us = 40\n[[map]]\nprefix = \"/x/\"\npath = \"x.so\"\n",
    )
    .unwrap();
    let args = ServeArgs {
        config: Some(file.clone()),
        settings: Settings {
            threads: Some(5),
            ..Default::default()
        },
        ..Default::default()
    };
    let cfg = ServeConfig::resolve(args, Path::new("p.so"), Path::new("d")).unwrap();
    assert_eq!(cfg.bind, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(cfg.read_ahead, 10);
    assert_eq!(cfg.threads, 5);
    assert_eq!(cfg.parallel, 2);
    assert_eq!(cfg.io_threads, 1);
    assert_eq!(cfg.yield_time, Duration::from_micros(40));
    assert_eq!(cfg.maps[0].prefix, "/x");
    assert_eq!(cfg.maps[0].path, dir.join("x.so"));

    std::fs::write(&file, "no-such-setting = 1\n").unwrap();
    let err = ServeConfig::resolve(
        ServeArgs {
            config: Some(file),
            ..Default::default()
        },
        Path::new("p"),
        Path::new("d"),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("host.toml"), "{err:#}");
}
