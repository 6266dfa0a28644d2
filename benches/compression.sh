#!/usr/bin/env bash
# Compression, fserve vs nginx, on a real front-end corpus: bytes on the wire per file and
# encoding, and the server's CPU per compressed request.
#
# Usage:  benches/compression.sh [--quick]
#
#   (no flag)  full run; report in benches/results/<YYYY-MM-DD>-compression.md (same day:
#              replaced)
#   --quick    smoke test: 1 s wrk runs, no warm-up beyond waiting for the variants; report
#              in a temporary directory printed at the end. Fails only when the harness
#              breaks (a download, a server, a status, a tool), never on a figure.
#
# The corpus is fetched at bench time from the npm registry with `npm pack`, pinned by
# version: react-dom 18.3.1 (umd production build), lodash 4.17.21 (lodash.js), bootstrap
# 5.3.3 (dist css and js), three 0.160.0 (build/three.module.js), d3 7.9.0 (dist/d3.min.js),
# plus an index.html that loads them. No sidecars: both servers compress by themselves.
#
# fserve runs with its defaults (br 11 / zstd 19 / gzip 9, made once in the background; the
# script waits for every variant before measuring, as after a warm-up); nginx with
# `gzip on; gzip_comp_level 6; gzip_types …` (Debian's nginx has no Brotli), compressing
# each response again. Bytes: curl without decoding, so what the network carries (head and
# body). CPU: utime+stime of the server's processes (/proc/PID/stat) over a wrk run, divided
# by the requests it answered.
#
# Environment (defaults in brackets):
#   DURATION     wrk duration per measured run                         [10s; --quick: 1s]
#   WARMUP       wrk warm-up before each measured run                  [2s; --quick: 0]
#   ROUNDS       alternated rounds per CPU workload (median reported)  [3; --quick: 1]
#   CONNS        wrk connections                                       [16]
#   SERVER_CPUS  CPU list for the servers (taskset -c syntax)          [0]
#   CLIENT_CPUS  CPU list for wrk                                      [1]
#   FSERVE_BIN   use this fserve binary instead of building one        [cargo build --release]
#   KEEP_WORK    1 keeps the temporary directory                       [0; kept on failure]
#
# Runs as root on Debian 12; installs missing tools from Debian packages (nginx-light wrk
# npm curl python3). Uses summary.lua and npm-corpus.sh beside this script.

set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

say() { printf '%s\n' "$*"; }
die() { printf 'compression: error: %s\n' "$*" >&2; KEEP_WORK=1; exit 1; }

QUICK=0
for arg in "$@"; do
    case $arg in
        --quick) QUICK=1 ;;
        -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$arg' (usage: benches/compression.sh [--quick])" ;;
    esac
done
if ((QUICK)); then
    DURATION=${DURATION:-1s} WARMUP=${WARMUP:-0} ROUNDS=${ROUNDS:-1}
else
    DURATION=${DURATION:-10s} WARMUP=${WARMUP:-2s} ROUNDS=${ROUNDS:-3}
fi
CONNS=${CONNS:-16}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
KEEP_WORK=${KEEP_WORK:-0}
FSERVE_PORT=18481
NGINX_PORT=18482

# The file the CPU workloads fetch: a large, real JavaScript file.
CPU_FILE=lodash.js

need=()
for t in nginx wrk npm curl python3 taskset; do
    command -v "$t" >/dev/null || case $t in
        nginx) need+=(nginx-light) ;; taskset) need+=(util-linux) ;; *) need+=("$t") ;;
    esac
done
if ((${#need[@]})); then
    say "installing ${need[*]}"
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null || die "apt-get install ${need[*]} failed"
fi

WORK=$(mktemp -d /tmp/fserve-compression.XXXXXX)
chmod 755 "$WORK" # nginx's workers run as www-data
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if ((KEEP_WORK)); then say "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
mkdir -p "$WORK/npm" "$WORK/site" "$WORK/logs"

# ---------------------------------------------------------------------------------------------
# The corpus, from the npm registry (npm-corpus.sh beside this script).
# shellcheck source=benches/npm-corpus.sh
source "$HERE/npm-corpus.sh"
npm_corpus "$WORK" "$WORK/site"

# ---------------------------------------------------------------------------------------------
# Servers.
fserve_binary "$REPO"
nginx_gzip_conf "$WORK" "$WORK/site" "$NGINX_PORT"

for v in $(compgen -e); do [[ $v == FSERVE_* && $v != FSERVE_BIN ]] && unset "$v"; done
taskset -c "$SERVER_CPUS" "$FSERVE" -p "$FSERVE_PORT" -b 127.0.0.1 --threads 1 "$WORK/site" \
    >"$WORK/logs/fserve.log" 2>&1 &
FSERVE_PID=$!
PIDS+=("$FSERVE_PID")
taskset -c "$SERVER_CPUS" nginx -p "$WORK/nginx/" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' \
    >"$WORK/logs/nginx.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_port "$FSERVE_PORT" fserve
wait_port "$NGINX_PORT" nginx
say "$(head -n 1 "$WORK/logs/fserve.log")"

# fserve after warm-up: every variant made (the first requests got identity and queued them).
say "waiting for fserve's variants"
for f in "${FILES[@]}"; do
    for coding in br zstd gzip; do
        deadline=$((SECONDS + 300))
        until [[ $(curl -s -o /dev/null -w '%{content_type}|%header{content-encoding}' \
            -H "Accept-Encoding: $coding" "http://127.0.0.1:$FSERVE_PORT/$f") == *"|$coding" ]]; do
            ((SECONDS < deadline)) || die "fserve made no $coding variant of $f within 300 s"
            sleep 0.2
        done
    done
done

# ---------------------------------------------------------------------------------------------
# Bytes on the wire: head + body as sent (curl does not decode without --compressed).
wire() { # PORT FILE ACCEPT-ENCODING -> "bytes coding"
    local out
    out=$(curl -s -o /dev/null -w '%{http_code} %{size_header} %{size_download} %header{content-encoding}' \
        ${3:+-H "Accept-Encoding: $3"} "http://127.0.0.1:$1/$2") || die "curl $2 failed"
    read -r code head body coding <<<"$out"
    [[ $code == 200 ]] || die "GET /$2 (Accept-Encoding: $3) on port $1 answered $code"
    echo "$((head + body)) ${coding:-identity}"
}

REPORT=$WORK/report.md
{
    say "# Compression: fserve vs nginx"
    say
    say "$(date -u +%Y-%m-%d), $(uname -r), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    say "fserve: $("$FSERVE" -V 2>/dev/null || echo '?'), defaults (br 11, zstd 19, gzip 9, made once);" \
        "nginx $(nginx -v 2>&1 | sed 's/.*\///'): gzip on, gzip_comp_level 6, per response."
    say
    say "## Bytes on the wire per file (head + body)"
    say
    say "| file | identity | fserve gzip | fserve br | fserve zstd | nginx gzip | fserve, browser | nginx, browser |"
    say "|---|---:|---:|---:|---:|---:|---:|---:|"
} >"$REPORT"
declare -A TOTAL=()
BROWSER="gzip, deflate, br, zstd"
for f in "${FILES[@]}"; do
    row="| $f"
    for col in "$FSERVE_PORT|" "$FSERVE_PORT|gzip" "$FSERVE_PORT|br" "$FSERVE_PORT|zstd" \
        "$NGINX_PORT|gzip" "$FSERVE_PORT|$BROWSER" "$NGINX_PORT|$BROWSER"; do
        port=${col%%|*} ae=${col#*|}
        res=$(wire "$port" "$f" "$ae") || exit 1
        read -r bytes coding <<<"$res"
        if [[ -n $ae && $ae != "$BROWSER" && $coding != "$ae" ]]; then
            die "GET /$f with Accept-Encoding: $ae on port $port came back $coding"
        fi
        TOTAL[$col]=$((${TOTAL[$col]:-0} + bytes))
        row+=" | $bytes"
        [[ $ae == "$BROWSER" ]] && row+=" ($coding)"
    done
    say "$row |" >>"$REPORT"
done
{
    row="| **total**"
    for col in "$FSERVE_PORT|" "$FSERVE_PORT|gzip" "$FSERVE_PORT|br" "$FSERVE_PORT|zstd" \
        "$NGINX_PORT|gzip" "$FSERVE_PORT|$BROWSER" "$NGINX_PORT|$BROWSER"; do
        row+=" | **${TOTAL[$col]}**"
    done
    say "$row |"
    say
    awk -v f="${TOTAL[$FSERVE_PORT|$BROWSER]}" -v n="${TOTAL[$NGINX_PORT|$BROWSER]}" \
        -v g="${TOTAL[$FSERVE_PORT|gzip]}" -v ng="${TOTAL[$NGINX_PORT|gzip]}" 'BEGIN {
        printf "A browser (`Accept-Encoding: gzip, deflate, br, zstd`) fetches %.2fx nginx'"'"'s bytes from fserve; gzip alone: %.2fx.\n", f / n, g / ng }'
    say
} >>"$REPORT"

# ---------------------------------------------------------------------------------------------
# Server CPU per compressed request: wrk on one large JavaScript file, alternated rounds.
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # PIDs -> utime+stime, clock ticks
    local pid line total=0
    local -a f
    for pid in "$@"; do
        read -r line 2>/dev/null <"/proc/$pid/stat" || continue
        line=${line##*) }
        read -r -a f <<<"$line"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}
server_pids() { # PID -> the process and its children (nginx's workers)
    local p out=$1
    for p in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$p" || continue
        local pid=${line%% *} rest=${line##*) }
        read -r _ ppid _ <<<"$rest"
        [[ $ppid == "$1" ]] && out+=" $pid"
    done
    echo "$out"
}
run_cpu() { # NAME PORT PID ACCEPT-ENCODING -> "requests cpu_us_per_request"
    local name=$1 port=$2 pids log t0 t1 fsb req
    pids=$(server_pids "$3")
    local -a h=()
    [[ -n $4 ]] && h=(-H "Accept-Encoding: $4")
    if [[ $WARMUP != 0 ]]; then
        taskset -c "$CLIENT_CPUS" wrk -t1 "-c$CONNS" "-d$WARMUP" "${h[@]}" \
            "http://127.0.0.1:$port/$CPU_FILE" >/dev/null 2>&1 || die "wrk warm-up failed"
    fi
    log="$WORK/logs/wrk-$name-${4:-identity}-$RANDOM.log"
    t0=$(cpu_ticks $pids)
    taskset -c "$CLIENT_CPUS" wrk -t1 "-c$CONNS" "-d$DURATION" -s "$HERE/summary.lua" "${h[@]}" \
        "http://127.0.0.1:$port/$CPU_FILE" >"$log" 2>&1 || { cat "$log" >&2; die "wrk failed"; }
    t1=$(cpu_ticks $pids)
    fsb=$(grep '^FSB ' "$log" | tail -n 1) || die "wrk printed no summary (see $log)"
    req=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$fsb")
    grep -q 'status=0 ' <<<"$fsb" || die "$name answered errors: $fsb"
    ((req > 0)) || die "$name answered no requests"
    awk -v t="$((t1 - t0))" -v hz="$CLK_TCK" -v r="$req" 'BEGIN { printf "%d %.1f\n", r, t * 1e6 / hz / r }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

{
    say "## Server CPU per request: GET /$CPU_FILE ($(stat -c %s "$WORK/site/$CPU_FILE") bytes), $CONNS connections"
    say
    say "Median of $ROUNDS alternated round(s) of $DURATION; CPU-µs = (utime + stime) / requests."
    say
    say "| server | Accept-Encoding | requests/s | CPU-µs per request |"
    say "|---|---|---:|---:|"
} >>"$REPORT"
declare -A CPU=() RPS=()
CASES=("fserve|$FSERVE_PORT|$FSERVE_PID|" "fserve|$FSERVE_PORT|$FSERVE_PID|gzip"
    "fserve|$FSERVE_PORT|$FSERVE_PID|br" "fserve|$FSERVE_PORT|$FSERVE_PID|zstd"
    "nginx|$NGINX_PORT|$NGINX_PID|" "nginx|$NGINX_PORT|$NGINX_PID|gzip")
dur_s=${DURATION%s}
for round in $(seq 1 "$ROUNDS"); do
    for c in "${CASES[@]}"; do
        IFS='|' read -r name port pid ae <<<"$c"
        res=$(run_cpu "$name" "$port" "$pid" "$ae") || exit 1
        read -r req us <<<"$res"
        CPU[$c]+="$us "
        RPS[$c]+="$((req / ${dur_s:-1})) "
        say "round $round: $name ${ae:-identity}: $req requests, $us CPU-µs each"
    done
done
for c in "${CASES[@]}"; do
    IFS='|' read -r name port pid ae <<<"$c"
    say "| $name | ${ae:-identity} | $(tr ' ' '\n' <<<"${RPS[$c]}" | grep . | median) | $(tr ' ' '\n' <<<"${CPU[$c]}" | grep . | median) |" >>"$REPORT"
done
f_gzip=$(tr ' ' '\n' <<<"${CPU[fserve|$FSERVE_PORT|$FSERVE_PID|gzip]}" | grep . | median)
n_gzip=$(tr ' ' '\n' <<<"${CPU[nginx|$NGINX_PORT|$NGINX_PID|gzip]}" | grep . | median)
{
    say
    awk -v f="$f_gzip" -v n="$n_gzip" 'BEGIN { if (f > 0) printf "nginx spends %.1fx fserve'"'"'s CPU per gzip response.\n", n / f }'
} >>"$REPORT"

# ---------------------------------------------------------------------------------------------
if ((QUICK)); then
    OUT=$(mktemp -d /tmp/fserve-compression-report.XXXXXX)
else
    OUT=$REPO/benches/results
fi
DEST=$OUT/$(date -u +%Y-%m-%d)-compression.md
cp "$REPORT" "$DEST"
cat "$REPORT"
say
say "report: $DEST"
