#!/usr/bin/env bash
# Abuse fserve on loopback and report how it holds up.
#
# Builds the release binary, serves a temporary root (a 1 KiB and a 10 MiB file) on
# 127.0.0.1 at a free port, and runs one attack after another, each bounded in
# connections and time:
#   slowhttptest slowloris (-H), slow body (-B), slow read (-X);
#   silent connections, slow readers, a reset storm and garbage (python3, below).
# During each, a probe measures normal requests (fresh connection, GET of the 1 KiB
# file, every 50 ms, 2 s timeout). At the end it prints a table: per attack, the
# connections made, the server's RSS and open fds before/after (and the peak fds),
# the probe's p50/p99 latency and failures, and whether fserve is still alive.
#
# Exits non-zero only if fserve died or the probe failed entirely during an attack.
# Loopback only; about 2.5 minutes. Usage: tests/abuse.sh   (ABUSE_SECONDS=20 per attack)
set -euo pipefail

cd "$(dirname "$0")/.."
SECS=${ABUSE_SECONDS:-20}

work=$(mktemp -d /tmp/fserve-abuse.XXXXXX)
fserve_pid=""
cleanup() {
    if [[ -n $fserve_pid ]] && kill -0 "$fserve_pid" 2>/dev/null; then
        kill -TERM "$fserve_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$fserve_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$fserve_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

log() { printf 'abuse: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------
# Build, tools, content
# ---------------------------------------------------------------------------

log "building fserve (release)"
cargo build --release --quiet
BIN=$PWD/target/release/fserve

command -v python3 >/dev/null || { log "python3 is required"; exit 2; }
have_slowhttptest=1
if ! command -v slowhttptest >/dev/null; then
    log "installing slowhttptest"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slowhttptest; } >"$work/apt.log" 2>&1; then
        log "could not install slowhttptest (see below); its attacks are skipped"
        tail -5 "$work/apt.log" >&2 || true
        have_slowhttptest=0
    fi
fi

root=$work/root
mkdir -p "$root"
python3 - "$root" <<'EOF'
import random, sys
r = random.Random(1234)
open(sys.argv[1] + "/small.bin", "wb").write(bytes(r.getrandbits(8) for _ in range(1024)))
r = random.Random(5678)
open(sys.argv[1] + "/big.bin", "wb").write(r.randbytes(10 * 1024 * 1024))
open(sys.argv[1] + "/index.html", "w").write("<h1>abuse</h1>\n")
EOF

# The attacker and the probe.
cat >"$work/abuse.py" <<'EOF'
"""Attacks and a probe for tests/abuse.sh. Every mode is bounded in count and time."""
import json, os, random, socket, statistics, struct, sys, threading, time

HOST = "127.0.0.1"
PORT = int(sys.argv[1])
MODE = sys.argv[2]
ARGS = sys.argv[3:]


def get(path):
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


def connect(timeout=5.0, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect((HOST, PORT))
    return s


def read_response(s, deadline):
    """One whole response by Content-Length; returns (status, body length)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the head")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    got = len(body)
    while got < length:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {got} of {length} body bytes")
        got += len(chunk)
    return status, got


def probe(stop_file, out_file):
    lat, fails, errors = [], 0, {}
    while not os.path.exists(stop_file):
        start = time.monotonic()
        try:
            s = connect(timeout=2.0)
            try:
                s.sendall(get("/small.bin"))
                status, n = read_response(s, start + 2.0)
                if status != 200 or n != 1024:
                    raise ValueError(f"status {status}, {n} bytes")
            finally:
                s.close()
            lat.append(time.monotonic() - start)
        except Exception as e:  # a failure is data, not a crash
            fails += 1
            key = type(e).__name__
            errors[key] = errors.get(key, 0) + 1
        time.sleep(max(0.0, 0.05 - (time.monotonic() - start)))
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] * 1000 if lat else None
    json.dump({"ok": len(lat), "fail": fails, "errors": errors,
               "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": lat[-1] * 1000 if lat else None},
              open(out_file, "w"))


def silent(count, secs):
    """Connect and never send; count how many the server (or kernel) closed."""
    socks = []
    for _ in range(count):
        try:
            socks.append(connect())
        except OSError:
            pass
    time.sleep(secs)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    return {"connections": len(socks), "note": f"{closed} closed by the server within {secs}s"}


def slow_readers(count, secs):
    """GET the 10 MiB file with a tiny receive buffer, reading 1 KiB a second."""
    socks = []
    for _ in range(count):
        try:
            s = connect(rcvbuf=4096)
            s.sendall(get("/big.bin"))
            socks.append(s)
        except OSError:
            pass
    got = [0] * len(socks)
    end = time.monotonic() + secs
    while time.monotonic() < end:
        for i, s in enumerate(socks):
            if s is None:
                continue
            s.setblocking(False)
            try:
                chunk = s.recv(1024)
                if not chunk:
                    socks[i] = None
                got[i] += len(chunk)
            except BlockingIOError:
                pass
            except OSError:
                socks[i] = None
        time.sleep(1.0)
    open_ = sum(1 for s in socks if s is not None)
    for s in socks:
        if s is not None:
            s.close()
    return {"connections": len(got), "note": f"{open_} still open after {secs}s, {sum(got) // 1024} KiB read"}


def resets(count, batch):
    """Request the 10 MiB file, read a few KiB, then reset all at once (SO_LINGER 0)."""
    socks, failed = [], 0
    while len(socks) + failed < count:
        fresh = []
        for _ in range(min(batch, count - len(socks) - failed)):
            try:
                s = connect(rcvbuf=16384)
                s.sendall(get("/big.bin"))
                fresh.append(s)
            except OSError:
                failed += 1
        for s in fresh:
            try:
                got = 0
                while got < 4096:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += len(chunk)
            except OSError:
                pass
        socks += fresh
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    return {"connections": len(socks), "note": f"{len(socks)} reset mid-response, {failed} failed to connect"}


def garbage(count, workers):
    """Random bytes (seeded), some with CRLFs: tally what comes back."""
    tally, lock = {}, threading.Lock()

    def one(i):
        r = random.Random(i)
        g = r.randbytes(1 + r.randrange(3000))
        if i % 3 == 0:
            g = b"GET /" + bytes(r.randrange(33, 127) for _ in range(100)) + b" HTTP/1.1\r\n" + g
        if i % 2 == 0:
            g += b"\r\n\r\n"
        outcome = "close"
        try:
            s = connect()
            try:
                s.sendall(g)
                s.settimeout(15)
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"HTTP/1.1 "):
                    outcome = data[9:12].decode()
                elif data:
                    outcome = "junk"
            finally:
                s.close()
        except socket.timeout:
            outcome = "hung"
        except OSError:
            outcome = "reset"
        with lock:
            tally[outcome] = tally.get(outcome, 0) + 1

    todo = list(range(count))
    def worker():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            one(i)
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = sum(v for k, v in tally.items() if k.startswith("5") or k in ("hung", "junk"))
    return {"connections": count, "note": "answers " + " ".join(f"{k}:{v}" for k, v in sorted(tally.items())),
            "bad": bad}


if MODE == "probe":
    probe(ARGS[0], ARGS[1])
else:
    fn = {"silent": silent, "slow_readers": slow_readers, "resets": resets, "garbage": garbage}[MODE]
    print(json.dumps(fn(*map(int, ARGS))))
EOF

# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------

"$BIN" -p 0 -b 127.0.0.1 -t 2 "$root" 2>"$work/fserve.log" &
fserve_pid=$!
port=""
for _ in $(seq 100); do
    port=$(sed -n 's|^.* INFO fserve: serving .* at http://127\.0\.0\.1:\([0-9]*\)/ .*|\1|p' "$work/fserve.log" | head -1)
    [[ -n $port ]] && break
    kill -0 "$fserve_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $port ]]; then
    log "fserve did not start:"; cat "$work/fserve.log" >&2; exit 1
fi
log "$(head -1 "$work/fserve.log")"

alive() { kill -0 "$fserve_pid" 2>/dev/null; }
rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$fserve_pid/status" 2>/dev/null || echo "-"; }
# shellcheck disable=SC2012 # /proc/PID/fd holds only numeric names
fds() { local n; n=$(ls "/proc/$fserve_pid/fd" 2>/dev/null | wc -l) || true; echo "${n:-0}"; }

rows=()
failed=0

# run_attack NAME COMMAND...: probe and sample the server while COMMAND runs (each
# COMMAND bounds its own time); it prints one JSON object ({"connections", "note"}).
run_attack() {
    local name=$1; shift
    if ! alive; then
        rows+=("$name|-|-|-|-|-|-|-|no|fserve was already dead")
        return
    fi
    log "attack: $name"
    local rss0 fds0 stop=$work/stop.$name out=$work/probe.$name.json peak=$work/peak.$name
    rss0=$(rss_mib); fds0=$(fds)
    rm -f "$stop"
    python3 "$work/abuse.py" "$port" probe "$stop" "$out" &
    local probe_pid=$!
    # Sample the fd count while the attack runs; keep the peak.
    ( max=0; while [[ ! -e $stop ]]; do n=$(fds); (( n > max )) && max=$n; echo "$max" >"$peak"; sleep 0.25; done ) &
    local sampler_pid=$!
    local result
    result=$("$@" 2>"$work/attack.$name.err") || true
    sleep 2 # let the server settle before the "after" numbers
    touch "$stop"
    wait "$probe_pid" || true
    wait "$sampler_pid" || true
    local rss1 fds1 is_alive=yes
    alive || is_alive=no
    rss1=$(rss_mib); fds1=$(fds)
    local summary
    summary=$(python3 - "$out" "$result" <<'EOF'
import json, sys
try:
    p = json.load(open(sys.argv[1]))
except Exception:
    p = {}
try:
    r = json.loads(sys.argv[2].strip().splitlines()[-1])
except Exception:
    r = {"connections": "?", "note": sys.argv[2].strip()[:60] or "no report"}
fmt = lambda v: "-" if v is None else f"{v:.1f}"
total = p.get("ok", 0) + p.get("fail", 0)
print("|".join([str(r.get("connections", "?")), fmt(p.get("p50_ms")), fmt(p.get("p99_ms")),
                f"{p.get('fail', 0)}/{total}", str(p.get("ok", 0)), r.get("note", "") +
                (" probe errors " + json.dumps(p["errors"]) if p.get("errors") else "")]))
EOF
)
    local conns p50 p99 fails oks note
    IFS='|' read -r conns p50 p99 fails oks note <<<"$summary"
    rows+=("$name|$conns|$rss0 -> $rss1|$fds0 -> $(cat "$peak" 2>/dev/null || echo '?') -> $fds1|$p50|$p99|$fails|$is_alive|$note")
    [[ $is_alive == yes ]] || failed=1
    [[ ${oks:-0} -gt 0 ]] || failed=1
}

# slowhttptest_attack PREFIX ARGS...: run it for $SECS seconds, then print one JSON line
# from its CSV (peak connections held, closed by the server, seconds it saw the service down).
slowhttptest_attack() {
    local prefix=$1; shift
    timeout $((SECS + 30)) slowhttptest "$@" -g -o "$prefix" -l "$SECS" -p 3 >"$prefix.out" 2>&1 || true
    python3 - "$prefix.csv" <<'EOF'
import csv, json, sys
try:
    rows = list(csv.DictReader(open(sys.argv[1])))
except OSError:
    print(json.dumps({"connections": "?", "note": "slowhttptest wrote no report"})); sys.exit()
peak = max(int(r["Connected"]) for r in rows)
closed = int(rows[-1]["Closed"])
down = sum(1 for r in rows if int(r["Service Available"]) == 0)
print(json.dumps({"connections": peak + closed,
                  "note": f"peak {peak} held at once, {closed} closed by the server, slowhttptest saw the service down {down}s"}))
EOF
}

url=http://127.0.0.1:$port
if [[ $have_slowhttptest == 1 ]]; then
    run_attack slowloris slowhttptest_attack "$work/shs_slowloris" -H -c 400 -r 200 -i 3 -u "$url/small.bin"
    run_attack slow-body slowhttptest_attack "$work/shs_slowbody" -B -c 400 -r 200 -i 3 -s 65536 -u "$url/small.bin"
    run_attack slow-read slowhttptest_attack "$work/shs_slowread" -X -c 300 -r 200 -k 3 -n 2 -z 32 -w 512 -y 1024 -u "$url/big.bin"
else
    rows+=("slowhttptest attacks|-|-|-|-|-|-|-|-|skipped: slowhttptest unavailable")
fi
run_attack silent timeout 60 python3 "$work/abuse.py" "$port" silent 500 15
run_attack slow-readers timeout 60 python3 "$work/abuse.py" "$port" slow_readers 200 15
run_attack reset-storm timeout 60 python3 "$work/abuse.py" "$port" resets 2000 200
run_attack garbage timeout 60 python3 "$work/abuse.py" "$port" garbage 1000 50

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

final=yes
alive || final=no
printf '\n%-13s %6s %-15s %-20s %8s %8s %-9s %-5s %s\n' \
    attack conns "rss MiB" "fds before>peak>after" "p50 ms" "p99 ms" "fail/all" alive notes
for row in "${rows[@]}"; do
    IFS='|' read -r a c r f p50 p99 fl al note <<<"$row"
    printf '%-13s %6s %-15s %-20s %8s %8s %-9s %-5s %s\n' "$a" "$c" "$r" "${f// -> />}" "$p50" "$p99" "$fl" "$al" "$note"
done
printf '\nfserve alive at the end: %s; its stderr:\n' "$final"
sed 's/^/  /' "$work/fserve.log" | tail -20
if [[ $final != yes ]]; then failed=1; fi
if [[ $failed != 0 ]]; then
    log "FAILED: fserve died or the probe got no answer during an attack"
    exit 1
fi
log "done: fserve survived every attack"
