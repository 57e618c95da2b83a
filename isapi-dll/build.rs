//! Build script: pass the linked interpreter's library name to the crate, so that the
//! extension can re-open libpython with global symbols at start-up (see
//! `ffi::library::promote_libpython`) and, on Windows, name the `python3XX.dll` it loaded.

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    let config = pyo3_build_config::get();
    // The target's family, not the build machine's (cross builds for Windows run here).
    let windows = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows");
    let library = match (config.lib_name(), config.shared()) {
        (Some(name), _) if windows => format!("{name}.dll"),
        (Some(name), true) => format!("lib{name}.so"),
        _ => String::new(),
    };
    println!("cargo:rustc-env=PYISAPIE_LIBPYTHON={library}");
    let version = format!("{}.{}", config.version().major, config.version().minor);
    println!("cargo:rustc-env=PYISAPIE_PYTHON_VERSION={version}");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
