//! Build script: pass the linked interpreter's library name to the crate, so that the
//! extension can re-open libpython with global symbols at start-up (see `ffi::promote_libpython`).

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    let config = pyo3_build_config::get();
    let soname = match (config.lib_name(), config.shared()) {
        (Some(name), true) if cfg!(unix) => format!("lib{name}.so"),
        _ => String::new(),
    };
    println!("cargo:rustc-env=PYISAPIE_LIBPYTHON={soname}");
    let version = format!("{}.{}", config.version().major, config.version().minor);
    println!("cargo:rustc-env=PYISAPIE_PYTHON_VERSION={version}");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
