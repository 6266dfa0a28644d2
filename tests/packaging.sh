#!/usr/bin/env bash
# tests/packaging.sh: checks every way fserve is installed, end to end.
#
# Runs as root on a Debian machine (CI), from the repository root or anywhere. It:
# - installs what it needs from Debian when missing (systemd, man-db, bash-completion, zsh,
#   fish, dpkg-dev, curl, python3; docker.io when no engine is there) and cargo-deb;
# - the crate: `cargo package --list` holds what a build needs and nothing else, and
#   `cargo package` builds the packaged crate (cargo verifies it by building it);
# - `cargo run -p xtask -- dist`: `man -l` renders fserve(1) without warnings; the bash, zsh
#   and fish completions load in their shells and complete a flag;
# - the systemd units pass `systemd-analyze verify` (in a temporary root holding the
#   binary and the man page); the installed systemd's @system-service allows io_uring;
# - socket activation: `systemd-socket-activate` passes fserve a listening socket, fserve
#   serves on it, and a fake NOTIFY_SOCKET receives READY=1, then STOPPING=1 after SIGTERM;
# - `cargo install --locked --path .` installs a binary that reports its version;
# - `cargo deb` builds the package; it holds the binary, the man page, the completions, the
#   default site, /etc/default/fserve and the units; `dpkg -i` installs it in a clean Debian
#   root (the base image tests/docker.sh makes) where `fserve --version` and a request work;
# - under a real systemd (PID 1 in a container): fserve.socket serves port 80 through
#   fserve.service as the fserve user with no capabilities, on io_uring through the unit's
#   system-call filter; READY=1 reaches systemd; restart and stop work; the service alone
#   serves 8080.
# Every wait is bounded; everything started is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BASE=rust:1-slim-bookworm
export CARGO_TERM_COLOR=never
export DEBIAN_FRONTEND=noninteractive

log() { printf 'packaging.sh: %s\n' "$*" >&2; }
die() {
    log "FAIL: $*"
    exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

TMP=$(mktemp -d /tmp/fserve-packaging.XXXXXX)
PIDS=()
CONTAINERS=()
DOCKERD_PID=""

cleanup() {
    local rc=$?
    set +e
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    for c in "${CONTAINERS[@]}"; do
        docker rm -f "$c" >/dev/null 2>&1
    done
    if [ -n "$DOCKERD_PID" ]; then
        kill "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 1 40); do
            kill -0 "$DOCKERD_PID" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$DOCKERD_PID" 2>/dev/null && kill -9 "$DOCKERD_PID"
    fi
    rm -rf --one-file-system "$TMP"
    [ "$rc" -ne 0 ] && log "failed (exit $rc)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T_START=$(now)

# ---- tools ---------------------------------------------------------------------------------
need_apt=()
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v systemd-socket-activate >/dev/null || need_apt+=(systemd)
command -v man >/dev/null || need_apt+=(man-db)
[ -f /usr/share/bash-completion/bash_completion ] || need_apt+=(bash-completion)
command -v zsh >/dev/null || need_apt+=(zsh)
command -v fish >/dev/null || need_apt+=(fish)
command -v dpkg-shlibdeps >/dev/null || need_apt+=(dpkg-dev)
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
engine_up() { timeout 10 docker info >/dev/null 2>&1; }
if ! command -v docker >/dev/null || { ! engine_up && ! command -v dockerd >/dev/null; }; then
    need_apt+=(docker.io)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
    log "installing ${need_apt[*]} from Debian"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! command -v cargo-deb >/dev/null; then
    log "cargo install cargo-deb --locked"
    cargo install cargo-deb --locked --quiet
fi
log "systemd $(systemctl --version | awk 'NR == 1 { print $2 }'), cargo-deb $(cargo deb --version | awk '{ print $2 }')"

# ---- the crate -----------------------------------------------------------------------------
T=$(now)
cargo package --list --locked --allow-dirty -p fserve >"$TMP/crate-files" 2>"$TMP/package-list.log" || {
    cat "$TMP/package-list.log" >&2
    die "cargo package --list failed"
}
for f in Cargo.toml Cargo.lock build.rs README.md CHANGELOG.md LICENSE-MIT LICENSE-APACHE \
    src/main.rs src/lib.rs src/cli.rs src/systemd.rs public/index.html; do
    grep -qx "$f" "$TMP/crate-files" || die "the crate lacks $f"
done
if bad=$(grep -E '^(tests|benches|fuzz|deploy|xtask|\.ci|target)/|^Dockerfile$' "$TMP/crate-files"); then
    die "the crate holds files it should not: $bad"
fi
log "crate: $(wc -l <"$TMP/crate-files") files, no tests, benches, fuzz, deploy, xtask or CI"
# Verifies by building the unpacked crate on its own (a clean tree: no workspace, no git).
cargo package --locked -p fserve >"$TMP/package.log" 2>&1 || {
    tail -n 30 "$TMP/package.log" >&2
    die "cargo package failed to build the packaged crate"
}
CRATE=$(ls target/package/fserve-*.crate)
log "cargo package: $CRATE built and verified ($(since "$T") s)"

# ---- man page and completions --------------------------------------------------------------
cargo run -q --locked -p xtask -- dist >/dev/null
DIST=$ROOT/target/dist
MANWIDTH=100 man --warnings -l "$DIST/man/fserve.1" >"$TMP/man.txt" 2>"$TMP/man.err" || die "man -l failed"
[ ! -s "$TMP/man.err" ] || die "man -l warns: $(cat "$TMP/man.err")"
for want in NAME SYNOPSIS OPTIONS '--max-connections' FSERVE_PORT 'EXIT STATUS' SYSTEMD; do
    grep -q -- "$want" "$TMP/man.txt" || die "the man page lacks $want"
done
log "man -l fserve.1: renders without warnings ($(wc -l <"$TMP/man.txt") lines)"

# Each shell loads its script and completes `fserve --cache-` to the three --cache-* flags.
want_cache="--cache-control --cache-max-file --cache-size"
got=$(bash -c '
    source /usr/share/bash-completion/bash_completion
    source "$1"
    COMP_WORDS=(fserve --cache-); COMP_CWORD=1; COMP_LINE="fserve --cache-"; COMP_POINT=${#COMP_LINE}
    complete -p fserve >/dev/null || exit 1
    _fserve fserve --cache- fserve
    printf "%s\n" "${COMPREPLY[@]}"' _ "$DIST/completions/fserve.bash" | sort | xargs)
[ "$got" = "$want_cache" ] || die "bash completes fserve --cache- to \"$got\", not \"$want_cache\""
got=$(fish --no-config -c 'source $argv[1]; complete -C"fserve --cache-"' "$DIST/completions/fserve.fish" |
    cut -f1 | sort | xargs)
[ "$got" = "$want_cache" ] || die "fish completes fserve --cache- to \"$got\", not \"$want_cache\""
# zsh: the script is a completion function found through fpath; compinit must register it.
got=$(zsh -f -c 'fpath=("$1" $fpath); autoload -Uz compinit; compinit -u -D; print -r -- ${_comps[fserve]}' _ "$DIST/completions")
[ "$got" = _fserve ] || die "zsh does not register _fserve for fserve (got \"$got\")"
zsh -f -n "$DIST/completions/_fserve" || die "zsh cannot parse _fserve"
log "completions: bash and fish complete fserve --cache- ($want_cache); zsh registers _fserve"

# ---- the release binary (what cargo deb packages) ------------------------------------------
T=$(now)
cargo build --release --locked -q
BIN=$ROOT/target/release/fserve
log "release build ($(since "$T") s): $("$BIN" -V)"

# ---- systemd units -------------------------------------------------------------------------
# @system-service must keep io_uring allowed (the unit also names the calls explicitly).
systemd-analyze syscall-filter @system-service | grep -qx '    @aio' || die "@system-service does not include @aio here"
for call in io_uring_setup io_uring_enter io_uring_register; do
    systemd-analyze syscall-filter @aio | grep -qx "    $call" || log "note: @aio lacks $call on this systemd; the unit names it explicitly"
done
grep -q '^SystemCallFilter=@system-service io_uring_setup io_uring_enter io_uring_register$' deploy/fserve.service ||
    die "fserve.service's SystemCallFilter= does not name the io_uring calls"

# verify wants the ExecStart binary, the man page in Documentation= and the standard units:
# a temporary root with those.
VROOT=$TMP/vroot
mkdir -p "$VROOT/usr/bin" "$VROOT/etc/systemd/system" "$VROOT/lib/systemd" "$VROOT/usr/share/man/man1"
cp "$BIN" "$VROOT/usr/bin/fserve"
cp deploy/fserve.service deploy/fserve.socket "$VROOT/etc/systemd/system/"
cp -a /lib/systemd/system "$VROOT/lib/systemd/"
cp "$DIST/man/fserve.1" "$VROOT/usr/share/man/man1/"
# Parse warnings do not change verify's exit code: any output at all is a failure.
if ! MANPATH=$VROOT/usr/share/man systemd-analyze verify --root="$VROOT" \
    /etc/systemd/system/fserve.service /etc/systemd/system/fserve.socket >"$TMP/verify.log" 2>&1 ||
    [ -s "$TMP/verify.log" ]; then
    cat "$TMP/verify.log" >&2
    die "systemd-analyze verify fserve.service fserve.socket"
fi
log "systemd-analyze verify: fserve.service and fserve.socket pass, with nothing to say"
# The hardening, as systemd scores it (0 = fully confined, 10 = unprotected).
MAX_EXPOSURE=2.0
systemd-analyze security --offline=yes --root="$VROOT" /etc/systemd/system/fserve.service >"$TMP/security.log" 2>&1 || true
exposure=$(sed -n 's/.*Overall exposure level for fserve.service: \([0-9.]*\).*/\1/p' "$TMP/security.log")
[ -n "$exposure" ] || die "systemd-analyze security gave no score: $(tail -n 5 "$TMP/security.log")"
awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }' ||
    die "fserve.service's exposure is $exposure, over $MAX_EXPOSURE: $(grep '^✗' "$TMP/security.log")"
log "systemd-analyze security: exposure $exposure (at most $MAX_EXPOSURE)"

# ---- socket activation and notification ----------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
NOTIFY=$TMP/notify.sock
# The fake service manager: prints each datagram on one line, for 20 s at most.
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(20)
for _ in range(2):
    print(s.recv(4096).decode().replace("\n", " "), flush=True)
' "$NOTIFY" >"$TMP/notify.out" 2>&1 &
NOTIFY_PID=$!
PIDS+=("$NOTIFY_PID")
for _ in $(seq 1 50); do [ -S "$NOTIFY" ] && break; sleep 0.1; done
[ -S "$NOTIFY" ] || die "the fake NOTIFY_SOCKET did not appear"
# Without --accept, systemd-socket-activate listens, waits for the first connection, then
# execs fserve in its own process with LISTEN_FDS=1; -p 1 shows the passed socket wins.
systemd-socket-activate -l "127.0.0.1:$PORT" -E "NOTIFY_SOCKET=$NOTIFY" \
    "$BIN" -t 2 -p 1 "$ROOT/public" >"$TMP/activate.log" 2>&1 &
FSERVE_PID=$!
PIDS+=("$FSERVE_PID")
sleep 0.2
curl -s --max-time 10 -o "$TMP/index.html" "http://127.0.0.1:$PORT/" || {
    cat "$TMP/activate.log" >&2
    die "no answer on the socket systemd-socket-activate passed"
}
cmp -s "$TMP/index.html" public/index.html || die "GET / on the passed socket is not public/index.html"
grep -q " INFO fserve: serving .* at http://127.0.0.1:$PORT/ (2 workers," "$TMP/activate.log" ||
    die "fserve did not serve on the passed socket: $(cat "$TMP/activate.log")"
kill -TERM "$FSERVE_PID"
for _ in $(seq 1 100); do kill -0 "$FSERVE_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$FSERVE_PID" 2>/dev/null && die "fserve did not exit within 10 s of SIGTERM"
rc=0
wait "$FSERVE_PID" || rc=$?
[ "$rc" = 0 ] || die "fserve exited $rc after SIGTERM, not 0"
wait "$NOTIFY_PID" || die "the fake NOTIFY_SOCKET did not get two messages: $(cat "$TMP/notify.out")"
[ "$(cat "$TMP/notify.out")" = "READY=1 STATUS=serving
STOPPING=1 STATUS=draining" ] || die "NOTIFY_SOCKET got: $(cat "$TMP/notify.out")"
log "systemd-socket-activate: served on the passed socket; NOTIFY_SOCKET got READY=1, then STOPPING=1; exit 0"

# ---- cargo install -------------------------------------------------------------------------
# Reuses the release build above (same workspace target directory).
T=$(now)
cargo install --locked --quiet --path . --root "$TMP/cargo-root" 2>"$TMP/install.log" || {
    cat "$TMP/install.log" >&2
    die "cargo install --locked --path . failed"
}
[ "$("$TMP/cargo-root/bin/fserve" -V)" = "$("$BIN" -V)" ] || die "the installed fserve reports another version"
log "cargo install --locked --path .: $("$TMP/cargo-root/bin/fserve" -V) ($(since "$T") s)"

# ---- the Debian package --------------------------------------------------------------------
T=$(now)
rm -f target/debian/fserve_*.deb
cargo deb --no-build >"$TMP/deb.log" 2>&1 || {
    cat "$TMP/deb.log" >&2
    die "cargo deb failed"
}
DEB=$(ls target/debian/fserve_*.deb)
dpkg-deb -c "$DEB" | awk '{ print $6 }' | sed 's|^\./|/|' >"$TMP/deb-files"
for f in /usr/bin/fserve /usr/share/man/man1/fserve.1.gz \
    /usr/share/bash-completion/completions/fserve /usr/share/zsh/vendor-completions/_fserve \
    /usr/share/fish/vendor_completions.d/fserve.fish /usr/share/fserve/public/index.html \
    /etc/default/fserve /usr/lib/systemd/system/fserve.service /usr/lib/systemd/system/fserve.socket \
    /usr/share/doc/fserve/copyright; do
    grep -qx "$f" "$TMP/deb-files" || die "$DEB lacks $f (it has: $(xargs <"$TMP/deb-files"))"
done
log "cargo deb: $DEB ($(stat -c %s "$DEB") bytes, $(since "$T") s), depends: $(dpkg-deb -f "$DEB" Depends)"

# A clean Debian root: the base image tests/docker.sh makes (or pulls).
if ! engine_up; then
    command -v dockerd >/dev/null || die "no Docker engine answers and there is no dockerd to start"
    log "no Docker engine answers; starting dockerd"
    dockerd >"$TMP/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 60); do engine_up && break; sleep 1; done
    engine_up || die "dockerd did not answer within 60 s: $(tail -n 5 "$TMP/dockerd.log")"
fi
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    tests/docker.sh --base-image
fi
docker image inspect "$BASE" >/dev/null 2>&1 || die "$BASE is missing (tests/docker.sh --base-image makes it)"
cp "$DEB" "$TMP/fserve.deb"
T=$(now)
# The container's shell: install, check the files, start fserve, request / over bash's
# /dev/tcp (the image has no curl), stop it, purge the package.
out=$(timeout 120 docker run --rm -v "$TMP/fserve.deb:/tmp/fserve.deb:ro" "$BASE" bash -euc '
    dpkg -i /tmp/fserve.deb >/dev/null
    fserve -V
    test -f /usr/share/man/man1/fserve.1.gz
    test -f /usr/lib/systemd/system/fserve.service
    : >/tmp/fserve.log
    fserve -b 127.0.0.1 -p 8080 -t 1 /usr/share/fserve/public 2>/tmp/fserve.log &
    pid=$!
    for _ in $(seq 1 50); do grep -q " INFO fserve: serving" /tmp/fserve.log && break; sleep 0.1; done
    cat /tmp/fserve.log
    exec 3<>/dev/tcp/127.0.0.1/8080
    printf "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" >&3
    timeout 5 cat <&3 >/tmp/answer
    head -n 1 /tmp/answer
    cmp <(sed "1,/^\r$/d" /tmp/answer) /usr/share/fserve/public/index.html && echo "body: the default site"
    kill -TERM $pid
    wait $pid && echo "exit: 0"
    dpkg --purge fserve >/dev/null
    test ! -e /usr/bin/fserve && test ! -e /etc/default/fserve && echo "purged"
' 2>&1) || die "the .deb in a clean Debian root: $out"
printf '%s\n' "$out" | sed 's/^/    /' >&2
for want in "$("$BIN" -V)" "HTTP/1.1 200 OK" "body: the default site" "exit: 0" "purged"; do
    printf '%s\n' "$out" | grep -qF -- "$want" || die "the .deb in a clean Debian root: no \"$want\""
done
log "dpkg -i in $BASE: fserve -V, GET / (200, the default site), SIGTERM (exit 0), purge ($(since "$T") s)"

# ---- the package under a real systemd -----------------------------------------------------
# systemd as PID 1 in a container ($BASE plus systemd from Debian, kept for reruns like the
# base image): the unit's hardening, its system-call filter and socket activation are only
# proven by running them. It needs CAP_SYS_ADMIN (for the unit's mount namespaces) and the
# host's cgroups, not --privileged.
SD_IMAGE=fserve-systemd:test
T=$(now)
if ! docker image inspect "$SD_IMAGE" >/dev/null 2>&1; then
    log "building $SD_IMAGE: $BASE plus systemd and curl from Debian"
    printf 'FROM %s\nRUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd systemd-sysv curl >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*\nCMD ["/lib/systemd/systemd"]\n' "$BASE" |
        DOCKER_BUILDKIT=0 timeout 600 docker build -q -t "$SD_IMAGE" - >"$TMP/sd-build.log" 2>&1 || {
        tail -n 20 "$TMP/sd-build.log" >&2
        die "building $SD_IMAGE failed"
    }
fi
cid=$(docker run -d --cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
    -v "$TMP/fserve.deb:/tmp/fserve.deb:ro" "$SD_IMAGE")
CONTAINERS+=("$cid")
state=""
for _ in $(seq 1 100); do
    state=$(docker exec "$cid" systemctl is-system-running 2>/dev/null || true)
    case "$state" in running | degraded) break ;; esac
    sleep 0.2
done
case "$state" in running | degraded) ;; *) die "systemd in the container did not come up within 20 s: ${state:-no answer}" ;; esac
out=$(timeout 120 docker exec "$cid" bash -euc '
    get() { curl -s --max-time 5 -o /tmp/body -w "%{http_code}" "$1" || true; }
    dpkg -i /tmp/fserve.deb >/dev/null
    systemctl enable --now fserve.socket 2>/dev/null
    [ "$(get http://127.0.0.1/)" = 200 ] && cmp -s /tmp/body /usr/share/fserve/public/index.html &&
        echo "socket: 200, the default site"
    echo "status: $(systemctl show -p StatusText --value fserve.service)"
    pid=$(systemctl show -p MainPID --value fserve.service)
    echo "user: $(stat -c %U /proc/$pid)"
    echo "caps: $(awk "/^CapEff:/ { print \$2 }" /proc/$pid/status)"
    journalctl -u fserve -o cat | grep " INFO fserve: serving" | tail -n 1
    systemctl restart fserve.service
    [ "$(get http://127.0.0.1/)" = 200 ] && echo "restart: 200"
    systemctl stop fserve.service fserve.socket
    systemctl start fserve.service
    [ "$(get http://127.0.0.1:8080/)" = 200 ] && echo "service alone: 200 on 8080"
    systemctl stop fserve.service
    echo "stop: $(systemctl show -p Result --value fserve.service)"
' 2>&1) || die "the package under systemd: $out"
printf '%s\n' "$out" | sed 's/^/    /' >&2
for want in "socket: 200, the default site" "status: serving" "user: fserve" "caps: 0000000000000000" \
    "at http://[::]:80/ (" "workers, io_uring)" "restart: 200" "service alone: 200 on 8080" "stop: success"; do
    printf '%s\n' "$out" | grep -qF -- "$want" || die "the package under systemd: no \"$want\""
done
log "under systemd: fserve.socket serves port 80 as user fserve, no capabilities, io_uring through the filter; READY with its status; restart; the service alone on 8080; clean stop ($(since "$T") s)"

log "ok ($(since "$T_START") s)"
