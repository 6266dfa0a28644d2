//! `fserve [ROOT]`: parse the flags, start the server, wait for SIGINT/SIGTERM/SIGQUIT, drain.
//! SIGUSR1 reopens the access log; SIGHUP reopens it and drops the file caches.
//! `fserve healthcheck [URL]`: check a running server (see `fserve::healthcheck`).

use std::process::ExitCode;

use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use fserve::cli::{Args, Command};
use fserve::config::LogFormat;
use fserve::server::Handle;
use fserve::{Server, StartError, diag};

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
    diag::set_json(cfg.log_format == LogFormat::Json);
    let shutdown_delay = cfg.shutdown_delay;
    // Signals are taken before the workers start, so a signal during start-up is not lost.
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGHUP]) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot handle signals: {e}")),
    };
    let open_file_limit = raise_open_file_limit();
    let server = match Server::start(cfg) {
        Ok(s) => s,
        Err(e) => return fail(&start_error(&e)),
    };
    if let Some(reason) = server.fallback_reason() {
        diag::warn(&format!("{reason}; serving with the epoll engine instead"));
    }
    let workers = server.workers();
    diag::info(&format!(
        "serving {} at http://{}/ ({workers} worker{}, {})",
        server.root().display(),
        server.local_addr(),
        if workers == 1 { "" } else { "s" },
        server.engine()
    ));
    if let Some(admin) = server.admin_addr() {
        diag::info(&format!(
            "admin listener at http://{admin}/ (/metrics, /healthz, /readyz)"
        ));
    }
    if let Some(limit) = open_file_limit.filter(|&l| l < server.open_files_needed()) {
        diag::warn(&format!(
            "these settings may need {} open files (--max-connections plus {} per worker) but the open-file limit is {limit}; raise it (ulimit -n, systemd LimitNOFILE=, docker --ulimit nofile=) or lower --max-connections",
            server.open_files_needed(),
            fserve::config::FILES_PER_WORKER
        ));
    }
    fserve::systemd::ready();
    // Serve until a signal to stop; SIGUSR1 and SIGHUP are handled on the way.
    let handle = server.handle();
    for signal in signals.forever() {
        if !maintenance(signal, &handle) {
            break;
        }
    }
    fserve::systemd::stopping();
    // Readiness off at once; keep serving through the delay, then drain. A second signal
    // to stop exits at once.
    handle.set_unready();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if !maintenance(signal, &handle) {
                diag::warn("second signal, exiting without waiting");
                std::process::exit(EXIT_INTERRUPTED);
            }
        }
    });
    if !shutdown_delay.is_zero() {
        diag::info(&format!(
            "shutting down: /readyz answers 503; still serving for the {}s shutdown delay",
            shutdown_delay.as_secs_f64()
        ));
        std::thread::sleep(shutdown_delay);
    }
    if !server.shutdown() {
        diag::warn("some connections were still busy at the end of the grace period");
    }
    ExitCode::SUCCESS
}

/// Handles SIGUSR1 (reopen the access log) and SIGHUP (that, and drop the file caches);
/// false for a signal to stop.
fn maintenance(signal: i32, handle: &Handle) -> bool {
    match signal {
        SIGUSR1 => {
            handle.reopen_log();
            diag::info("SIGUSR1: reopening the access log");
            true
        }
        SIGHUP => {
            handle.reopen_log();
            handle.drop_caches();
            diag::info("SIGHUP: reopening the access log and dropping the file caches");
            true
        }
        _ => false,
    }
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
    diag::error(msg);
    ExitCode::from(EXIT_START)
}
