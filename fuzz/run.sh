#!/usr/bin/env bash
# Fuzzes every target in turn for a bounded time, with libFuzzer through cargo-fuzz.
#
#   fuzz/run.sh                         # every target, 60 s each
#   SECONDS_PER_TARGET=300 fuzz/run.sh range http_date
#
# One fuzzing process at a time (libFuzzer's default: one process, one thread; -jobs would
# only add a supervising parent), at nice 19, so it can share a small machine. Corpora grow
# in fuzz/corpus/<target>, seeded from the inputs below and from tests/fuzz-regressions/;
# crashes land in fuzz/artifacts/<target>/ and make the script exit non-zero, naming them.
# A crash, once minimised (cargo fuzz tmin), belongs in tests/fuzz-regressions/<target>/.
#
# Toolchain: cargo-fuzz passes -Z flags (sanitizer coverage), which need nightly; the stable
# compiler accepts them with RUSTC_BOOTSTRAP=1, which is how this runs on a machine with
# only stable Rust. AddressSanitizer is used when it links (SANITIZER=none skips it: safe
# Rust's bugs are panics, which libFuzzer catches either way).
#
# Environment: SECONDS_PER_TARGET (60), SANITIZER (address, falling back to none),
# FUZZ_NICE (19), FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")"

ALL_TARGETS=(parse_request normalize_path range conditional http_date negotiate compose)
SECONDS_PER_TARGET="${SECONDS_PER_TARGET:-60}"
FUZZ_NICE="${FUZZ_NICE:-19}"
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${ALL_TARGETS[@]}"); fi
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

sanitizer="${SANITIZER:-address}"
echo "fuzz: building every target (sanitizer: $sanitizer)"
if ! nice -n "$FUZZ_NICE" cargo fuzz build -s "$sanitizer"; then
    if [ "$sanitizer" = none ]; then exit 1; fi
    echo "fuzz: the $sanitizer sanitizer does not build here; using -s none"
    sanitizer=none
    nice -n "$FUZZ_NICE" cargo fuzz build -s none
fi

# seed TARGET NAME VALUE: writes one seed input (backslash escapes are interpreted).
seed() {
    mkdir -p "corpus/$1"
    printf '%b' "$3" >"corpus/$1/seed-$2"
}

seed_all() {
    local browser='GET /assets/app.3f9a1c.js HTTP/1.1\r\nHost: localhost:8080\r\nConnection: keep-alive\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\nAccept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nReferer: http://localhost:8080/\r\nIf-Modified-Since: Sun, 13 Sep 2020 12:26:40 GMT\r\nIf-None-Match: "5f5e1000-4d2"\r\n\r\n'
    # parse_request: a max_head selector ('0'..'7'), then the bytes read so far.
    seed parse_request firefox "7$browser"
    seed parse_request curl '7GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n'
    seed parse_request range '6GET /video.mp4 HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1023, -512\r\nIf-Range: "5f5e1000-4d2"\r\n\r\n'
    seed parse_request head-http10 '5HEAD /a%20b/?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n'
    seed parse_request pipelined '7GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'
    seed parse_request post-body '7POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello'
    seed parse_request absolute '7GET http://example.com/a/b?c#d HTTP/1.1\r\nHost: example.com\r\n\r\n'
    seed parse_request partial '3GET /a HTTP/1.1\r\nHost: a\r\nAccept: te'
    # normalize_path: the raw, still percent-encoded path.
    seed normalize_path traversal '/../../etc/passwd'
    seed normalize_path encoded-traversal '/static/%2e%2e/%2E%2E%2fetc/passwd'
    seed normalize_path double-encoded '/%252e%252e/secret'
    seed normalize_path dotfile '/.git/config'
    seed normalize_path well-known '/.well-known/acme-challenge/abc'
    seed normalize_path asset '/assets//js/./main.3f9a1c2b.js'
    seed normalize_path utf8 '/caf%C3%A9/men%C3%BC.html'
    seed normalize_path dir '/docs/guide/../api/.'
    # range: the representation's length, a newline, the Range field.
    seed range simple '1000\nbytes=0-499'
    seed range multi '10000\nbytes=0-99, 200-299, -100'
    seed range overlapping '1000\nbytes=0-499,250-749,500-'
    seed range suffix '1000\nbytes=-5000'
    seed range huge '9223372036854775807\nbytes=9223372036854775000-,0-0'
    seed range invalid '10\nbytes=5-4'
    seed range unit '10\nitems=0-1'
    # conditional: a flags byte (its low bits: 1 GET, 2 If-Match, 4 If-None-Match,
    # 8 If-Modified-Since, 16 If-Unmodified-Since, 32 If-Range), then If-Match, If-None-Match, If-Modified-Since,
    # If-Unmodified-Since, If-Range, the current ETag, Last-Modified (one per line).
    seed conditional revalidate 'M\n"5f5e1000-4d2"\nSun, 13 Sep 2020 12:26:40 GMT\n\n\n"5f5e1000-4d2"\n1600000000'
    seed conditional if-match 'S"x", "5f5e1000-4d2"\n\n\nSun, 13 Sep 2020 12:26:39 GMT\n\n"5f5e1000-4d2"\n1600000000'
    seed conditional if-range 'a\n\n\n\n"5f5e1000-4d2"\n"5f5e1000-4d2"\n1600000000'
    seed conditional dates 'Y\n\nSunday, 13-Sep-20 12:26:40 GMT\nSun Sep 13 12:26:39 2020\n\n"1"\nSun, 13 Sep 2020 12:26:40 GMT'
    # http_date: a date in any of the three forms, or Unix seconds.
    seed http_date imf 'Sun, 06 Nov 1994 08:49:37 GMT'
    seed http_date rfc850 'Sunday, 06-Nov-94 08:49:37 GMT'
    seed http_date asctime 'Sun Nov  6 08:49:37 1994'
    seed http_date leap-day 'Thu, 29 Feb 2024 00:00:00 GMT'
    seed http_date last 'Fri, 31 Dec 9999 23:59:59 GMT'
    seed http_date secs '1709164800'
    # negotiate: the available codings (b z g i), a newline, the field.
    seed negotiate chrome 'bzg\ngzip, deflate, br, zstd'
    seed negotiate weights 'gz\nbr;q=1.0, gzip;q=0.8, *;q=0.1'
    seed negotiate identity 'bzgi\n*;q=0, identity;q=0.5'
    seed negotiate accept 'bzg\ntext/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
    # compose: a selector byte (bit 0: the 404 page; bits 1-3: the file's length; bit 4:
    # shutting down), then a request head.
    seed compose browser "\\x0a$browser"
    seed compose ranges '\x0aGET /a HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1,5-,-3\r\nIf-Range: "6553f100-9"\r\n\r\n'
}
seed_all
for t in "${ALL_TARGETS[@]}"; do
    cp ../tests/fuzz-regressions/"$t"/* "corpus/$t/" 2>/dev/null || true
done

# max_len per target: parse_request needs room past the 16 KiB head limit it tests.
max_len() { if [ "$1" = parse_request ]; then echo 20000; else echo 4096; fi; }

mkdir -p artifacts/logs
failed=()
summary=()
for t in "${targets[@]}"; do
    log="artifacts/logs/$t.log"
    echo "fuzz: $t for ${SECONDS_PER_TARGET}s (log: fuzz/$log)"
    set +e
    # shellcheck disable=SC2086
    nice -n "$FUZZ_NICE" cargo fuzz run -s "$sanitizer" "$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$t")" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    status=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$status")
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    line=$(printf '%-15s runs=%-10s exec/s=%-7s cov=%-5s ft=%-6s corpus=%-5s crashes=%s' \
        "$t" "${runs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$([ -n "$crash" ] && echo 1 || echo 0)")
    echo "$line"
    summary+=("$line")
    if [ -n "$crash" ] || [ "$rc" -ne 0 ]; then
        grep -m1 -A2 -E "panicked at|ERROR: (libFuzzer|AddressSanitizer)" "$log" || true
        echo "fuzz: $t FAILED (exit $rc): input ${crash:-<none: see fuzz/$log>}"
        failed+=("$t: ${crash:-fuzz/$log}")
    fi
done

echo
echo "fuzz: summary (sanitizer: $sanitizer, ${SECONDS_PER_TARGET}s per target)"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: crashes:"
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
echo "fuzz: no crash"
