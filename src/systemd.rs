//! Running under systemd: socket activation and readiness notification.
//!
//! - Socket activation (sd_listen_fds(3)): when `LISTEN_FDS` (and a `LISTEN_PID` naming this
//!   process) pass listening TCP sockets, [`passed_listeners`] hands them to the workers
//!   instead of binding: one socket is shared by every worker, or there is one per worker.
//!   systemd binds the port, so port 80 needs no capability in fserve.
//! - Notification (sd_notify(3)): when `NOTIFY_SOCKET` is set, [`ready`] sends `READY=1`
//!   once every worker accepts, and [`stopping`] sends `STOPPING=1` when draining begins.
//!
//! A passed socket is used as it comes, blocking or not: each engine sets what it needs on
//! its listener, as for the sockets fserve binds itself. Stopping shuts the listeners down
//! (that is how the engines end a pending accept), and for a passed socket that ends the
//! socket itself, whose port the kernel then releases: the socket unit must be restarted
//! with the service (`PartOf=fserve.service` in deploy/fserve.socket).
//!
//! It never binds a socket of its own, never takes a socket it was not passed, and a failed
//! notification never stops the server (it is one line on stderr). Adopting an inherited fd
//! is done by the `listenfd` crate, so this module has no unsafe code.

use std::ffi::OsStr;
use std::io;
use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The first fd systemd passes (SD_LISTEN_FDS_START), for error messages.
const FIRST_FD: usize = 3;

/// The listeners systemd passed, one per worker (a single passed socket is shared by all
/// workers), each with TCP_DEFER_ACCEPT like a socket fserve binds itself; `None` when no
/// socket was passed. Takes them once: `LISTEN_FDS`/`LISTEN_PID` are removed from the
/// environment. Errors are one line naming the cause and the fix.
pub fn passed_listeners(
    workers: usize,
    defer_secs: u32,
) -> Result<Option<Vec<TcpListener>>, String> {
    if std::env::var_os("LISTEN_FDS").is_none() {
        return Ok(None);
    }
    let mut fds = listenfd::ListenFd::from_env();
    let count = fds.len();
    if count == 0 {
        return Ok(None);
    }
    if count != 1 && count != workers {
        return Err(format!(
            "systemd passed {count} sockets to {workers} workers; pass one socket (all workers share it) or one per worker (--threads {count})"
        ));
    }
    let mut passed = Vec::with_capacity(count);
    for i in 0..count {
        let fd = FIRST_FD + i;
        let listener = match fds.take_tcp_listener(i) {
            Ok(Some(l)) => l,
            Ok(None) => return Err(format!("the socket passed as fd {fd} is gone")),
            Err(e) => {
                return Err(format!(
                    "the socket passed as fd {fd} is not a TCP socket ({e}); use ListenStream= with a TCP address in fserve.socket"
                ));
            }
        };
        match rustix::net::sockopt::socket_acceptconn(&listener) {
            Ok(true) => {}
            _ => {
                return Err(format!(
                    "the socket passed as fd {fd} is not listening; use ListenStream= (not Accept=yes) in fserve.socket"
                ));
            }
        }
        crate::engine::defer_accept(&listener, defer_secs).map_err(|e| {
            format!("cannot set TCP_DEFER_ACCEPT on the socket passed as fd {fd}: {e}")
        })?;
        passed.push(listener);
    }
    if count == 1 {
        // Every worker accepts from the same socket, each through its own fd.
        let shared = (1..workers)
            .map(|_| passed[0].try_clone())
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| format!("cannot share the passed socket with every worker: {e}"))?;
        passed.extend(shared);
    }
    Ok(Some(passed))
}

/// Tells systemd that fserve serves (`READY=1`), when `NOTIFY_SOCKET` is set.
pub fn ready() {
    notify("READY=1\nSTATUS=serving");
}

/// Tells systemd that fserve is draining (`STOPPING=1`), when `NOTIFY_SOCKET` is set.
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=draining");
}

/// Sends `state` to the service manager; a failure is one line on stderr, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        let what = state.lines().next().unwrap_or_default();
        eprintln!(
            "fserve: cannot send {what} to NOTIFY_SOCKET={} ({e}); systemd may time out waiting for it, so check the unit's NotifyAccess=",
            path.to_string_lossy()
        );
    }
}

/// One datagram to a path, or to an abstract name when the path starts with `@`.
fn send(path: &OsStr, state: &str) -> io::Result<()> {
    let bytes = path.as_bytes();
    let addr = match bytes.split_first() {
        Some((b'@', name)) => SocketAddr::from_abstract_name(name)?,
        Some((b'/', _)) => SocketAddr::from_pathname(path)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a socket path or an abstract name",
            ));
        }
    };
    let sock = UnixDatagram::unbound()?;
    let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short datagram"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_reaches_a_path_and_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("fserve-test-{}", std::process::id());
        let abstract_addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&abstract_addr).unwrap();
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");

        assert!(send(OsStr::new("relative"), "READY=1").is_err());
        assert!(send(OsStr::new(""), "READY=1").is_err());
    }
}
