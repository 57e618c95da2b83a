//! Servers by name: starting them on a free loopback port, waiting until they
//! answer, measuring them and stopping them.
//!
//! Names: `host-py` (our isapi-host + pyisapie), `host-c` (our host + the C
//! fixtures), `gunicorn` (gthread), `waitress`, `granian` (WSGI),
//! `bare-hyper` (a plain hyper server inside this binary; bench only) and
//! `cmd:<shell template>` with `{port}`, `{app}` (`module:callable`) and
//! `{dir}` (the WSGI fixture directory) placeholders.
//!
//! The Windows builds run under Wine, from the layout `ci/windows.sh` writes
//! (`--windows-out`, default `target/windows/out`): `host-c-win` is
//! `bin/isapi-host.exe` with the PE fixtures of `fixtures/` (`hello.dll`, ...),
//! `host-py-win-py3XX` is `py3XX/isapi-host.exe` with the `pyisapie.dll` and
//! embeddable CPython of that folder, and `host-py-win` the first `py3XX`
//! folder there (or `--windows-python`). Paths handed to them are Wine's
//! `Z:\...` form; their stdout and stderr are pipes (embedded CPython under
//! Wine cannot start with a regular file as its stderr).

mod command;
mod env;
mod running;
mod spec;

pub use command::HOST_C_MAPS;
pub use env::{
    Env, Tuning, available_c_fixtures, available_c_fixtures_for, compile_c_fixture,
    default_host_bin, find_repo, wine_path,
};
pub use running::{Running, kill_all_groups, start};
pub use spec::{KNOWN, ServerSpec, UrlTarget};
