//! The command-line conventions the blocking clients share (docs/PROTOCOLS.md §5): `-h`/`--help`
//! prints the usage, an optional `HOST:PORT` argument names the server, and the exit status is
//! 0 on success, 1 with one line on stderr when the exchange failed, 2 for a usage error.

use std::process::ExitCode;

use pico_args::Arguments;

use crate::client::endpoint::parse_host_port;

/// Runs a client: parses the command line with `parse`, then does the work with `run`.
pub fn client_main<T>(
    name: &str,
    usage: &str,
    parse: impl FnOnce(Arguments) -> Result<T, String>,
    run: impl FnOnce(T) -> Result<(), String>,
) -> ExitCode {
    let mut args = Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{usage}");
        return ExitCode::SUCCESS;
    }
    let options = match parse(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{name}: {message} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{name}: {message}");
            ExitCode::from(1)
        }
    }
}

/// Takes the last, optional `HOST:PORT` argument (`default` if absent) and refuses anything
/// left over. Call it after every option has been taken.
pub fn target(mut args: Arguments, default: &str) -> Result<(String, u16), String> {
    let given: Option<String> = args
        .opt_free_from_str()
        .map_err(|e| format!("HOST:PORT: {e}"))?;
    if let Some(extra) = args.finish().first() {
        return Err(format!("unexpected argument '{}'", extra.to_string_lossy()));
    }
    parse_host_port(given.as_deref().unwrap_or(default), None).map_err(|e| e.to_string())
}
