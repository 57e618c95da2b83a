//! The C ISAPI fixtures of `fixtures/isapi-c`: compiled here into shared
//! libraries, or found prebuilt (the PE DLLs `ci/windows.sh` builds), for the
//! `host-c` servers and the end-to-end tests alike. Also the FNV-1a hash of
//! `fixtures/isapi-c/fixture.h`, which the fixtures report bodies with.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

/// Warnings are errors: the fixtures stay clean under every compiler CI uses.
const CFLAGS: &[&str] = &[
    "-shared", "-fPIC", "-pthread", "-Wall", "-Wextra", "-Werror",
];

/// The libraries this process compiled.
static BUILT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Compiles `src_dir/<name>.c` into `out_root/isapi-c/lib<name>.so` (once per
/// process) and returns the library's path. The C compiler is the one the `cc`
/// crate finds (`$CC`, else `cc`), at `-O2`, with `-shared -fPIC -pthread
/// -Wall -Wextra -Werror`, `-I src_dir` and then `extra_flags` (which also name
/// the directory: `isapi-c-<hash>`, so that builds with other flags, such as a
/// sanitizer's, do not replace the plain ones). Fails with the compiler's
/// output.
///
/// The library is written under a process-unique name and renamed, so that
/// several processes may compile the same fixture at once.
pub fn compile(
    src_dir: &Path,
    name: &str,
    out_root: &Path,
    extra_flags: &[String],
) -> Result<PathBuf> {
    let sub = if extra_flags.is_empty() {
        "isapi-c".to_owned()
    } else {
        let hash = fnv1a64(FNV1A64_INIT, extra_flags.join(" ").as_bytes());
        format!("isapi-c-{hash:016x}")
    };
    let out_dir = out_root.join(sub);
    let out = out_dir.join(format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    // one compiler at a time: tests ask for the same fixture from many threads
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.contains(&out) {
        return Ok(out);
    }
    let src = src_dir.join(format!("{name}.c"));
    if !src.is_file() {
        bail!("C fixture {} does not exist", src.display());
    }
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let tmp = out.with_extension(format!("{}.tmp", std::process::id()));
    let triple = target_triple();
    let compiler = cc::Build::new()
        .target(&triple)
        .host(&triple)
        .opt_level(2)
        .cargo_metadata(false)
        .cargo_warnings(false)
        .try_get_compiler()
        .context("finding the C compiler")?;
    let mut cmd = compiler.to_command();
    cmd.args(CFLAGS)
        .arg("-o")
        .arg(&tmp)
        .args(extra_flags)
        .arg(&src)
        .arg("-I")
        .arg(src_dir);
    let output = cmd
        .output()
        .with_context(|| format!("running the C compiler {cmd:?}"))?;
    if !output.status.success() {
        bail!(
            "compiling {} failed ({}):\n{}{}",
            src.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::rename(&tmp, &out).with_context(|| format!("renaming to {}", out.display()))?;
    built.push(out.clone());
    Ok(out)
}

/// The prebuilt fixture `name` in `dir`: `name.dll` for a Windows host (as
/// `ci/windows.sh` names them), else `libname.so` or `name.so`.
pub fn prebuilt(dir: &Path, name: &str, windows: bool) -> Option<PathBuf> {
    prebuilt_names(name, windows)
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// The file names [`prebuilt`] looks for, in order.
pub fn prebuilt_names(name: &str, windows: bool) -> Vec<String> {
    if windows {
        vec![format!("{name}.dll")]
    } else {
        let ext = std::env::consts::DLL_EXTENSION;
        vec![format!("lib{name}.{ext}"), format!("{name}.{ext}")]
    }
}

/// This machine's target triple for `cc` (`$TARGET` when cargo sets it).
fn target_triple() -> String {
    if let Ok(t) = std::env::var("TARGET") {
        return t;
    }
    let arch = std::env::consts::ARCH;
    match std::env::consts::OS {
        "linux" => format!("{arch}-unknown-linux-gnu"),
        "macos" => format!("{arch}-apple-darwin"),
        "windows" => format!("{arch}-pc-windows-msvc"),
        os => format!("{arch}-unknown-{os}"),
    }
}

/// FNV-1a 64-bit, incremental (the same hash as `fixtures/isapi-c/fixture.h`):
/// start with [`FNV1A64_INIT`].
pub fn fnv1a64(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Initial value for [`fnv1a64`].
pub const FNV1A64_INIT: u64 = 0xcbf2_9ce4_8422_2325;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_values() {
        assert_eq!(fnv1a64(FNV1A64_INIT, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(FNV1A64_INIT, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            fnv1a64(fnv1a64(FNV1A64_INIT, b"foo"), b"bar"),
            fnv1a64(FNV1A64_INIT, b"foobar")
        );
    }

    #[test]
    fn prebuilt_names_per_platform() {
        assert_eq!(prebuilt_names("hello", true), ["hello.dll"]);
        assert_eq!(prebuilt_names("hello", false), ["libhello.so", "hello.so"]);
        assert_eq!(prebuilt(Path::new("/nonexistent"), "hello", false), None);
    }

    #[test]
    fn compiles_a_fixture_once() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/isapi-c");
        let out =
            std::env::temp_dir().join(format!("isapi-harness-fixtures-{}", std::process::id()));
        let lib = compile(&src, "hello", &out, &[]).unwrap();
        assert!(lib.is_file(), "{}", lib.display());
        assert!(lib.ends_with("isapi-c/libhello.so"));
        assert_eq!(compile(&src, "hello", &out, &[]).unwrap(), lib);
        let err = compile(&src, "no-such-fixture", &out, &[]).unwrap_err();
        assert!(format!("{err:#}").contains("does not exist"));
        let _ = std::fs::remove_dir_all(&out);
    }
}
