//! Build tasks for fserve that are not part of `cargo build`.
//!
//! `cargo run -p xtask -- dist [DIR]` writes, from the clap definition of fserve's real
//! command line (so they never drift from `fserve --help`), into DIR (default `target/dist`):
//! - `man/fserve.1`: the man page, fserve(1);
//! - `completions/fserve.bash`, `completions/_fserve` (zsh), `completions/fserve.fish`.
//!
//! It writes nothing outside DIR and never reads the network. The Debian package
//! (`cargo deb`) takes these files from `target/dist`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{Roff, bold, italic, roman};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["dist"] => run(&default_dir()),
        ["dist", dir] => run(Path::new(dir)),
        _ => {
            eprintln!("usage: cargo run -p xtask -- dist [DIR]   (DIR defaults to target/dist)");
            ExitCode::from(2)
        }
    }
}

fn default_dir() -> PathBuf {
    // xtask/ lives in the workspace root; its target/ is the workspace's.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .join("target/dist")
}

fn run(dir: &Path) -> ExitCode {
    match dist(dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask dist: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dist(dir: &Path) -> Result<(), String> {
    let man_dir = dir.join("man");
    let comp_dir = dir.join("completions");
    for d in [&man_dir, &comp_dir] {
        fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }

    let cmd = fserve::cli::Args::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .map_err(|e| format!("cannot render the man page: {e}"))?;
    page.write_all(extra_sections().render().as_bytes())
        .map_err(|e| format!("cannot render the man page: {e}"))?;
    let man = man_dir.join("fserve.1");
    fs::write(&man, page).map_err(|e| format!("cannot write {}: {e}", man.display()))?;
    println!("{}", man.display());

    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = cmd.clone();
        let path = clap_complete::generate_to(shell, &mut cmd, "fserve", &comp_dir)
            .map_err(|e| format!("cannot write the {shell} completions: {e}"))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// What `--help` does not say: exit codes, signals, systemd, files.
fn extra_sections() -> Roff {
    let mut r = Roff::default();
    r.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in [
        (
            "0",
            "stopped by SIGINT or SIGTERM after draining; or a healthcheck that passed",
        ),
        ("1", "a healthcheck that failed"),
        (
            "2",
            "a start-up error (bad flag, missing root, port in use, io_uring refused with --io uring); one line on stderr says the cause and the fix",
        ),
        (
            "70",
            "a worker's own loop panicked (a bug): the process exits so a supervisor restarts it whole",
        ),
        ("130", "a second signal cut the drain short"),
    ] {
        r.control("TP", [] as [&str; 0]);
        r.text([bold(code)]);
        r.text([roman(meaning)]);
    }

    r.control("SH", ["SIGNALS"]);
    r.text([roman(
        "SIGINT or SIGTERM: stop accepting, close idle connections, let in-flight responses finish within --grace, exit 0. A second signal exits at once.",
    )]);

    r.control("SH", ["SYSTEMD"]);
    r.text([roman(
        "With NOTIFY_SOCKET set (Type=notify), fserve sends READY=1 once every worker accepts and STOPPING=1 when it starts draining. With LISTEN_FDS (socket activation), it serves on the passed TCP sockets instead of binding --bind/--port: one socket shared by every worker, or one per worker. Stopping fserve shuts the passed sockets down: the socket unit is restarted with the service.",
    )]);

    r.control("SH", ["FILES"]);
    for (path, what) in [
        (
            "/usr/share/fserve/public",
            "the default site (Debian package)",
        ),
        (
            "/etc/default/fserve",
            "FSERVE_* settings read by fserve.service (Debian package)",
        ),
        (
            "/usr/lib/systemd/system/fserve.service, fserve.socket",
            "the hardened service and its socket (Debian package)",
        ),
    ] {
        r.control("TP", [] as [&str; 0]);
        r.text([italic(path)]);
        r.text([roman(what)]);
    }

    r.control("SH", ["SEE ALSO"]);
    r.text([
        bold("systemd.service"),
        roman("(5), "),
        bold("systemd.socket"),
        roman("(5), "),
        bold("sd_notify"),
        roman("(3), "),
        bold("sd_listen_fds"),
        roman("(3)"),
    ]);
    r
}
