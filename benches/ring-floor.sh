#!/usr/bin/env bash
# The floor under fserve's CPU per request, beside nginx: how much of fserve's cost is its own
# code, how much tokio-uring's runtime, and what a ring loop written by hand (or tokio-uring
# patched for multishot receives or GETEVENTS waits) would save; and, for larger bodies, what
# the kernel's path for the body costs when nothing else is done (sendfile from a memory file,
# fserve's way for cached files, against vmsplice of huge-page memory). The responders are in
# benches/ring-floor/ (see its doc comment); they answer every request with the same bytes,
# parse nothing, and are not servers anyone should run.
#
# Usage:  benches/ring-floor.sh [--quick]
#   (no flag)  ROUNDS (11) alternated rounds of every slot, DURATION (3s) each after a 1 s
#              warm-up; 1 server thread on CPU 0, wrk -t1 -c64 on CPU 1
#   --quick    1 round of 1 s, for CI: fails only if a slot does not start or answer
# Environment: ROUNDS, DURATION, BODY_BYTES (1024: the size of the file every slot serves),
# SLOTS (default with BODY_BYTES 1024: nginx fserve raw raw-multishot raw-enter tokio-uring
# tokio-uring-timers; with another size: nginx fserve sendfile-memfd sendfile-file
# sendfile-memfd-thp vmsplice-thp, since the ring responders answer 1 KiB only; on request: fserve-epoll, fserve on its fallback engine;
# raw-defer and raw-defer-eventfd (1 KiB only); ring-sendfile, ring-sendfile-defer and
# ring-sendfile-defer-eventfd, any size),
# FSERVE_BIN (default: cargo build --release).
#
# Prints, per slot, the median CPU-µs per request (the server's utime+stime from /proc over
# the measured run, divided by the requests wrk completed) and the median of the per-round
# ratios nginx ÷ slot (each round's slots run back to back, so the ratio of one round cancels
# most of what a shared machine's load does to both). Speed is never asserted.
set -euo pipefail
umask 022
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
QUICK=0
[[ ${1:-} == --quick ]] && QUICK=1
if ((QUICK)); then
    ROUNDS=1 DURATION=1s WARMUP=0
else
    ROUNDS=${ROUNDS:-11} DURATION=${DURATION:-3s} WARMUP=1
fi
BODY_BYTES=${BODY_BYTES:-1024}
if [[ $BODY_BYTES == 1024 ]]; then
    SLOTS=${SLOTS:-nginx fserve raw raw-multishot raw-enter tokio-uring tokio-uring-timers}
else
    SLOTS=${SLOTS:-nginx fserve sendfile-memfd sendfile-file sendfile-memfd-thp vmsplice-thp}
    for slot in $SLOTS; do
        case $slot in
            raw* | tokio-uring*)
                echo "ring-floor: slot $slot answers 1 KiB only; with BODY_BYTES=$BODY_BYTES choose among nginx fserve fserve-epoll sendfile-memfd sendfile-file sendfile-memfd-thp vmsplice-thp ring-sendfile ring-sendfile-defer ring-sendfile-defer-eventfd" >&2
                exit 2
                ;;
        esac
    done
fi
for tool in nginx wrk taskset curl; do
    command -v "$tool" >/dev/null || {
        echo "ring-floor: $tool is missing; install nginx-light, wrk, util-linux and curl (apt-get install)" >&2
        exit 1
    }
done

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p ring-floor
FLOOR=$ROOT/target/release/ring-floor
if [[ -z ${FSERVE_BIN:-} ]]; then
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin fserve
    FSERVE_BIN=$ROOT/target/release/fserve
fi

WORK=$(mktemp -d)
chmod 755 "$WORK" # nginx's workers read the site as another user
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [[ -f $WORK/nginx/nginx.pid ]] && kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/site" "$WORK/nginx"
head -c "$BODY_BYTES" /dev/zero | tr '\0' x >"$WORK/site/body.txt"
PORT=18480
cp /etc/nginx/mime.types "$WORK/nginx/mime.types"
sed -e "s|@WORKERS@|1|g" -e "s|@AFFINITY@|1|g" -e "s|@NOFILE@|4096|g" \
    -e "s|@PREFIX@|$WORK/nginx|g" -e "s|@WORKER_CONNECTIONS@|2048|g" \
    -e "s|@ACCESS_LOG@|off|g" -e "s|@PORT@|$PORT|g" -e "s|@ROOT@|$WORK/site|g" \
    "$HERE/nginx.conf.in" >"$WORK/nginx/nginx.conf"

port_free() { ! ss -Hltn "sport = :$PORT" | grep -q .; }
wait_port_free() { # a ring that held the listener is torn down after its process exits
    for _ in $(seq 100); do port_free && return 0; sleep 0.1; done
    echo "ring-floor: port $PORT still in use after 10 s; stop what listens there (ss -ltnp 'sport = :$PORT')" >&2
    exit 1
}
start() { # SLOT -> sets SPID, the process whose CPU is counted
    wait_port_free
    case $1 in
        nginx)
            taskset -c 0 nginx -c "$WORK/nginx/nginx.conf"
            for _ in $(seq 50); do
                SPID=$(pgrep -P "$(cat "$WORK/nginx/nginx.pid" 2>/dev/null || echo 0)" | head -1 || true)
                [[ -n $SPID ]] && break
                sleep 0.1
            done
            ;;
        fserve | fserve-epoll)
            local io=uring
            [[ $1 == fserve-epoll ]] && io=epoll
            taskset -c 0 "$FSERVE_BIN" "$WORK/site" --bind 127.0.0.1 --port "$PORT" --threads 1 \
                --io "$io" >/dev/null 2>"$WORK/$1.err" &
            SPID=$!
            ;;
        *)
            # sendfile-file keeps its answer in the work directory, beside nginx's site.
            TMPDIR=$WORK taskset -c 0 "$FLOOR" "$1" "$PORT" "$BODY_BYTES" 2>"$WORK/$1.err" &
            SPID=$!
            ;;
    esac
    PIDS+=("$SPID")
    for _ in $(seq 50); do
        code=$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/body.txt" || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    echo "ring-floor: slot $1 did not answer 200 on port $PORT; its stderr: $(cat "$WORK/$1.err" 2>/dev/null)" >&2
    exit 1
}
stop() { # asks the slot to stop; after 15 s (fserve's grace is 10 s) it is killed
    local pid=$SPID
    if [[ $1 == nginx ]]; then
        pid=$(cat "$WORK/nginx/nginx.pid")
        nginx -c "$WORK/nginx/nginx.conf" -s quit 2>/dev/null
    else
        kill "$pid"
    fi
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    [[ $1 == nginx ]] || wait "$pid" 2>/dev/null || true
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

HZ=$(getconf CLK_TCK)
echo "ring-floor: nginx's site and sendfile-file's answer are on a $(stat -f -c %T "$WORK") file system ($WORK)"
RAW=$WORK/raw.tsv
for round in $(seq "$ROUNDS"); do
    for slot in $SLOTS; do
        start "$slot"
        url=http://127.0.0.1:$PORT/body.txt
        [[ $WARMUP == 0 ]] || taskset -c 1 wrk -t1 -c64 -d"$WARMUP"s "$url" >/dev/null
        t0=$(ticks "$SPID")
        out=$(taskset -c 1 wrk -t1 -c64 -d"$DURATION" "$url")
        t1=$(ticks "$SPID")
        stop "$slot"
        reqs=$(awk '/requests in/ {print $1}' <<<"$out")
        if grep -q 'Non-2xx' <<<"$out" || [[ -z $reqs || $reqs == 0 ]]; then
            echo "ring-floor: slot $slot answered no requests or errors: $out" >&2
            exit 1
        fi
        us=$(awk -v a="$t0" -v b="$t1" -v n="$reqs" -v hz="$HZ" 'BEGIN { printf "%.3f", (b - a) * 1e6 / hz / n }')
        printf '%s\t%s\t%s\n' "$round" "$slot" "$us" >>"$RAW"
        echo "round $round $slot: $us CPU-µs per request ($reqs requests)"
        # What a responder said of its memory (huge pages) the first time it ran.
        if ((round == 1)); then grep -h '^ring-floor:' "$WORK/$slot.err" 2>/dev/null || true; fi
    done
done

echo
echo "| slot | CPU-µs per request (median) | nginx ÷ slot (median of per-round ratios) |"
echo "|---|---|---|"
awk -F'\t' -v slots="$SLOTS" '
    function median(a, n,   i, j, t) {
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { us[$2, $1] = $3; rounds[$1] = 1 }
    END {
        n = split(slots, s, " ")
        for (k = 1; k <= n; k++) {
            m = 0; r = 0
            for (round in rounds) {
                if ((s[k], round) in us) v[++m] = us[s[k], round]
                if ((s[k], round) in us && ("nginx", round) in us) q[++r] = us["nginx", round] / us[s[k], round]
            }
            ratio = r ? sprintf("%.2f×", median(q, r)) : "—"
            printf "| %s | %.2f | %s |\n", s[k], median(v, m), ratio
            delete v; delete q
        }
    }' "$RAW"
