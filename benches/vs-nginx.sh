#!/usr/bin/env bash
# fserve vs nginx, side by side, the way shared/BENCHMARKING.md says: pinned CPUs, same files,
# same worker count, alternated runs, medians, ratios, server CPU per request, a CPU-quota run.
# Server slots, run in this order within a round (each selected one in turn):
#   nginx         the reference (benches/nginx.conf.in)
#   fserve        fserve as started by default, which must come up on io_uring
#   fserve-base   a second fserve binary (FSERVE_BASE_BIN), same flags, io_uring: an earlier
#                 build to A/B against in the same run; its ratios are against nginx like the
#                 fserve slot's, so fserve-base's ratio next to fserve's is the A/B
#   fserve-epoll  the fserve binary with --io epoll, its fallback engine
#   sws           static-web-server, pinned version, built once with cargo install into
#                 ~/.cache/fserve-bench/sws-<version>/ (minutes, the first time); its
#                 production settings: compression off, directory listing off, log level
#                 error, cache-control headers as default; --threads-multiplier so that its
#                 worker threads = THREADS on the pinned CPUs (tokio's blocking pool, which
#                 reads the files, is on the same CPUs)
#   caddy         Caddy from the Debian package, a generated Caddyfile (benches/Caddyfile.in:
#                 admin off, auto_https off, plain http, file_server, no encode, no access
#                 log), GOMAXPROCS=THREADS
# The peers (sws, caddy) skip small-c64-log: neither writes nginx's combined access log lines to
# a file, so that row is "—" for them, with the reason in the report's header. They run the
# other workloads as fserve does (the quota run moves their processes into the cgroup too).
#
# Usage:  benches/vs-nginx.sh [--quick] [--whole-machine] [--peers]
#
#   (no flag)  full run; report in benches/results/<YYYY-MM-DD>.md and .svg, and the summary
#              table alone (for pasting into the README) in <YYYY-MM-DD>-summary.md
#              (same day: replaced)
#   --quick    smoke test for CI: 1 round of 1 s runs, small corpus (no 10m file, 100 random
#              files), 200 idle connections; no warm-up; the selected slots; report goes to a
#              temporary directory printed at the end, so the tree stays clean. Fails only when
#              the harness breaks (a server does not start or starts on the wrong engine, a
#              wrong status code, a tool missing), never on timing.
#   --whole-machine  what users compare: each server with one worker per CPU on every CPU,
#              wrk with as many threads beside them on the same CPUs (SERVER_CPUS and
#              CLIENT_CPUS default to all, THREADS and WRK_THREADS to their count; the
#              workloads default to small-c64 small-c512 64k random10k close); report in
#              benches/results/<YYYY-MM-DD>-whole.md (and -whole.svg, -whole-summary.md)
#   --peers    add the peers: sws and caddy (same as adding them to SLOTS)
#
# Environment (defaults in brackets):
#   SLOTS        which servers to run, any of: nginx fserve fserve-base fserve-epoll sws caddy;
#                they always run in that order within a round; ratios need nginx
#                                                                   [nginx fserve fserve-epoll]
#   FSERVE_BASE_BIN  the fserve binary for the fserve-base slot (required when it is selected)
#   ROUNDS       rounds of the SLOTS alternation per workload        [3; --quick: 1]
#   DURATION     wrk duration per measured run (wrk syntax: 10s, 1m)    [10s; --quick: 1s]
#   WARMUP       wrk warm-up before each measured run, 0 = none         [2s; --quick: 0]
#   SERVER_CPUS  CPU list for the servers (taskset -c syntax)           [0]
#   CLIENT_CPUS  CPU list for wrk and the idle-connection holder        [1]
#   WRK_THREADS  wrk threads                                             [1]
#   THREADS      nginx worker_processes = fserve --threads = Caddy GOMAXPROCS = sws worker
#                threads (a multiple of the number of SERVER_CPUS when sws runs)
#                                                                   [number of SERVER_CPUS]
#   WORKLOADS    space-separated subset of the workloads below          [all]
#   QUOTA_US     CPU quota per 100000 µs period for the quota run        [50000 = half a core]
#   FSERVE_BIN   use this fserve binary instead of building one         [cargo build --release]
#   FSERVE_SLOT  "nginx": a harness self-test. Each fserve slot in SLOTS (fserve, fserve-base,
#                fserve-epoll) runs its own second nginx instead (A/A/A), which shows the noise
#                floor; skips the fserve build and the engine check; the peers run as
#                themselves; report goes to a temporary directory          [fserve]
#   KEEP_WORK    1 keeps the temporary directory (corpus, logs, raw data) [0; kept on failure]
# fserve's own FSERVE_* settings (FSERVE_IO, FSERVE_CACHE_SIZE, …) and static-web-server's
# SERVER_* settings are removed from the servers' environment, and sws starts in an empty
# directory (no sws.toml, no 404.html): the runs measure each server's defaults plus the flags
# and config the harness gives it.
#
# Workloads (each: every selected slot, ROUNDS times; keep-alive unless said otherwise):
#   small-c64 small-c512 16k 32k 64k 10m 404 random10k close range idle10k small-c64-quota small-c64-log
# (small-c64-log: small-c64 with an access log on for both: nginx `access_log FILE combined
# buffer=64k`, fserve `--access-log FILE`, both combined lines into a file in the work dir;
# 404: each server answers with its own 404 page, the status must be 404 on every slot)
#
# Runs as root on Debian 12; installs missing tools from Debian packages (nginx-light wrk
# python3 curl iproute2; caddy when the caddy slot is selected). Helpers beside this script:
# nginx.conf.in, Caddyfile.in, corpus.py, summary.lua, random.lua, idle.py, report.py.

set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

say() { printf '%s\n' "$*"; }
die() { printf 'vs-nginx: error: %s\n' "$*" >&2; exit 1; }

QUICK=0 WHOLE=0 PEERS=0
for arg in "$@"; do
    case $arg in
        --quick) QUICK=1 ;;
        --whole-machine) WHOLE=1 ;;
        --peers) PEERS=1 ;;
        -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$arg' (usage: benches/vs-nginx.sh [--quick] [--whole-machine] [--peers])" ;;
    esac
done

if ((QUICK)); then
    ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-1s} WARMUP=${WARMUP:-0}
    RANDOM_FILES=100 IDLE_CONNS=200 WITH_10M=0
else
    ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10s} WARMUP=${WARMUP:-2s}
    RANDOM_FILES=10000 IDLE_CONNS=10000 WITH_10M=1
fi
if ((WHOLE)); then
    ALL_CPUS="0-$(($(getconf _NPROCESSORS_ONLN) - 1))"
    SERVER_CPUS=${SERVER_CPUS:-$ALL_CPUS}
    CLIENT_CPUS=${CLIENT_CPUS:-$ALL_CPUS}
    WORKLOADS=${WORKLOADS:-small-c64 small-c512 64k random10k close}
fi
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
QUOTA_US=${QUOTA_US:-50000}
FSERVE_SLOT=${FSERVE_SLOT:-fserve}
KEEP_WORK=${KEEP_WORK:-0}
ALL_SLOTS="nginx fserve fserve-base fserve-epoll sws caddy"
PEER_SLOTS="sws caddy"
SLOTS=${SLOTS-nginx fserve fserve-epoll}
((PEERS)) && SLOTS+=" $PEER_SLOTS"
# static-web-server: the newest release on crates.io (pre-releases aside) that builds with the
# stable Rust here; bump it on purpose, the report names it.
SWS_VERSION=2.41.0
ALL_WORKLOADS="small-c64 small-c512 16k 32k 64k 10m 404 random10k close range idle10k small-c64-quota small-c64-log"
WORKLOADS=${WORKLOADS:-$ALL_WORKLOADS}
SEED=42

[[ $(id -u) == 0 ]] || die "run as root (it installs packages, sets CPU quotas in cgroups)"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
[[ $DURATION =~ ^[1-9][0-9]*[smh]?$ ]] || die "DURATION must look like 10s or 1m, not '$DURATION'"
[[ $WARMUP =~ ^(0|[1-9][0-9]*[smh]?)$ ]] || die "WARMUP must be 0 or like 2s, not '$WARMUP'"
[[ $QUOTA_US =~ ^[1-9][0-9]*$ ]] || die "QUOTA_US must be a positive integer"
[[ $FSERVE_SLOT == fserve || $FSERVE_SLOT == nginx ]] || die "FSERVE_SLOT must be fserve or nginx"
for w in $WORKLOADS; do
    [[ " $ALL_WORKLOADS " == *" $w "* ]] || die "unknown workload '$w' (known: $ALL_WORKLOADS)"
done
for s in $SLOTS; do
    [[ " $ALL_SLOTS " == *" $s "* ]] || die "unknown slot '$s' in SLOTS (known: $ALL_SLOTS)"
done
# The selected slots, always in ALL_SLOTS order (duplicates dropped).
SLOT_LIST=()
for s in $ALL_SLOTS; do
    [[ " $SLOTS " == *" $s "* ]] && SLOT_LIST+=("$s")
done
((${#SLOT_LIST[@]})) || die "SLOTS is empty (use any of: $ALL_SLOTS)"
[[ " ${SLOT_LIST[*]} " == *" nginx "* ]] ||
    say "SLOTS has no nginx: the report gives medians but no ratios against nginx"
selected() { [[ " ${SLOT_LIST[*]} " == *" $1 "* ]]; } # SLOT: is it in SLOTS?
is_fserve() { [[ $1 == fserve || $1 == fserve-base || $1 == fserve-epoll ]]; }
is_peer() { [[ " $PEER_SLOTS " == *" $1 "* ]]; }
# SLOT: does this slot run nginx? (the fserve slots do in the FSERVE_SLOT=nginx self-test)
runs_nginx() { [[ $1 == nginx ]] || { [[ $FSERVE_SLOT == nginx ]] && is_fserve "$1"; }; }
runs_fserve() { is_fserve "$1" && ! runs_nginx "$1"; } # SLOT: does it run an fserve binary?
need_fserve() { # some slot runs the fserve binary under test (fserve-base runs its own)
    local s
    for s in "${SLOT_LIST[@]}"; do
        [[ $s != fserve-base ]] && runs_fserve "$s" && return 0
    done
    return 1
}
# Fail before any set-up when the fserve-base slot has no binary to run.
if selected fserve-base && runs_fserve fserve-base; then
    [[ -n ${FSERVE_BASE_BIN:-} ]] ||
        die "the fserve-base slot needs FSERVE_BASE_BIN, the earlier fserve binary to compare with (e.g. FSERVE_BASE_BIN=old/fserve SLOTS=\"nginx fserve fserve-base\")"
    [[ -x $FSERVE_BASE_BIN && -f $FSERVE_BASE_BIN ]] ||
        die "FSERVE_BASE_BIN=$FSERVE_BASE_BIN is not an executable file (set it to an fserve binary)"
fi

# ---------------------------------------------------------------------------------------------
# CPU lists: "0-1,3" -> count and nginx affinity mask.
cpu_ids() {
    local part a b
    local -a parts
    IFS=, read -r -a parts <<<"$1"
    for part in "${parts[@]}"; do
        if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
            a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
            seq "$a" "$b"
        elif [[ $part =~ ^[0-9]+$ ]]; then
            echo "$part"
        else
            die "bad CPU list '$1' (use taskset -c syntax like 0 or 0-1,3)"
        fi
    done
}
affinity_mask() { # CPU ids on stdin -> nginx bit string, CPU 0 rightmost
    local max=0 id i mask=""
    local -A on=()
    while read -r id; do on[$id]=1; ((id > max)) && max=$id; done
    for ((i = max; i >= 0; i--)); do mask+=${on[$i]:-0}; done
    echo "$mask"
}
SERVER_CPU_COUNT=$(cpu_ids "$SERVER_CPUS" | sort -un | wc -l)
THREADS=${THREADS:-$SERVER_CPU_COUNT}
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer"
# sws sizes its workers per CPU it may run on: worker threads = CPUs × --threads-multiplier.
SWS_MULTIPLIER=$((THREADS / SERVER_CPU_COUNT))
if selected sws && ((SWS_MULTIPLIER == 0 || THREADS % SERVER_CPU_COUNT != 0)); then
    die "the sws slot needs THREADS ($THREADS) to be a multiple of the number of SERVER_CPUS ($SERVER_CPU_COUNT): static-web-server sets its worker threads as a per-CPU multiplier"
fi
if ((WHOLE)); then
    WRK_THREADS=${WRK_THREADS:-$(cpu_ids "$CLIENT_CPUS" | sort -un | wc -l)}
fi
WRK_THREADS=${WRK_THREADS:-1}
[[ $WRK_THREADS =~ ^[1-9][0-9]*$ ]] || die "WRK_THREADS must be a positive integer"
NGINX_AFFINITY="auto $(cpu_ids "$SERVER_CPUS" | sort -un | affinity_mask)"

# ---------------------------------------------------------------------------------------------
# Tools: Debian packages only.
install_tools() {
    local -a need=()
    command -v nginx >/dev/null || need+=(nginx-light)
    command -v wrk >/dev/null || need+=(wrk)
    command -v python3 >/dev/null || need+=(python3)
    command -v curl >/dev/null || need+=(curl)
    command -v ss >/dev/null || need+=(iproute2)
    command -v taskset >/dev/null || need+=(util-linux)
    if selected caddy; then command -v caddy >/dev/null || need+=(caddy); fi
    if ((${#need[@]})); then
        command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
        say "installing from Debian packages: ${need[*]}"
        apt-get update -qq || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
            die "apt-get install ${need[*]} failed"
        if [[ " ${need[*]} " == *" nginx-light "* ]]; then stop_system_nginx; fi
        if [[ " ${need[*]} " == *" caddy "* ]]; then stop_system_caddy; fi
    fi
    local t
    for t in nginx wrk python3 curl ss taskset getconf; do
        command -v "$t" >/dev/null || die "$t is missing after installation"
    done
    if selected caddy; then
        command -v caddy >/dev/null || die "caddy is missing after installation (apt-get install caddy)"
    fi
}
# The Debian caddy package starts its service (port 80) where systemd runs.
stop_system_caddy() {
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        systemctl stop caddy 2>/dev/null || true
    fi
}

# static-web-server, built once per version with cargo install (--locked: the dependency
# versions its release was tested with) into a cache outside the tree; later runs reuse it.
SWS_BIN="" SWS_DESC=""
install_sws() {
    local root="${XDG_CACHE_HOME:-$HOME/.cache}/fserve-bench/sws-$SWS_VERSION" log="$WORK/logs/sws-install.log"
    SWS_BIN=$root/bin/static-web-server
    if [[ ! -x $SWS_BIN ]]; then
        command -v cargo >/dev/null || die "cargo not found: the sws slot builds static-web-server with cargo install (install Rust)"
        say "building static-web-server $SWS_VERSION once: cargo install into $root (minutes; log: $log)"
        if ! cargo install static-web-server --version "$SWS_VERSION" --locked --root "$root" >"$log" 2>&1; then
            tail -n 30 "$log" >&2
            die "cargo install static-web-server --version $SWS_VERSION failed (log above); pin a version that builds with $(rustc --version 2>/dev/null || echo "this rustc") in SWS_VERSION"
        fi
        [[ -x $SWS_BIN ]] || die "cargo install put no $SWS_BIN"
    fi
    local v # `static-web-server --version` prints lines like "Version:      2.41.0"
    v=$("$SWS_BIN" --version 2>&1 | awk '$1 == "Version:" { print $2; exit }')
    [[ $v == "$SWS_VERSION" ]] ||
        die "$SWS_BIN says it is version '${v:-?}', not $SWS_VERSION: remove $root and run again"
    SWS_DESC="static-web-server $v"
}

# The Debian package may start the system nginx (port 80) right after installing it.
stop_system_nginx() {
    local pid i
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        systemctl stop nginx 2>/dev/null || true
    fi
    if [[ -s /run/nginx.pid ]]; then
        pid=$(<"/run/nginx.pid")
        if kill -0 "$pid" 2>/dev/null; then
            say "stopping the system nginx that the package started (pid $pid)"
            kill -QUIT "$pid" 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
        fi
    fi
}

# ---------------------------------------------------------------------------------------------
# Process helpers (no procps needed).
alive() { # PID is running (not gone, not a zombie)
    local line
    read -r line 2>/dev/null <"/proc/$1/stat" || return 1
    line=${line##*) }
    [[ ${line:0:1} != Z ]]
}
tree_pids() { # PID -> PID and all its descendants, space separated
    local f line pid ppid k
    local -A kids=()
    local -a todo=("$1") out=()
    for f in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$f" || continue
        pid=${line%% *}
        line=${line##*) }
        read -r _ ppid _ <<<"$line"
        kids[$ppid]+=" $pid"
    done
    while ((${#todo[@]})); do
        pid=${todo[0]}
        todo=("${todo[@]:1}")
        out+=("$pid")
        for k in ${kids[$pid]:-}; do todo+=("$k"); done
    done
    echo "${out[*]}"
}
cpu_ticks() { # PIDs -> sum of utime+stime (fields 14, 15 of /proc/PID/stat), clock ticks
    local pid line total=0
    local -a f
    for pid in "$@"; do
        read -r line 2>/dev/null <"/proc/$pid/stat" || continue
        line=${line##*) }           # fields from 3 (state) on
        read -r -a f <<<"$line"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}
status_kb() { # FIELD PIDs -> sum of FIELD (VmHWM, VmRSS) from /proc/PID/status, in kB
    local field=$1 pid k v total=0
    shift
    for pid in "$@"; do
        [[ -r /proc/$pid/status ]] || continue
        while read -r k v _; do
            if [[ $k == "$field:" ]]; then total=$((total + v)); fi
        done 2>/dev/null <"/proc/$pid/status" || true
    done
    echo "$total"
}
wait_gone() { # PID SECONDS -> 0 if it exited in time
    local pid=$1 deadline
    deadline=$(($(date +%s) + $2))
    while alive "$pid"; do
        (($(date +%s) < deadline)) || return 1
        sleep 0.05
    done
}
listening() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }
free_port() { # START [SKIP…]: first port >= START that nothing listens on, skipping SKIP…
    local p start=$1
    shift
    for ((p = start; p < start + 100; p++)); do
        [[ " $* " == *" $p "* ]] && continue
        listening "$p" || { echo "$p"; return 0; }
    done
    die "no free port in $start..$((start + 99))"
}

# Shell-quoted command line, for the report: quote only what needs it.
show_cmd() { # the repository's own files as paths relative to it
    local a line=""
    for a in "$@"; do
        a=${a//"$REPO/"/}
        if [[ $a =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then line+="$a "; else line+="'$a' "; fi
    done
    echo "${line% }"
}
record_cmd() { grep -Fxq -- "$1" "$WORK/commands.txt" 2>/dev/null || echo "$1" >>"$WORK/commands.txt"; }
note() { # an anomaly worth a line in the report
    say "  ! $*"
    echo "$*" >>"$WORK/notes.txt"
}

# ---------------------------------------------------------------------------------------------
# cgroups for the CPU-quota run: v2 cpu.max, or v1 cpu.cfs_quota_us.
CG_MODE=none CG_ROOT="" CG_WHY=""
CG_DIRS=()
cg_detect() {
    local mnt type opts o
    while read -r _ mnt type opts _; do
        if [[ $type == cgroup2 && -z $CG_ROOT ]] && grep -qw cpu "$mnt/cgroup.controllers" 2>/dev/null; then
            if ! grep -qw cpu "$mnt/cgroup.subtree_control" 2>/dev/null; then
                echo +cpu 2>/dev/null >"$mnt/cgroup.subtree_control" || continue
            fi
            CG_MODE=v2 CG_ROOT=$mnt
        fi
    done </proc/mounts
    if [[ $CG_MODE == none ]]; then
        while read -r _ mnt type opts _; do
            [[ $type == cgroup ]] || continue
            IFS=, read -r -a o <<<"$opts"
            if [[ " ${o[*]} " == *" cpu "* && -w $mnt/cpu.cfs_quota_us ]]; then
                CG_MODE=v1 CG_ROOT=$mnt
                break
            fi
        done </proc/mounts
    fi
    if [[ $CG_MODE != none ]]; then
        local probe="$CG_ROOT/fservebench-$$-probe"
        if ! mkdir "$probe" 2>/dev/null; then
            CG_WHY="cannot create a cgroup under $CG_ROOT"
            CG_MODE=none
        else
            rmdir "$probe"
        fi
    else
        CG_WHY="no writable cgroup with the cpu controller (v2 cpu.max or v1 cpu.cfs_quota_us)"
    fi
}
CG_DIR=""
cg_create() { # NAME -> CG_DIR, a new cgroup limited to QUOTA_US per 100000 µs
    local dir="$CG_ROOT/fservebench-$$-$1"
    mkdir "$dir" || die "cannot create cgroup $dir"
    CG_DIRS+=("$dir")
    CG_DIR=$dir
    if [[ $CG_MODE == v2 ]]; then
        echo "$QUOTA_US 100000" >"$dir/cpu.max"
    else
        echo 100000 >"$dir/cpu.cfs_period_us"
        echo "$QUOTA_US" >"$dir/cpu.cfs_quota_us"
    fi
}
cg_add() { # DIR PIDs: cgroup.procs moves every thread of each process
    local dir=$1 pid
    shift
    for pid in "$@"; do echo "$pid" >"$dir/cgroup.procs" || die "cannot move pid $pid into $dir"; done
}
cg_remove() {
    local dir=$1 pid
    [[ -d $dir ]] || return 0
    while read -r pid; do echo "$pid" >"$(dirname "$dir")/cgroup.procs" 2>/dev/null || true; done <"$dir/cgroup.procs"
    rmdir "$dir" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# Cleanup: every server and holder we started, the cgroups, the work dir (kept on failure).
SERVER_PIDS=()
HOLDER_PID=""
WORK=""
cleanup() {
    local rc=$? pid d
    local -a pids
    set +e
    if [[ -n $HOLDER_PID ]]; then kill -TERM "$HOLDER_PID" 2>/dev/null; fi
    for pid in "${SERVER_PIDS[@]}"; do
        alive "$pid" || continue
        read -r -a pids <<<"$(tree_pids "$pid")"
        kill -TERM "${pids[@]}" 2>/dev/null
        wait_gone "$pid" 5 || kill -KILL "${pids[@]}" 2>/dev/null
    done
    if [[ -n $HOLDER_PID ]]; then
        wait_gone "$HOLDER_PID" 3 || kill -KILL "$HOLDER_PID" 2>/dev/null
    fi
    for d in "${CG_DIRS[@]}"; do cg_remove "$d"; done
    if [[ -n $WORK && -d $WORK ]]; then
        if ((rc == 0)) && [[ $KEEP_WORK != 1 ]]; then
            rm -rf "$WORK"
        else
            say "vs-nginx: work directory kept (logs, raw data): $WORK" >&2
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Setup
install_tools
taskset -c "$SERVER_CPUS" true 2>/dev/null || die "SERVER_CPUS=$SERVER_CPUS is not usable here"
taskset -c "$CLIENT_CPUS" true 2>/dev/null || die "CLIENT_CPUS=$CLIENT_CPUS is not usable here"

WORK=$(mktemp -d /tmp/fserve-bench.XXXXXX)
chmod 755 "$WORK" # nginx workers run as nobody and must read the corpus
mkdir -p "$WORK/logs"
: >"$WORK/commands.txt"
: >"$WORK/notes.txt"
CORPUS=$WORK/corpus
# Only a full run against the real fserve writes into the tree.
if ((QUICK)) || [[ $FSERVE_SLOT == nginx ]]; then
    OUT_DIR=$(mktemp -d /tmp/fserve-report.XXXXXX)
else
    OUT_DIR=$HERE/results
fi
DATE=$(date +%F)

# Open files: the idle workload needs IDLE_CONNS per process (servers and holder inherit this).
HARD_NOFILE=$(ulimit -Hn)
[[ $HARD_NOFILE == unlimited ]] && HARD_NOFILE=1048576
NOFILE=$((HARD_NOFILE < 65536 ? HARD_NOFILE : 65536))
ulimit -n "$NOFILE" || die "cannot raise ulimit -n to $NOFILE"
if ((NOFILE < IDLE_CONNS + IDLE_CONNS / 8 + 512)); then
    IDLE_CONNS=$(((NOFILE - 512) * 8 / 9))
    say "open-file limit is $NOFILE (hard limit); the idle workload holds $IDLE_CONNS connections"
fi
# nginx drains idle keep-alive connections once under 1/16 of worker_connections are free.
WORKER_CONNECTIONS=$((IDLE_CONNS + IDLE_CONNS / 8 + 256))
((WORKER_CONNECTIONS > 8192)) || WORKER_CONNECTIONS=8192
((WORKER_CONNECTIONS <= NOFILE)) || WORKER_CONNECTIONS=$NOFILE

# One port per slot, the first free one from: nginx 18080, fserve 18081, fserve-epoll 18082,
# sws 18083, caddy 18084, fserve-base 18085 (the older slots keep their ports).
declare -A SLOT_PORT=()
declare -A PORT_BASE=([nginx]=18080 [fserve]=18081 [fserve-epoll]=18082 [sws]=18083 [caddy]=18084
    [fserve-base]=18085)
for s in "${SLOT_LIST[@]}"; do
    # shellcheck disable=SC2048,SC2086 # the ports taken so far, as separate words
    SLOT_PORT[$s]=$(free_port "${PORT_BASE[$s]}" ${SLOT_PORT[*]})
done

cg_detect
if [[ $CG_MODE == none ]]; then
    QUOTA_DESC="unavailable: $CG_WHY"
else
    QUOTA_DESC="cgroup $CG_MODE, $( [[ $CG_MODE == v2 ]] && echo "cpu.max \"$QUOTA_US 100000\"" || echo "cpu.cfs_quota_us=$QUOTA_US cpu.cfs_period_us=100000") ($(awk -v q="$QUOTA_US" 'BEGIN { printf "%g", q / 100000 }') CPU)"
fi

# fserve: build it (or take FSERVE_BIN), unless no slot runs it (SLOTS=nginx, or the
# FSERVE_SLOT=nginx self-test).
FSERVE_DESC=""
if need_fserve; then
    if [[ -n ${FSERVE_BIN:-} ]]; then
        [[ -x $FSERVE_BIN ]] || die "FSERVE_BIN=$FSERVE_BIN is not an executable"
    else
        command -v cargo >/dev/null || die "cargo not found: install Rust to build fserve"
        say "building fserve: cargo build --release (log: $WORK/logs/cargo.log)"
        if ! (cd "$REPO" && cargo build --release) >"$WORK/logs/cargo.log" 2>&1; then
            tail -n 30 "$WORK/logs/cargo.log" >&2
            die "cargo build --release failed (log above)"
        fi
        FSERVE_BIN=$REPO/target/release/fserve
        [[ -x $FSERVE_BIN ]] || die "cargo built no $FSERVE_BIN"
    fi
    FSERVE_DESC=${FSERVE_BIN#"$REPO/"}
elif [[ $FSERVE_SLOT == nginx ]]; then
    FSERVE_DESC="(self-test: FSERVE_SLOT=nginx, each fserve slot runs its own nginx)"
else
    FSERVE_DESC="(not run: SLOTS=${SLOT_LIST[*]})"
fi
FSERVE_BASE_DESC="" BASE_NO_LOG=""
if selected fserve-base && runs_fserve fserve-base; then
    FSERVE_BASE_DESC=${FSERVE_BASE_BIN#"$REPO/"}
    # The harness gives fserve-base only the flags every fserve build knows (-b -p -t ROOT),
    # plus --access-log for small-c64-log, which older builds lack: those skip that workload.
    base_help=$("$FSERVE_BASE_BIN" --help 2>&1 || true)
    if [[ $base_help != *--access-log* ]]; then
        BASE_NO_LOG="this fserve-base build has no --access-log flag"
        [[ " $WORKLOADS " == *" small-c64-log "* ]] &&
            say "fserve-base: $BASE_NO_LOG; it skips small-c64-log"
    fi
    if [[ -n ${FSERVE_BIN:-} && $FSERVE_BASE_BIN -ef $FSERVE_BIN ]]; then
        say "FSERVE_BASE_BIN is the same file as the fserve binary: fserve-base is an A/A run"
    fi
fi
if selected sws; then install_sws; fi
CADDY_DESC=""
if selected caddy; then
    CADDY_DESC="Caddy $(caddy version 2>&1 | head -n 1)"
fi

say "making the corpus in $CORPUS"
corpus_args=(--random-files "$RANDOM_FILES" --seed 20240601)
((WITH_10M)) || corpus_args+=(--no-10m)
python3 "$HERE/corpus.py" "$CORPUS" "${corpus_args[@]}" || die "corpus.py failed"

# nginx configs, one per slot that runs nginx.
nginx_conf() { # SLOT PORT [log] -> writes $WORK/nginx-SLOT[-log]/nginx.conf
    local dir="$WORK/nginx-$1${3:+-log}" access_log=off
    mkdir -p "$dir"
    [[ -n ${3:-} ]] && access_log="$dir/access.log combined buffer=64k"
    cp /etc/nginx/mime.types "$dir/mime.types" || die "no /etc/nginx/mime.types"
    sed -e "s|@WORKERS@|$THREADS|g" -e "s|@AFFINITY@|$NGINX_AFFINITY|g" \
        -e "s|@NOFILE@|$NOFILE|g" -e "s|@PREFIX@|$dir|g" \
        -e "s|@WORKER_CONNECTIONS@|$WORKER_CONNECTIONS|g" -e "s|@ACCESS_LOG@|$access_log|g" \
        -e "s|@PORT@|$2|g" -e "s|@ROOT@|$CORPUS|g" "$HERE/nginx.conf.in" >"$dir/nginx.conf"
    nginx -t -q -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" 2>"$WORK/logs/nginx-t-$1.log" ||
        { cat "$WORK/logs/nginx-t-$1.log" >&2; die "nginx rejects the generated config $dir/nginx.conf"; }
}
for s in "${SLOT_LIST[@]}"; do
    if runs_nginx "$s"; then
        nginx_conf "$s" "${SLOT_PORT[$s]}"
        [[ " $WORKLOADS " == *" small-c64-log "* ]] && nginx_conf "$s" "${SLOT_PORT[$s]}" log
    fi
done
# The report shows one config: the nginx slot's, or the first one generated (self-test).
for s in "${SLOT_LIST[@]}"; do
    if runs_nginx "$s"; then cp "$WORK/nginx-$s/nginx.conf" "$WORK/nginx.conf"; break; fi
done

# Caddy: its config, checked now so a bad one fails before any run; its data and config
# directories (unused with automatic HTTPS off) inside the work dir; sws: an empty directory to
# start in, so no sws.toml or 404.html from the caller's directory is picked up.
if selected caddy; then
    mkdir -p "$WORK/caddy/data" "$WORK/caddy/config"
    sed -e "s|@PORT@|${SLOT_PORT[caddy]}|g" -e "s|@ROOT@|$CORPUS|g" "$HERE/Caddyfile.in" >"$WORK/Caddyfile"
    XDG_DATA_HOME=$WORK/caddy/data XDG_CONFIG_HOME=$WORK/caddy/config \
        caddy adapt --config "$WORK/Caddyfile" --adapter caddyfile >/dev/null 2>"$WORK/logs/caddy-adapt.log" ||
        { cat "$WORK/logs/caddy-adapt.log" >&2; die "caddy rejects the generated config $WORK/Caddyfile"; }
fi
if selected sws; then mkdir -p "$WORK/sws"; fi

# ---------------------------------------------------------------------------------------------
# Servers
SRV_PID="" SRV_PORT=""
SERVER_ENV_UNSET=() # fserve's FSERVE_* and static-web-server's SERVER_* settings
for v in $(compgen -e); do
    if [[ $v == FSERVE_* || $v == SERVER_* ]]; then SERVER_ENV_UNSET+=(-u "$v"); fi
done
declare -A BANNER=() # SLOT -> fserve's start line, from its first start
RUN_ID=0
start_server() { # SLOT (one of ALL_SLOTS) -> SRV_PID, SRV_PORT; waits until it answers
    local slot=$1 log dir=.
    local -a cmd envs=()
    RUN_ID=$((RUN_ID + 1))
    log="$WORK/logs/$RUN_ID-$slot.log"
    SRV_PORT=${SLOT_PORT[$slot]}
    listening "$SRV_PORT" && die "port $SRV_PORT is already in use before starting $slot"
    if runs_nginx "$slot"; then
        local conf="$WORK/nginx-$slot${WL_LOG:+-log}"
        rm -f "$conf/access.log"
        cmd=(taskset -c "$SERVER_CPUS" nginx -p "$conf/" -c "$conf/nginx.conf" -e "$conf/error.log"
            -g 'daemon off;')
    elif [[ $slot == sws ]]; then
        dir=$WORK/sws
        cmd=(taskset -c "$SERVER_CPUS" "$SWS_BIN" --host 127.0.0.1 --port "$SRV_PORT"
            --root "$CORPUS" --threads-multiplier "$SWS_MULTIPLIER" --log-level error
            --compression false --directory-listing false)
    elif [[ $slot == caddy ]]; then
        envs=(GOMAXPROCS="$THREADS" XDG_DATA_HOME="$WORK/caddy/data" XDG_CONFIG_HOME="$WORK/caddy/config")
        cmd=(taskset -c "$SERVER_CPUS" caddy run --config "$WORK/Caddyfile" --adapter caddyfile)
    else
        local bin=$FSERVE_BIN
        [[ $slot == fserve-base ]] && bin=$FSERVE_BASE_BIN
        cmd=(taskset -c "$SERVER_CPUS" "$bin" -b 127.0.0.1 -p "$SRV_PORT" -t "$THREADS")
        [[ $slot == fserve-epoll ]] && cmd+=(--io epoll)
        if [[ -n ${WL_LOG:-} ]]; then
            rm -f "$WORK/logs/access-$slot.log"
            cmd+=(--access-log "$WORK/logs/access-$slot.log")
        fi
        cmd+=("$CORPUS")
    fi
    record_cmd "$([[ $dir != . ]] && echo "cd $dir && ")$(show_cmd "${envs[@]}" "${cmd[@]}")"
    # fserve reads FSERVE_* variables (FSERVE_IO, FSERVE_CACHE_SIZE, …), sws SERVER_* ones:
    # start every server without them, so the flags above and the defaults are what is measured.
    (cd "$dir" && exec env "${SERVER_ENV_UNSET[@]}" "${envs[@]}" "${cmd[@]}") >"$log" 2>&1 &
    SRV_PID=$!
    SERVER_PIDS+=("$SRV_PID")
    wait_ready "$SRV_PID" "$SRV_PORT" "$log" "$slot"
    if runs_fserve "$slot"; then
        check_engine "$slot" "$log" "$( [[ $slot == fserve-epoll ]] && echo epoll || echo io_uring)"
    fi
}
# fserve says which engine it serves on: "TIME INFO fserve: serving ROOT at URL (N workers,
# ENGINE)"; builds before the diagnostic log format (an fserve-base) print the line bare.
# The fserve and fserve-base slots must be on io_uring (with --io auto it falls back to epoll
# where io_uring is refused, which would make it a second epoll slot), fserve-epoll on epoll;
# all on THREADS.
check_engine() { # SLOT LOG ENGINE
    local slot=$1 log=$2 want=$3 line="" i hint=""
    for ((i = 0; i < 40; i++)); do # printed just after the listeners open: allow 2 s
        line=$(grep -m 1 -E '(^| INFO )fserve: serving ' "$log" | sed 's/^.* INFO //' || true)
        [[ -n $line ]] && break
        sleep 0.05
    done
    if [[ -z $line ]]; then
        cat "$log" >&2
        die "$slot: fserve printed no start line 'fserve: serving … (N workers, $want)' (log above: $log)"
    fi
    if [[ $line != *"($THREADS workers, $want)" && $line != *"($THREADS worker, $want)" ]]; then
        cat "$log" >&2
        if [[ $want == io_uring ]] && grep -q 'epoll engine instead' "$log"; then
            hint=" (io_uring is refused here, see the log above; SLOTS=\"nginx fserve-epoll\" benchmarks the epoll engine alone)"
        fi
        die "$slot: expected fserve to start with '($THREADS workers, $want)', but its start line is: $line$hint"
    fi
    [[ -n ${BANNER[$slot]:-} ]] || BANNER[$slot]=$line
}
wait_ready() { # PID PORT LOG NAME: listening and answering HTTP within 10 s, or die
    local pid=$1 port=$2 log=$3 name=$4 deadline code
    deadline=$(($(date +%s) + 10))
    while (($(date +%s) < deadline)); do
        if ! alive "$pid"; then
            tail -n 20 "$log" >&2
            die "$name exited during start-up (log above: $log)"
        fi
        if listening "$port"; then
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/1k.html" || true)
            [[ $code != 000 ]] && return 0
        fi
        sleep 0.05
    done
    tail -n 20 "$log" >&2
    die "$name did not answer on 127.0.0.1:$port within 10 s (log: $log)"
}
stop_server() { # PID NAME: SIGTERM, bounded wait, note anything odd; waits for the port to free
    local pid=$1 name=$2 port=$3 rc=0 pids i
    pids=$(tree_pids "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 10; then
        note "$name (pid $pid) did not exit within 10 s of SIGTERM; killed"
        # shellcheck disable=SC2086 # word splitting of the pid list is intended
        kill -KILL $pids 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || rc=$?
    for i in "${!SERVER_PIDS[@]}"; do [[ ${SERVER_PIDS[$i]} == "$pid" ]] && unset 'SERVER_PIDS[i]'; done
    SERVER_PIDS=("${SERVER_PIDS[@]}")
    ((rc == 0)) || note "$name exited with status $rc after SIGTERM (expected 0)"
    for ((i = 0; i < 200; i++)); do listening "$port" || return 0; sleep 0.05; done
    die "port $port still has a listener 10 s after $name stopped"
}

# ---------------------------------------------------------------------------------------------
# Preflight: every URL answers the expected status, with the right bytes, on every slot.
declare -A NO_RANGES=() # SLOT -> 1 when it answered the range request with 200 (whole file)
check_url() { # NAME PORT PATH EXPECTED-STATUS [HEADER] -> prints the status it got
    local name=$1 port=$2 path=$3 want=$4 hdr=${5:-} got body="$WORK/body"
    local -a h=()
    [[ -n $hdr ]] && h=(-H "$hdr")
    got=$(curl -s -o "$body" -w '%{http_code}' --max-time 10 "${h[@]}" "http://127.0.0.1:$port$path" || true)
    echo "$got"
    [[ $got == "$want" ]] || return 0
    case $want in
        200) cmp -s "$body" "$CORPUS$path" || die "$name: GET $path${hdr:+ ($hdr)} answered 200 with the wrong body" ;;
        206) cmp -s "$body" <(tail -c +1001 "$CORPUS$path" | head -c 4000) ||
            die "$name: GET $path ($hdr) answered 206 with the wrong bytes" ;;
    esac
}
preflight() {
    local slot port path want hdr got last
    last=$(printf '/r/%05d.html' $((RANDOM_FILES - 1)))
    local -a checks=("/1k.html|200|" "/16k.css|200|" "/32k.js|200|" "/64k.js|200|" "/1m.bin|200|"
        "/missing|404|" "/r/00000.html|200|" "$last|200|" "/1k.html|200|Connection: close"
        "/1m.bin|206|Range: bytes=1000-4999")
    ((WITH_10M)) && checks+=("/10m.bin|200|")
    for slot in "${SLOT_LIST[@]}"; do
        start_server "$slot"
        port=$SRV_PORT
        for c in "${checks[@]}"; do
            IFS='|' read -r path want hdr <<<"$c"
            got=$(check_url "$slot" "$port" "$path" "$want" "$hdr")
            [[ $got == "$want" ]] && continue
            if [[ $slot != nginx && $want == 206 && $got == 200 ]]; then
                NO_RANGES[$slot]=1
                note "$slot: ranges not implemented: GET $path with '$hdr' answered 200 (whole file), not 206; range row not compared"
                continue
            fi
            [[ -n $hdr ]] && hdr=" with header \"$hdr\""
            die "$slot: GET $path$hdr answered $got, expected $want"
        done
        stop_server "$SRV_PID" "$slot" "$port"
    done
    say "preflight: every URL answers as expected on ${SLOT_LIST[*]}"
}

# ---------------------------------------------------------------------------------------------
# Workloads
wl_def() { # NAME -> WL_PATH WL_CONNS WL_HEADER WL_SCRIPT WL_QUOTA WL_DESC
    WL_HEADER="" WL_SCRIPT=$HERE/summary.lua WL_QUOTA=0 WL_CONNS=64 WL_LOG=""
    case $1 in
        small-c64) WL_PATH=/1k.html WL_DESC="GET /1k.html (1 KiB), keep-alive, 64 connections" ;;
        small-c512) WL_PATH=/1k.html WL_CONNS=512 WL_DESC="GET /1k.html, keep-alive, 512 connections" ;;
        16k) WL_PATH=/16k.css WL_DESC="GET /16k.css (16 KiB), keep-alive, 64 connections" ;;
        32k) WL_PATH=/32k.js WL_DESC="GET /32k.js (32 KiB), keep-alive, 64 connections" ;;
        64k) WL_PATH=/64k.js WL_DESC="GET /64k.js (64 KiB), keep-alive, 64 connections" ;;
        10m) WL_PATH=/10m.bin WL_CONNS=8 WL_DESC="GET /10m.bin (10 MiB), keep-alive, 8 connections (see MiB/s and CPU-s/GiB)" ;;
        404) WL_PATH=/missing WL_DESC="GET /missing (404), keep-alive, 64 connections" ;;
        random10k) WL_PATH=/r/00000.html WL_SCRIPT=$HERE/random.lua
            WL_DESC="GET a random one of $RANDOM_FILES files r/NNNNN.html (200-2000 bytes; wrk Lua, seed $SEED), 64 connections" ;;
        close) WL_PATH=/1k.html WL_HEADER="Connection: close"
            WL_DESC="GET /1k.html with 'Connection: close' (a new connection per request), 64 connections" ;;
        range) WL_PATH=/1m.bin WL_HEADER="Range: bytes=1000-4999"
            WL_DESC="GET /1m.bin with 'Range: bytes=1000-4999' (206, 4000 bytes), 64 connections" ;;
        idle10k) WL_PATH=/1k.html WL_CONNS=$IDLE_CONNS
            WL_DESC="$IDLE_CONNS keep-alive connections, each after one GET /1k.html, held idle (python3 benches/idle.py); RSS = sum of VmRSS with them open" ;;
        small-c64-quota) WL_PATH=/1k.html WL_QUOTA=1
            WL_DESC="small-c64 with the server in a CPU quota: $QUOTA_DESC" ;;
        small-c64-log) WL_PATH=/1k.html WL_LOG=1
            WL_DESC="small-c64 with an access log: nginx 'access_log FILE combined buffer=64k', fserve '--access-log FILE'" ;;
    esac
}

# Runs wrk; prints the FSB summary line fields ("requests=… …") or dies with wrk's output.
run_wrk() { # PORT DURATION LOGFILE [warmup]
    local port=$1 dur=$2 log=$3 warm=${4:-}
    local -a cmd h=()
    [[ -n $WL_HEADER ]] && h=(-H "$WL_HEADER")
    cmd=(taskset -c "$CLIENT_CPUS" wrk "-t$WRK_THREADS" "-c$WL_CONNS" "-d$dur" --latency -s "$WL_SCRIPT" "${h[@]}"
        "http://127.0.0.1:$port$WL_PATH")
    [[ -n $warm ]] ||
        record_cmd "$( [[ $WL_SCRIPT == */random.lua ]] && echo "FSB_RANDOM_FILES=$RANDOM_FILES FSB_SEED=$SEED ")$(show_cmd "${cmd[@]}")"
    FSB_RANDOM_FILES=$RANDOM_FILES FSB_SEED=$SEED "${cmd[@]}" >"$log" 2>&1 ||
        { cat "$log" >&2; die "wrk failed: $(show_cmd "${cmd[@]}")"; }
    grep '^FSB ' "$log" | sed 's/^FSB //' | tail -n 1 | grep . ||
        { cat "$log" >&2; die "wrk printed no summary line (benches/summary.lua): $log"; }
}

TSV_COLS="round workload server status_kind requests bytes duration_us p50_us p99_us cpu_ticks rss_kb connect read write status timeout note"
tsv_row() { # key=value… -> one runs.tsv line in TSV_COLS order
    local -A v=()
    local kv c line=""
    for kv in "$@"; do v[${kv%%=*}]=${kv#*=}; done
    for c in $TSV_COLS; do line+="${v[$c]:-}"$'\t'; done
    printf '%s\n' "${line%$'\t'}" >>"$WORK/runs.tsv"
}

# Why a peer does not run the access-log workload (shown in the report's header).
declare -A PEER_NO_LOG=(
    [sws]="no access log file: static-web-server logs requests only as info-level lines on stderr, not nginx's combined lines into a file"
    [caddy]="no comparable access log: Caddy writes JSON (or console) lines, not nginx's combined format"
)
measure() { # WORKLOAD SLOT ROUND
    local wl=$1 slot=$2 round=$3 log pids t0 t1 rss fields cg="" k skip=""
    local -A r=()
    wl_def "$wl"
    if [[ $wl == range && ${NO_RANGES[$slot]:-0} == 1 ]]; then
        skip="ranges not implemented (200)"
    elif [[ -n $WL_LOG ]] && is_peer "$slot"; then
        skip=${PEER_NO_LOG[$slot]}
    elif [[ -n $WL_LOG && $slot == fserve-base && -n $BASE_NO_LOG ]]; then
        skip=$BASE_NO_LOG
    fi
    if [[ -n $skip ]]; then
        tsv_row round="$round" workload="$wl" server="$slot" status_kind=skipped note="$skip"
        say "  $wl $slot: skipped ($skip)"
        return 0
    fi
    start_server "$slot"
    pids=$(tree_pids "$SRV_PID")
    if ((WL_QUOTA)); then
        cg_create "$slot-$RUN_ID"
        cg=$CG_DIR
        # shellcheck disable=SC2086 # word splitting of the pid list is intended
        cg_add "$cg" $pids
        if [[ $CG_MODE == v2 ]]; then
            record_cmd "mkdir $CG_ROOT/fservebench-<pid>-<slot>-<n>; cd there; echo '$QUOTA_US 100000' > cpu.max; for each server process: echo <pid> > cgroup.procs"
        else
            record_cmd "mkdir $CG_ROOT/fservebench-<pid>-<slot>-<n>; cd there; echo 100000 > cpu.cfs_period_us; echo $QUOTA_US > cpu.cfs_quota_us; for each server process: echo <pid> > cgroup.procs"
        fi
    fi
    if [[ $WARMUP != 0 ]]; then
        run_wrk "$SRV_PORT" "$WARMUP" "$WORK/logs/$RUN_ID-$wl-$slot-warmup.wrk" warmup >/dev/null
    fi
    pids=$(tree_pids "$SRV_PID")
    # shellcheck disable=SC2086
    t0=$(cpu_ticks $pids)
    log="$WORK/logs/$RUN_ID-$wl-$slot-round$round.wrk"
    fields=$(run_wrk "$SRV_PORT" "$DURATION" "$log")
    # shellcheck disable=SC2086
    t1=$(cpu_ticks $pids)
    # shellcheck disable=SC2086
    rss=$(status_kb VmHWM $pids)
    alive "$SRV_PID" || die "$slot died during workload $wl ($WL_DESC); see $WORK/logs/$RUN_ID-$slot.log"
    stop_server "$SRV_PID" "$slot" "$SRV_PORT"
    [[ -n $cg ]] && cg_remove "$cg"
    for k in $fields; do r[${k%%=*}]=${k#*=}; done
    tsv_row round="$round" workload="$wl" server="$slot" status_kind=ok \
        requests="${r[requests]}" bytes="${r[bytes]}" duration_us="${r[duration_us]}" \
        p50_us="${r[p50_us]}" p99_us="${r[p99_us]}" cpu_ticks=$((t1 - t0)) rss_kb="$rss" \
        connect="${r[connect]}" read="${r[read]}" write="${r[write]}" status="${r[status]}" \
        timeout="${r[timeout]}"
    local sock=$((r[connect] + r[read] + r[write] + r[timeout]))
    local why=""
    # static-web-server (hyper) closes after answering "Connection: close" without saying so in
    # its response, so wrk expects another response on the socket and counts the close as a read
    # error; the request itself completed.
    if [[ $wl == close && $slot == sws ]] && ((r[read] > 0)); then
        why=" (sws does not send 'Connection: close' before closing, so wrk counts each close as a read error; the responses are counted)"
    fi
    ((sock == 0)) || note "$wl, round $round, $slot: wrk socket errors connect=${r[connect]} read=${r[read]} write=${r[write]} timeout=${r[timeout]}$why"
    if [[ $wl != 404 ]] && ((r[status] > 0)); then
        note "$wl, round $round, $slot: ${r[status]} responses with status >= 400"
    fi
    # The preflight saw a 404 for /missing on every slot; under load every answer must stay one.
    if [[ $wl == 404 ]] && ((r[status] != r[requests])); then
        note "$wl, round $round, $slot: only ${r[status]} of ${r[requests]} responses had status >= 400 (expected 404 for every one)"
    fi
    ((r[requests] > 0)) || note "$wl, round $round, $slot: no request completed"
    awk -v w="$wl" -v s="$slot" -v n="${r[requests]}" -v d="${r[duration_us]}" -v t=$((t1 - t0)) \
        -v hz="$CLK_TCK" -v p50="${r[p50_us]}" -v p99="${r[p99_us]}" -v b="${r[bytes]}" 'BEGIN {
            rps = d > 0 ? n / (d / 1e6) : 0; cpu = n > 0 ? t / hz * 1e6 / n : 0
            printf "  %-16s %-12s %9.0f req/s  %8.2f CPU-us/req  p50 %6.2f ms  p99 %6.2f ms  %8.1f MiB/s\n",
                w, s, rps, cpu, p50 / 1000, p99 / 1000, (d > 0 ? b / 1048576 / (d / 1e6) : 0) }'
}

measure_idle() { # SLOT ROUND: hold IDLE_CONNS idle keep-alive connections, read the server's RSS
    local slot=$1 round=$2 out line held=0 failed=0 open=0 why="" rss pids deadline
    local -a cmd
    wl_def idle10k
    start_server "$slot"
    out="$WORK/logs/$RUN_ID-idle-$slot-round$round.out"
    cmd=(taskset -c "$CLIENT_CPUS" python3 "$HERE/idle.py" 127.0.0.1 "$SRV_PORT" "$IDLE_CONNS"
        --path /1k.html --ready-timeout 60 --hold 120)
    record_cmd "$(show_cmd "${cmd[@]}")"
    "${cmd[@]}" >"$out" 2>&1 &
    HOLDER_PID=$!
    deadline=$(($(date +%s) + 75))
    until grep -q '^READY' "$out"; do
        alive "$HOLDER_PID" || { cat "$out" >&2; die "idle holder exited before READY ($out)"; }
        (($(date +%s) < deadline)) || die "idle holder not READY within 75 s ($out)"
        sleep 0.1
    done
    line=$(grep '^READY' "$out")
    if [[ $line =~ held=([0-9]+)\ failed=([0-9]+)\ open=[0-9]+\ ?(.*)$ ]]; then
        held=${BASH_REMATCH[1]} failed=${BASH_REMATCH[2]} why=${BASH_REMATCH[3]}
    else
        die "idle holder printed an unexpected line: $line"
    fi
    sleep 1
    pids=$(tree_pids "$SRV_PID")
    # shellcheck disable=SC2086
    rss=$(status_kb VmRSS $pids)
    sleep 0.6
    open=$(grep '^OPEN' "$out" | tail -n 1 | awk '{ print $2 }' || true)
    open=${open:-$held}
    kill -TERM "$HOLDER_PID" 2>/dev/null || true
    wait_gone "$HOLDER_PID" 10 || kill -KILL "$HOLDER_PID" 2>/dev/null || true
    wait "$HOLDER_PID" 2>/dev/null || true
    HOLDER_PID=""
    alive "$SRV_PID" || die "$slot died while holding $IDLE_CONNS idle connections; see $WORK/logs/$RUN_ID-$slot.log"
    stop_server "$SRV_PID" "$slot" "$SRV_PORT"
    tsv_row round="$round" workload=idle10k server="$slot" status_kind=idle rss_kb="$rss" \
        note="held $held of $IDLE_CONNS; $open still open when measured"
    ((held == IDLE_CONNS)) || note "idle10k, round $round, $slot: only $held of $IDLE_CONNS connections got a 200 response ($failed failed${why:+: $why})"
    ((open == held)) || note "idle10k, round $round, $slot: the server closed $((held - open)) idle connections within ~2 s"
    awk -v s="$slot" -v k="$rss" -v h="$held" -v n="$IDLE_CONNS" 'BEGIN {
        printf "  %-16s %-12s %8.1f MiB RSS with %d/%d idle connections\n", "idle10k", s, k / 1024, h, n }'
}

# ---------------------------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
slot_desc=""
for s in "${SLOT_LIST[@]}"; do
    slot_desc+="$s on :${SLOT_PORT[$s]}"
    if [[ $s != nginx ]] && runs_nginx "$s"; then slot_desc+=" (nginx, self-test)"; fi
    slot_desc+=", "
done
say "${slot_desc%, }; servers on CPUs $SERVER_CPUS ($THREADS workers), wrk on CPUs $CLIENT_CPUS"
say "rounds $ROUNDS × $DURATION (warm-up $WARMUP); CPU quota: $QUOTA_DESC"
preflight

: >"$WORK/workloads.tsv"
SELECTED=()
for w in $WORKLOADS; do
    if [[ $w == 10m ]] && ((!WITH_10M)); then continue; fi
    if [[ $w == small-c64-quota && $CG_MODE == none ]]; then
        note "small-c64-quota skipped: $CG_WHY"
        continue
    fi
    SELECTED+=("$w")
    wl_def "$w"
    printf '%s\t%s\n' "$w" "$WL_DESC" >>"$WORK/workloads.tsv"
done
echo "$TSV_COLS" | tr ' ' '\t' >"$WORK/runs.tsv"

for ((round = 1; round <= ROUNDS; round++)); do
    say "round $round of $ROUNDS"
    for w in "${SELECTED[@]}"; do
        for slot in "${SLOT_LIST[@]}"; do
            if [[ $w == idle10k ]]; then measure_idle "$slot" "$round"; else measure "$w" "$slot" "$round"; fi
        done
    done
done

# ---------------------------------------------------------------------------------------------
# Report
# Connection tracking (loaded by any NAT rule, such as those dockerd installs) puts every
# loopback segment of every server through netfilter: about 0.7 CPU-µs per 1 KiB request
# in perf profiles of both nginx and fserve, a cost that narrows every ratio. After the run
# it has tracked wrk's connections to the servers' ports if it is on (closed ones stay listed
# for two minutes); without the table in /proc, any tracked connection counts.
if [[ -r /proc/net/nf_conntrack ]]; then
    ports=$(IFS='|'; echo "${SLOT_PORT[*]}")
    conntrack=$(grep -cE "dport=($ports) " /proc/net/nf_conntrack || true)
else
    conntrack=$(cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo 0)
fi
if ((conntrack > 0)); then
    say "note: netfilter connection tracking is on ($conntrack connections tracked): every server's" \
        "requests also pay for it, which narrows the ratios; see 'nft list ruleset' (dockerd's NAT" \
        "rules load it) and remove those rules for a measurement of the servers alone"
fi
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit yet")
if [[ -n $(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    commit+=" (+ uncommitted changes in src/Cargo)"
fi
{
    printf 'date\t%s\n' "$DATE"
    printf 'mode\t%s\n' "$( ((QUICK)) && echo "--quick (smoke test; numbers are not meaningful)" || echo full)"
    printf 'kernel\t%s\n' "$(uname -r)"
    printf 'cpu_model\t%s\n' "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    printf 'cores\t%s\n' "$(nproc)"
    printf 'nginx_version\t%s\n' "$(nginx -v 2>&1)"
    printf 'fserve_commit\t%s\n' "$commit"
    printf 'fserve_bin\t%s\n' "$FSERVE_DESC"
    printf 'slots\t%s\n' "${SLOT_LIST[*]}"
    printf 'self_test\t%s\n' "$( [[ $FSERVE_SLOT == nginx ]] && echo 1 || echo 0)"
    printf 'fserve_banner\t%s\n' "${BANNER[fserve]:-}"
    printf 'fserve_epoll_banner\t%s\n' "${BANNER[fserve-epoll]:-}"
    printf 'fserve_base_bin\t%s\n' "$FSERVE_BASE_DESC"
    printf 'fserve_base_banner\t%s\n' "${BANNER[fserve-base]:-}"
    printf 'sws_version\t%s\n' "$SWS_DESC"
    printf 'sws_bin\t%s\n' "$SWS_BIN"
    printf 'caddy_version\t%s\n' "$CADDY_DESC"
    printf 'wrk_version\t%s\n' "$(wrk -v 2>&1 | head -n 1 | sed 's/ Copyright.*//' || true)"
    printf 'rustc_version\t%s\n' "$(rustc --version 2>/dev/null || echo "?")"
    printf 'server_cpus\t%s\n' "$SERVER_CPUS"
    printf 'client_cpus\t%s\n' "$CLIENT_CPUS"
    printf 'wrk_threads\t%s\n' "$WRK_THREADS"
    printf 'threads\t%s\n' "$THREADS"
    printf 'rounds\t%s\n' "$ROUNDS"
    printf 'duration\t%s\n' "$DURATION"
    printf 'warmup_d\t%s\n' "$WARMUP"
    printf 'warmup\t%s\n' "$( [[ $WARMUP == 0 ]] && echo "no warm-up" || echo "$WARMUP warm-up per run")"
    printf 'quota\t%s\n' "$QUOTA_DESC"
    printf 'quota_cpu\t%s\n' "$(awk -v q="$QUOTA_US" 'BEGIN { printf "%g", q / 100000 }')"
    printf 'conntrack\t%s\n' "$conntrack"
    printf 'idle_conns\t%s\n' "$IDLE_CONNS"
    printf 'nofile\t%s\n' "$NOFILE"
    printf 'corpus\t%s\n' "1k.html 16k.css 32k.js 64k.js 1m.bin$( ((WITH_10M)) && echo " 10m.bin") + $RANDOM_FILES files r/NNNNN.html (benches/corpus.py --seed 20240601)"
    printf 'clk_tck\t%s\n' "$CLK_TCK"
} >"$WORK/meta.tsv"

mkdir -p "$OUT_DIR"
stem=$OUT_DIR/$DATE
((QUICK)) && stem=$OUT_DIR/quick-$DATE
((WHOLE)) && stem=$stem-whole
MD=$stem.md SVG=$stem.svg SUMMARY=$stem-summary.md
python3 "$HERE/report.py" --work "$WORK" --md "$MD" --svg "$SVG" --summary "$SUMMARY" ||
    die "report.py failed"
say ""
say "report:  $MD"
say "chart:   $SVG"
say "summary: $SUMMARY (the report's summary table alone, for pasting into README.md)"
