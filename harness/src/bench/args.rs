//! The command line of `bench`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::model::App;
use crate::cli::LaunchArgs;

/// The options of `isapi-harness bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Servers to start (repeatable): bare-hyper, host-c, host-py, host-c-win,
    /// host-py-win[-py3XX], granian, gunicorn, waitress, cmd:TEMPLATE; host-py, host-c,
    /// granian and gunicorn@wN for N worker processes, host-py and host-c@single for the
    /// host without its supervisor, host-py@rN for N own-GIL replicas and host-py@main
    /// for the main interpreter (pyisapie's interpreter modes) [default: bare-hyper,
    /// host-c, host-py, granian, gunicorn and waitress, unless --url is given].
    #[arg(long = "server")]
    pub servers: Vec<String>,
    /// Measure a server that is already running, like wrk or oha: GET this http:// URL on
    /// every connection (any 2xx counts); the same rounds, statistics and report.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// With --url: the server's process id, to sample its CPU time per request and its
    /// memory (with its child processes).
    #[arg(long, requires = "url")]
    pub pid: Option<u32>,
    /// Workloads (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "hello")]
    pub app: Vec<App>,
    /// Concurrent keep-alive connections (comma-separated list for scaling runs).
    #[arg(
        short = 'c',
        long = "concurrency",
        value_delimiter = ',',
        default_value = "64"
    )]
    pub concurrency: Vec<usize>,
    /// Measured duration of each run (e.g. 10s, 500ms).
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before each measured run (not recorded).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Interleaved rounds: each round runs every workload and concurrency on every server
    /// (servers in an order rotated by the round); the median round is reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Threads of the load generator, each a single-threaded tokio runtime
    /// driving its share of the connections.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Also run wrk on the same server and workload (GET workloads) and record its rps.
    #[arg(long)]
    pub wrk: bool,
    /// Rounds of the `--wrk` comparison (after the interleaved rounds, per server): this
    /// generator and wrk alternate, medians are compared.
    #[arg(long, default_value_t = 3)]
    pub wrk_rounds: usize,
    /// Also measure the servers' resident memory holding this many idle keep-alive connections.
    #[arg(long)]
    pub idle_conns: Option<usize>,
    /// Also stream a chunked upload of this many MiB to /count, sampling the server's RSS.
    #[arg(long)]
    pub upload_mib: Option<u64>,
    /// JSON output (default OUT/bench.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Markdown tables output (default OUT/bench.md).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Directory for the SVG charts (default OUT).
    #[arg(long)]
    pub svg_dir: Option<PathBuf>,
    /// Run nothing: render the Markdown and SVG of a report saved by an earlier run
    /// (its --json file) again, e.g. after a change to the report's layout.
    #[arg(long, value_name = "FILE")]
    pub from_json: Option<PathBuf>,
    /// Launch every server at its own defaults, as a user who sets nothing runs it: only
    /// the address, the app and the `@` variant are given (no `--threads` budget, no
    /// benchmark allowances; our host writes its default access log, to a file).
    #[arg(long)]
    pub defaults: bool,
    /// Skip the load runs (only idle/upload measurements).
    #[arg(long)]
    pub no_load: bool,
    /// Where the servers are and how they run.
    #[command(flatten)]
    pub launch: LaunchArgs,
}

/// A duration as `humantime` reads it (`10s`, `500ms`, `1.5s`, `2m`,
/// `1m30s`), or a bare number of seconds (`3`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("bad duration {s:?}: {e}"));
    }
    humantime::parse_duration(s).map_err(|e| format!("bad duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("x").is_err());
    }
}
