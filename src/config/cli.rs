//! The command line and the environment: every long option of `serve` is
//! also read from `ISAPI_HOST_<OPTION>` (`--max-body` from
//! `ISAPI_HOST_MAX_BODY`), with the command line first; the positional `APP`;
//! and where each setting came from, for messages ([`Origins`]).
//!
//! The environment is wired here, for every option at once, so that an
//! option added to [`super::Settings`] is readable from it with no more code.
//! A switch takes `1`, `true`, `yes` or `on` (`0`, `false`, `no`, `off`); a
//! repeatable option takes its values separated by commas.

use std::collections::BTreeMap;
use std::ffi::OsString;

use clap::builder::BoolishValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches, parser::ValueSource};

use super::{Cli, Command};

/// The prefix of the environment variables that hold settings.
pub(crate) const ENV_PREFIX: &str = "ISAPI_HOST_";

/// What separates the values of a repeatable option in its variable.
pub(crate) const ENV_LIST_SEPARATOR: char = ',';

/// The help's closing words on where settings come from.
const PRECEDENCE: &str = "\
Every option can also be set in the environment as ISAPI_HOST_<OPTION> (--max-body is \
ISAPI_HOST_MAX_BODY; a switch takes 1 or 0; a repeatable option takes its values \
separated by commas), and in the --config TOML file under its long name (max-body = ...).
Precedence: the command line, then the environment, then the --config file, then the defaults.";

/// The variable that holds option `--long`.
pub(crate) fn env_name(long: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        long.to_ascii_uppercase().replace('-', "_")
    )
}

/// Where the settings given on the command line or in the environment came
/// from, by clap id (the field's name): `--app`, `the positional APP`,
/// `ISAPI_HOST_APP`. A setting not here comes from the file or the default.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Origins {
    given: BTreeMap<String, String>,
}

impl Origins {
    /// How the setting `id` was given, if on the command line or in the environment.
    pub(crate) fn given(&self, id: &str) -> Option<&str> {
        self.given.get(id).map(String::as_str)
    }

    /// Records that `id` was given as `label`.
    pub(crate) fn set(&mut self, id: &str, label: impl Into<String>) {
        self.given.insert(id.to_owned(), label.into());
    }
}

/// The command, with every long option of `serve` readable from the environment.
pub(crate) fn command() -> clap::Command {
    Cli::command().mut_subcommand("serve", |mut serve| {
        let ids: Vec<_> = serve
            .get_arguments()
            .filter(|a| a.get_long().is_some_and(|l| l != "help"))
            .map(|a| a.get_id().clone())
            .collect();
        for id in ids {
            serve = serve.mut_arg(id, |a| {
                let var = env_name(a.get_long().expect("filtered on long options"));
                match a.get_action() {
                    // Read below, split on commas: clap would take the whole
                    // variable as one value.
                    ArgAction::Append => {
                        let note = format!(" [env: {var}, comma-separated]");
                        let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                        let long = a.get_long_help().map(|h| format!("{h}{note}"));
                        let a = a.help(format!("{help}{note}"));
                        match long {
                            Some(long) => a.long_help(long),
                            None => a,
                        }
                    }
                    ArgAction::SetTrue => a
                        .env(var)
                        .hide_env_values(true)
                        .value_parser(BoolishValueParser::new()),
                    _ => a.env(var).hide_env_values(true),
                }
            });
        }
        serve.after_help(PRECEDENCE)
    })
}

/// Parses the process's command line and environment; exits with clap's
/// message on an error, naming the variable when a value came from one.
pub(crate) fn parse() -> Cli {
    parse_from(std::env::args_os().collect(), |name| {
        std::env::var_os(name).filter(|v| !v.is_empty())
    })
    .unwrap_or_else(|e| e.exit())
}

/// [`parse`] of `argv` with the variables `env` gives (testable).
pub(crate) fn parse_from(
    mut argv: Vec<OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Cli, ParseError> {
    let mut cmd = command();
    let given = argv.clone();
    let annotate = |e: clap::Error| ParseError::new(e, &given, &env);
    let mut matches = cmd.try_get_matches_from_mut(&argv).map_err(annotate)?;
    // Repeatable options from the environment, when the command line has none.
    let mut from_env = Vec::new();
    if let Some(sub) = matches.subcommand_matches("serve") {
        let serve = cmd.find_subcommand("serve").expect("serve");
        for arg in serve.get_arguments() {
            let (Some(long), ArgAction::Append) = (arg.get_long(), arg.get_action()) else {
                continue;
            };
            let id = arg.get_id().as_str();
            if sub.value_source(id) == Some(ValueSource::CommandLine) {
                continue;
            }
            let var = env_name(long);
            let Some(value) = env(&var) else { continue };
            let value = value.to_string_lossy().into_owned();
            for piece in value.split(ENV_LIST_SEPARATOR).map(str::trim) {
                if !piece.is_empty() {
                    argv.push(format!("--{long}={piece}").into());
                }
            }
            from_env.push((id.to_owned(), var));
        }
        if !from_env.is_empty() {
            matches = cmd.try_get_matches_from_mut(&argv).map_err(annotate)?;
        }
    }
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| annotate(e.format(&mut cmd)))?;
    if let (Command::Serve(args), Some(sub)) =
        (&mut cli.command, matches.subcommand_matches("serve"))
    {
        args.origins = origins(&cmd, sub, &from_env);
        if let Some(app) = args.app_positional.take() {
            match (&args.settings.app, args.origins.given("app")) {
                (Some(flag), Some("--app")) if *flag != app => {
                    return Err(annotate(cmd.error(
                        ErrorKind::ArgumentConflict,
                        format!("APP {app:?} and --app {flag:?} name different apps: give one"),
                    )));
                }
                _ => {
                    args.settings.app = Some(app);
                    args.origins.set("app", "the positional APP");
                }
            }
        }
    }
    Ok(cli)
}

/// The origin of every option of `serve` given on the command line or in the environment.
fn origins(cmd: &clap::Command, sub: &ArgMatches, from_env: &[(String, String)]) -> Origins {
    let mut origins = Origins::default();
    let serve = cmd.find_subcommand("serve").expect("serve");
    for arg in serve.get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if let Some((_, var)) = from_env.iter().find(|(i, _)| i == id) {
            origins.set(id, var.clone());
            continue;
        }
        match sub.value_source(id) {
            Some(ValueSource::CommandLine) => origins.set(id, format!("--{long}")),
            Some(ValueSource::EnvVariable) => origins.set(id, env_name(long)),
            _ => {}
        }
    }
    origins
}

/// A command-line error, with the variable named when the bad value came from one.
#[derive(Debug)]
pub(crate) struct ParseError {
    error: clap::Error,
    /// `(from ISAPI_HOST_X)`, put after the option's name in the message.
    from: Option<(String, String)>,
}

impl ParseError {
    fn new(error: clap::Error, argv: &[OsString], env: &impl Fn(&str) -> Option<OsString>) -> Self {
        let from = match error.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(shown)) => {
                let long = shown
                    .strip_prefix("--")
                    .and_then(|s| s.split([' ', '=']).next())
                    .unwrap_or_default();
                let on_command_line = argv.iter().any(|a| {
                    let a = a.to_string_lossy();
                    a.strip_prefix("--")
                        .and_then(|a| a.strip_prefix(long))
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
                });
                (!long.is_empty() && !on_command_line && env(&env_name(long)).is_some())
                    .then(|| (format!("'{shown}'"), env_name(long)))
            }
            _ => None,
        };
        ParseError { error, from }
    }

    /// The message as printed.
    pub(crate) fn message(&self) -> String {
        let text = self.error.render().to_string();
        match &self.from {
            Some((shown, var)) => text.replacen(shown, &format!("{shown} (from {var})"), 1),
            None => text,
        }
    }

    /// Prints the message and exits as clap does (status 2; 0 for --help).
    pub(crate) fn exit(&self) -> ! {
        if self.from.is_none() {
            self.error.exit();
        }
        eprint!("{}", self.message());
        std::process::exit(self.error.exit_code());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Box<super::super::ServeArgs>, String> {
        let argv = ["isapi-host", "serve"]
            .iter()
            .chain(args)
            .map(OsString::from)
            .collect();
        let env: Vec<(String, OsString)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        let cli = parse_from(argv, |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .map_err(|e| e.message())?;
        match cli.command {
            Command::Serve(args) => Ok(args),
            #[allow(unreachable_patterns)]
            _ => unreachable!(),
        }
    }

    // clap reads the scalar options' variables from the process itself: the
    // end-to-end tests (tests/host_cli.rs) set those; these set the lists'.

    #[test]
    fn lists_from_the_environment() {
        let env = [("ISAPI_HOST_PYTHON_PATH", "a, b,")];
        let args = parse(&[], &env).unwrap();
        assert_eq!(
            args.settings.python_path,
            ["a", "b"].map(std::path::PathBuf::from)
        );
        assert_eq!(
            args.origins.given("python_path"),
            Some("ISAPI_HOST_PYTHON_PATH")
        );
        let args = parse(&["--python-path", "c"], &env).unwrap();
        assert_eq!(
            args.settings.python_path,
            ["c"].map(std::path::PathBuf::from)
        );
        assert_eq!(args.origins.given("python_path"), Some("--python-path"));
        let args = parse(&["--python-path=d"], &[]).unwrap();
        assert_eq!(args.origins.given("python_path"), Some("--python-path"));
        assert_eq!(args.origins.given("bind"), None);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let e = parse(&[], &[("ISAPI_HOST_MAP", "nope")]).unwrap_err();
        assert!(e.contains("(from ISAPI_HOST_MAP)"), "{e}");
        let e = parse(&["--map", "nope"], &[("ISAPI_HOST_MAP", "/a=b")]).unwrap_err();
        assert!(!e.contains("(from"), "{e}");
    }

    #[test]
    fn positional_app() {
        let args = parse(&["m:app"], &[]).unwrap();
        assert_eq!(args.settings.app.as_deref(), Some("m:app"));
        assert_eq!(args.origins.given("app"), Some("the positional APP"));
        let args = parse(&["m:app", "--app", "m:app"], &[]).unwrap();
        assert_eq!(args.settings.app.as_deref(), Some("m:app"));
        let e = parse(&["m:app", "--app", "n:app"], &[]).unwrap_err();
        assert!(e.contains("different apps"), "{e}");
        assert!(parse(&["nocolon"], &[]).is_err());
    }

    #[test]
    fn variable_names() {
        assert_eq!(env_name("max-body"), "ISAPI_HOST_MAX_BODY");
        assert_eq!(env_name("no-supervisor"), "ISAPI_HOST_NO_SUPERVISOR");
    }
}
