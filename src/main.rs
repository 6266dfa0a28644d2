//! `fserve [ROOT]`: parse the flags, start the server, wait for SIGINT/SIGTERM, drain.
//! `fserve healthcheck [URL]`: check a running server (see `fserve::healthcheck`).

use std::process::ExitCode;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use fserve::cli::{Args, Command};
use fserve::{Server, StartError};

/// Exit code for start-up failures (bad flags, root, port, io_uring).
const EXIT_START: u8 = 2;
/// Exit code when a second signal cuts the drain short.
const EXIT_INTERRUPTED: i32 = 130;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        // Docker reserves exit code 2 for health checks: a usage error there (a bad argument,
        // or a bad FSERVE_* variable) is one line and exit 1.
        Err(e)
            if e.use_stderr()
                && std::env::args_os()
                    .nth(1)
                    .is_some_and(|a| a == "healthcheck") =>
        {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!(
                "fserve healthcheck: {}",
                first.trim_start_matches("error: ")
            );
            return ExitCode::FAILURE;
        }
        Err(e) => e.exit(),
    };
    if let Some(Command::Healthcheck { url }) = &args.command {
        return fserve::healthcheck::run(url.as_deref());
    }
    let cfg = args.into_config();
    // Signals are taken before the workers start, so a signal during start-up is not lost.
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot handle signals: {e}")),
    };
    let open_file_limit = raise_open_file_limit();
    let server = match Server::start(cfg) {
        Ok(s) => s,
        Err(e) => return fail(&start_error(&e)),
    };
    if let Some(reason) = server.fallback_reason() {
        eprintln!("fserve: {reason}; serving with the epoll engine instead");
    }
    let workers = server.workers();
    eprintln!(
        "fserve: serving {} at http://{}/ ({workers} worker{}, {})",
        server.root().display(),
        server.local_addr(),
        if workers == 1 { "" } else { "s" },
        server.engine()
    );
    if let Some(limit) = open_file_limit.filter(|&l| l < server.open_files_needed()) {
        eprintln!(
            "fserve: warning: these settings may need {} open files (--max-connections plus {} per worker) but the open-file limit is {limit}; raise it (ulimit -n, systemd LimitNOFILE=, docker --ulimit nofile=) or lower --max-connections",
            server.open_files_needed(),
            fserve::config::FILES_PER_WORKER
        );
    }
    fserve::systemd::ready();
    // Wait for the first signal, then drain; a second one exits at once.
    let _ = signals.forever().next();
    fserve::systemd::stopping();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            eprintln!("fserve: second signal, exiting without waiting");
            std::process::exit(EXIT_INTERRUPTED);
        }
    });
    if !server.shutdown() {
        eprintln!("fserve: some connections were still busy at the end of the grace period");
    }
    ExitCode::SUCCESS
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (as nginx's worker_rlimit_nofile does):
/// every connection and every held-open file is a descriptor, and the usual soft limit
/// (1024) is far below what the defaults allow. Returns the limit now in force, if known.
fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        // A refusal leaves the soft limit as it was; the warning below then uses it.
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current
}

fn start_error(e: &StartError) -> String {
    e.to_string()
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("fserve: {msg}");
    ExitCode::from(EXIT_START)
}
