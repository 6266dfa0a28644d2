#!/usr/bin/env bash
# Page load in a real browser, fserve vs nginx (and Caddy when installed), on the real
# front-end corpus of benches/compression.sh: median load time and bytes transferred for its
# index.html in headless Chromium, under Chromium's network emulation at a few link speeds.
#
# Usage:  benches/pageload.sh [--quick]
#
#   (no flag)  full run: LOADS loads per server and link, three links; report in
#              benches/results/<YYYY-MM-DD>-pageload.md (same day: replaced)
#   --quick    smoke test: 1 load per server on one link; report in a temporary directory
#              printed at the end. Fails only when the harness breaks (a download, a server,
#              the browser, a status, a load that times out), never on a figure.
#
# Links (Network.emulateNetworkConditions: added latency per request, down/up throughput):
# 5 Mbit/s + 80 ms RTT, 20 Mbit/s + 40 ms, 100 Mbit/s + 10 ms (--quick: 20 Mbit/s + 40 ms).
# Every load: a fresh browser context and page (own connections), cache disabled; the time
# is the `load` event from navigation start; the bytes are the sum of encodedDataLength over
# Network.loadingFinished (heads and bodies as carried). Servers alternate within each round.
#
# Servers, all on 127.0.0.1, one worker each, same corpus: fserve with its defaults
# (compresses once, in the background: the script waits until every br, zstd and gzip
# variant is served, then warms every server up with unthrottled page loads); nginx with
# `gzip on; gzip_comp_level 6; gzip_types …` (as benches/compression.sh); Caddy with
# `encode zstd gzip` and `file_server`, only when `caddy` is installed.
#
# The browser is Debian's chromium, driven by puppeteer-core (pinned below), installed from
# the npm registry into the temporary directory at bench time.
#
# Environment (defaults in brackets):
#   LOADS        measured loads per server and link (median reported)  [5; --quick: 1]
#   WARMUPS      unthrottled warm-up loads per server                  [3; --quick: 1]
#   FSERVE_BIN   use this fserve binary instead of building one        [cargo build --release]
#   KEEP_WORK    1 keeps the temporary directory                       [0; kept on failure]
#
# Runs as root on Debian 12; installs missing tools from Debian packages (chromium nodejs npm
# nginx-light curl python3). Uses npm-corpus.sh and pageload.mjs beside this script.

set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

say() { printf '%s\n' "$*"; }
die() { printf 'pageload: error: %s\n' "$*" >&2; KEEP_WORK=1; exit 1; }

QUICK=0
for arg in "$@"; do
    case $arg in
        --quick) QUICK=1 ;;
        -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$arg' (usage: benches/pageload.sh [--quick])" ;;
    esac
done
# name|Mbit/s|RTT ms
if ((QUICK)); then
    LOADS=${LOADS:-1} WARMUPS=${WARMUPS:-1}
    LINKS=("20 Mbit/s, 40 ms|20|40")
else
    LOADS=${LOADS:-5} WARMUPS=${WARMUPS:-3}
    LINKS=("5 Mbit/s, 80 ms|5|80" "20 Mbit/s, 40 ms|20|40" "100 Mbit/s, 10 ms|100|10")
fi
KEEP_WORK=${KEEP_WORK:-0}
PUPPETEER=puppeteer-core@24.43.1
CHROMIUM=/usr/bin/chromium
FSERVE_PORT=18491
NGINX_PORT=18492
CADDY_PORT=18493
TIMEOUT_MS=120000

need=()
for t in chromium node npm nginx curl python3; do
    command -v "$t" >/dev/null || case $t in
        nginx) need+=(nginx-light) ;; node) need+=(nodejs) ;; *) need+=("$t") ;;
    esac
done
if ((${#need[@]})); then
    say "installing ${need[*]}"
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null || die "apt-get install ${need[*]} failed"
fi
[[ -x $CHROMIUM ]] || die "no Chromium at $CHROMIUM (apt-get install chromium)"

WORK=$(mktemp -d /tmp/fserve-pageload.XXXXXX)
chmod 755 "$WORK" # nginx's workers run as www-data
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if ((KEEP_WORK)); then say "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
mkdir -p "$WORK/site" "$WORK/logs" "$WORK/node"

# ---------------------------------------------------------------------------------------------
# The corpus (npm-corpus.sh beside this script) and the browser driver.
# shellcheck source=benches/npm-corpus.sh
source "$HERE/npm-corpus.sh"
npm_corpus "$WORK" "$WORK/site"

say "npm install $PUPPETEER"
(cd "$WORK/node" && npm install --no-save --no-audit --no-fund --silent --cache "$WORK/npm-cache" \
    "$PUPPETEER" >"$WORK/logs/npm-install.log" 2>&1) ||
    { cat "$WORK/logs/npm-install.log" >&2; die "npm install $PUPPETEER failed"; }

# ---------------------------------------------------------------------------------------------
# Servers.
fserve_binary "$REPO"
nginx_gzip_conf "$WORK" "$WORK/site" "$NGINX_PORT"

for v in $(compgen -e); do [[ $v == FSERVE_* && $v != FSERVE_BIN ]] && unset "$v"; done
"$FSERVE" -p "$FSERVE_PORT" -b 127.0.0.1 --threads 1 "$WORK/site" >"$WORK/logs/fserve.log" 2>&1 &
PIDS+=("$!")
nginx -p "$WORK/nginx/" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' >"$WORK/logs/nginx.log" 2>&1 &
PIDS+=("$!")
SERVERS=("fserve|http://127.0.0.1:$FSERVE_PORT/index.html" "nginx|http://127.0.0.1:$NGINX_PORT/index.html")
wait_port "$FSERVE_PORT" fserve
wait_port "$NGINX_PORT" nginx
CADDY_VERSION=
if command -v caddy >/dev/null; then
    mkdir -p "$WORK/caddy"
    cat >"$WORK/caddy/Caddyfile" <<EOF
{
    admin off
    auto_https off
}
http://127.0.0.1:$CADDY_PORT {
    root * $WORK/site
    encode zstd gzip
    file_server
}
EOF
    HOME=$WORK/caddy XDG_DATA_HOME=$WORK/caddy XDG_CONFIG_HOME=$WORK/caddy GOMAXPROCS=1 \
        caddy run --adapter caddyfile --config "$WORK/caddy/Caddyfile" >"$WORK/logs/caddy.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$CADDY_PORT" caddy
    CADDY_VERSION=$(caddy version 2>/dev/null | awk '{ print $1 }')
    SERVERS+=("caddy|http://127.0.0.1:$CADDY_PORT/index.html")
else
    say "caddy is not installed: fserve and nginx only (apt-get install caddy to add it)"
fi
say "$(head -n 1 "$WORK/logs/fserve.log")"

# fserve after warm-up: every variant made (a first request gets identity and queues them).
say "waiting for fserve's variants"
for f in "${FILES[@]}"; do
    for coding in br zstd gzip; do
        deadline=$((SECONDS + 300))
        until [[ $(curl -s -o /dev/null -w '%{http_code}|%header{content-encoding}' \
            -H "Accept-Encoding: $coding" "http://127.0.0.1:$FSERVE_PORT/$f") == "200|$coding" ]]; do
            ((SECONDS < deadline)) || die "fserve made no $coding variant of $f within 300 s"
            sleep 0.2
        done
    done
done

# ---------------------------------------------------------------------------------------------
# The loads (pageload.mjs beside this script).
python3 - "$WORK/config.json" "$WORK/node" "$CHROMIUM" "$WORK/chromium-profile" "$LOADS" \
    "$WARMUPS" "$TIMEOUT_MS" "${#SERVERS[@]}" "${SERVERS[@]}" "${LINKS[@]}" <<'PY' || die "cannot write $WORK/config.json"
import json, sys
out, node, chromium, profile, loads, warmups, timeout, n = sys.argv[1:9]
rest = sys.argv[9:]
servers = [dict(zip(("name", "url"), s.split("|", 1))) for s in rest[: int(n)]]
links = []
for link in rest[int(n):]:
    name, mbps, rtt = link.split("|")
    links.append({"name": name, "mbps": float(mbps), "rttMs": float(rtt)})
json.dump({"puppeteerDir": node, "chromium": chromium, "userDataDir": profile,
           "loads": int(loads), "warmups": int(warmups), "timeoutMs": int(timeout),
           "servers": servers, "links": links}, open(out, "w"), indent=1)
PY
say "loading the page: ${#SERVERS[@]} servers, ${#LINKS[@]} link(s), $LOADS load(s) each"
set +e
node "$HERE/pageload.mjs" "$WORK/config.json" "$WORK/results.json" 2>&1 | tee "$WORK/logs/pageload.log"
status=${PIPESTATUS[0]}
set -e
((status == 0)) || die "the browser harness failed (log: $WORK/logs/pageload.log)"

# ---------------------------------------------------------------------------------------------
REPORT=$WORK/report.md
{
    say "# Page load in headless Chromium: fserve vs nginx${CADDY_VERSION:+ vs Caddy}"
    say
    say "$(date -u +%Y-%m-%d), $(uname -r), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) CPUs;" \
        "$("$CHROMIUM" --version 2>/dev/null | head -n 1), $PUPPETEER, node $(node --version);" \
        "$("$FSERVE" -V 2>/dev/null), defaults (variants made before measuring);" \
        "nginx $(nginx -v 2>&1 | sed 's/.*\///'): gzip on, gzip_comp_level 6${CADDY_VERSION:+; Caddy $CADDY_VERSION: encode zstd gzip}."
    say
    say "The corpus page (index.html, React DOM, lodash, Bootstrap CSS and JS, three.js, d3:" \
        "$(cat "$WORK/site"/* | wc -c) bytes on disk). Median of $LOADS load(s) per server and link," \
        "servers alternated; a fresh browser context per load, cache disabled; time to the" \
        "\`load\` event from navigation start; bytes = sum of encodedDataLength."
    say
    python3 - "$WORK/results.json" <<'PY'
import json, statistics, sys
res = json.load(open(sys.argv[1]))["results"]
print("| link | server | median load (ms) | min–max (ms) | bytes transferred | encodings per load |")
print("|---|---|---:|---:|---:|---|")
links = []
for r in res:
    if r["link"] not in links:
        links.append(r["link"])
summary = []
for link in links:
    rows = [r for r in res if r["link"] == link]
    for r in rows:
        n = len(r["loadMs"])
        med = statistics.median(r["loadMs"])
        enc = ", ".join(f"{k} {v // n}" for k, v in sorted(r["encodings"].items()))
        print(f"| {link} | {r['server']} | {med:.0f} | {min(r['loadMs']):.0f}–{max(r['loadMs']):.0f}"
              f" | {statistics.median(r['bytes']):.0f} | {enc} |")
    f = next((r for r in rows if r["server"] == "fserve"), None)
    others = [r for r in rows if r["server"] != "fserve"]
    if f and others:
        fastest = min(others, key=lambda r: statistics.median(r["loadMs"]))
        fm, om = statistics.median(f["loadMs"]), statistics.median(fastest["loadMs"])
        summary.append(f"{link}: fserve {fm:.0f} ms = {fm / om:.2f}x the fastest other"
                       f" ({fastest['server']}, {om:.0f} ms).")
print()
for s in summary:
    print(s + "  ")
PY
} >"$REPORT" || die "cannot write the report"

if ((QUICK)); then
    OUT=$(mktemp -d /tmp/fserve-pageload-report.XXXXXX)
else
    OUT=$REPO/benches/results
fi
DEST=$OUT/$(date -u +%Y-%m-%d)-pageload.md
cp "$REPORT" "$DEST"
say
cat "$REPORT"
say
say "report: $DEST"
