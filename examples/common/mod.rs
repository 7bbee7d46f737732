//! What every example shares, kept here so that each example file is only its lesson.
//!
//! - **The command line**, with the conventions of the project's clients
//!   ([`inetloop::client::cli::client_main`]): `-h`/`--help` prints the example's own doc
//!   comment — what it teaches, the syscalls it makes, how to run and try it — on stdout and
//!   exits 0; a bad or unknown flag is one line on stderr and exit 2; a failure while serving
//!   is one line on stderr and exit 1.
//! - **The stdout contract**: one `listening <service> <tcp|udp> <ip:port>` line per socket,
//!   flushed before serving, so tests and scripts can start an example on port 0.
//! - **Logging** through the library's `log` calls (step 7), coloured only on a terminal.
//!
//! This is a folder with a `mod.rs`, not `examples/common.rs`: cargo would take a file directly
//! in `examples/` for one more example.
#![allow(dead_code)] // every example uses a different part of this module

use std::fmt::Display;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::str::FromStr;

use log::LevelFilter;
use simplelog::{ColorChoice, TermLogger, TerminalMode};

/// An example's name and its source text, whose `//!` doc is its `--help`.
pub struct Lesson {
    pub name: &'static str,
    pub source: &'static str,
}

/// The [`Lesson`] of the example this is written in: its crate name (`01_blocking_time_server`)
/// and, compiled in, its own source file.
macro_rules! lesson {
    () => {
        common::Lesson {
            name: env!("CARGO_CRATE_NAME"),
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", file!())),
        }
    };
}
pub(crate) use lesson;

/// Parses the command line with `parse` (answering `--help` first), then runs `serve`; the
/// exit status follows the clients' conventions (0, 1 after a failure, 2 for a usage error).
pub fn run<T>(
    lesson: Lesson,
    parse: impl FnOnce(&mut Flags) -> Result<T, String>,
    serve: impl FnOnce(T) -> Result<(), String>,
) -> ExitCode {
    let help = help_text(lesson.source);
    let parse_all = |args| {
        let mut flags = Flags(args);
        let parsed = parse(&mut flags)?;
        match flags.0.finish().first() {
            Some(extra) => Err(format!("unexpected argument '{}'", extra.to_string_lossy())),
            None => Ok(parsed),
        }
    };
    inetloop::client::cli::client_main(lesson.name, &help, parse_all, serve)
}

/// The command line, taken apart flag by flag; whatever is left over is refused by [`run`].
pub struct Flags(pico_args::Arguments);

impl Flags {
    /// `--name VALUE` parsed as `T`, or `default` when absent; an error names the flag.
    pub fn value<T: FromStr>(&mut self, name: &'static str, default: T) -> Result<T, String>
    where
        T::Err: Display,
    {
        self.0
            .opt_value_from_str(name)
            .map(|value| value.unwrap_or(default))
            .map_err(|e| format!("{name}: {e}"))
    }

    /// Whether the switch `--name` is present.
    pub fn switch(&mut self, name: &'static str) -> bool {
        self.0.contains(name)
    }

    /// The first free argument (a subcommand such as `server`), if any.
    pub fn subcommand(&mut self) -> Result<Option<String>, String> {
        self.0.subcommand().map_err(|e| e.to_string())
    }

    /// The next free argument (such as `HOST:PORT`), or `default`.
    pub fn free(&mut self, what: &str, default: &str) -> Result<String, String> {
        self.0
            .opt_free_from_str()
            .map(|value| value.unwrap_or_else(|| default.to_string()))
            .map_err(|e| format!("{what}: {e}"))
    }
}

/// The stdout contract: one `listening <service> <tcp|udp> <ip:port>` line per socket, flushed
/// before the example serves anybody. Logs go to stderr.
pub fn announce<L: Display>(lines: impl IntoIterator<Item = L>) -> Result<(), String> {
    let mut stdout = io::stdout().lock();
    lines
        .into_iter()
        .try_for_each(|line| writeln!(stdout, "{line}"))
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("stdout: {e}"))
}

/// Sends the library's `log` records to stderr, in colour only when stderr is a terminal (a
/// log redirected to a file gets no escape codes).
pub fn log_to_stderr(level: LevelFilter) {
    let colour = if io::stderr().is_terminal() {
        ColorChoice::Auto // still honours NO_COLOR and TERM=dumb
    } else {
        ColorChoice::Never
    };
    // Fails only if a logger is already set, which cannot happen in an example's `main`.
    let _ = TermLogger::init(
        level,
        simplelog::Config::default(),
        TerminalMode::Stderr,
        colour,
    );
}

/// The `//!` doc at the top of `source`, as plain text for a terminal: code blocks indented
/// instead of fenced, `**bold**` and intra-doc link brackets dropped.
fn help_text(source: &str) -> String {
    let mut help = String::new();
    let mut in_code = false;
    for line in source.lines().map_while(|line| line.strip_prefix("//!")) {
        let line = line.strip_prefix(' ').unwrap_or(line);
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            help.push_str("    ");
            help.push_str(line);
        } else {
            help.push_str(&line.replace("**", "").replace("[`", "`").replace("`]", "`"));
        }
        help.push('\n');
    }
    help
}
