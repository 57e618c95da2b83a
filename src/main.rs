//! The `isapi-host` binary: the command line lives in the library
//! ([`isapi_host::run`]), beside everything it calls.
#![deny(unsafe_code)]

fn main() -> std::process::ExitCode {
    isapi_host::run()
}
