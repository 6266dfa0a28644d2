#!/usr/bin/env bash
# tests/docker.sh: builds the Docker image from the real Dockerfile and checks it end to end.
#
# Runs as root on a Debian machine (CI). It:
# - installs docker.io (and curl, debootstrap) from Debian when missing, and starts dockerd
#   when no engine answers (stopping it again at exit);
# - makes sure the build stage's base image, rust:1-slim-bookworm, exists: it tries a pull,
#   and where no registry is reachable it builds a stand-in under the same name from
#   Debian packages and this machine's Rust toolchain (debootstrap, then `docker import`).
#   That image is kept: it is expensive to make;
# - builds fserve:test with the classic builder, checks the image is at most 10 MB and the
#   binary static, runs it under deploy/seccomp-io_uring.json, fetches the default site,
#   checks it runs as a non-root user, waits for the health check to pass, serves a mounted
#   site from a read-only container, times `docker stop` (under 3 s, exit code 0);
# - runs it under deploy/seccomp-no-io_uring.json (io_uring refused, as by Docker 25+):
#   without a fallback engine fserve must exit 2 with one line naming seccomp; with one
#   it must serve.
# Every wait is bounded. Containers and the fserve:test image are removed at exit
# (FSERVE_DOCKER_KEEP=1 keeps the image and the build cache for faster reruns).
#
# With --base-image it only makes sure rust:1-slim-bookworm exists, and stops there.
#
# Environment: FSERVE_DOCKER_IMAGE (default fserve:test), DEBIAN_MIRROR (for debootstrap,
# default http://deb.debian.org/debian), FSERVE_DOCKER_KEEP.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

IMAGE=${FSERVE_DOCKER_IMAGE:-fserve:test}
BASE=rust:1-slim-bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
MAX_IMAGE_BYTES=10000000 # 10 MB
MAX_STOP_SECONDS=3
# The classic builder: what Docker 20.10 without BuildKit runs; the Dockerfile must work there.
export DOCKER_BUILDKIT=0
export DEBIAN_FRONTEND=noninteractive

log() { printf 'docker.sh: %s\n' "$*" >&2; }
die() {
    log "FAIL: $*"
    exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

TMP=$(mktemp -d /tmp/fserve-docker.XXXXXX)
CONTAINERS=()
DOCKERD_PID=""
IMAGE_BUILT=""
PROC_MOUNT=""

cleanup() {
    local rc=$?
    set +e
    for c in "${CONTAINERS[@]}"; do
        docker rm -f "$c" >/dev/null 2>&1
    done
    if [ -n "$IMAGE_BUILT" ] && [ "${FSERVE_DOCKER_KEEP:-0}" != 1 ]; then
        docker rmi -f "$IMAGE" >/dev/null 2>&1
        # The build stage's images, left untagged by the multi-stage build.
        docker image prune -f --filter label=fserve.stage=build >/dev/null 2>&1
    fi
    if [ -n "$PROC_MOUNT" ]; then
        umount -l "$PROC_MOUNT"
    fi
    if [ -n "$DOCKERD_PID" ]; then
        kill "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 1 40); do
            kill -0 "$DOCKERD_PID" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$DOCKERD_PID" 2>/dev/null; then
            log "dockerd did not stop within 20 s; killing it"
            kill -9 "$DOCKERD_PID"
        fi
    fi
    # --one-file-system: never follow a mount that failed to come off into the host.
    rm -rf --one-file-system "$TMP"
    if [ "$rc" -ne 0 ]; then
        log "failed (exit $rc)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T_START=$(now)

# ---- tools and engine ----------------------------------------------------------------------
engine_up() { timeout 10 docker info >/dev/null 2>&1; }

need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
if ! command -v docker >/dev/null || { ! engine_up && ! command -v dockerd >/dev/null; }; then
    need_apt+=(docker.io)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
    log "installing ${need_apt[*]} from Debian"
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! engine_up; then
    log "no Docker engine answers; starting dockerd"
    dockerd >"$TMP/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 60); do
        engine_up && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || {
            tail -n 20 "$TMP/dockerd.log" >&2
            die "dockerd exited"
        }
        sleep 1
    done
    engine_up || {
        tail -n 20 "$TMP/dockerd.log" >&2
        die "dockerd did not answer within 60 s"
    }
fi
log "engine $(docker version --format '{{.Server.Version}}'), client $(docker version --format '{{.Client.Version}}')"

# ---- the build stage's base image ----------------------------------------------------------
# Where the registry is unreachable, a stand-in for the official rust:1-slim-bookworm:
# Debian bookworm (minbase) with gcc, libc6-dev and ca-certificates, like the official
# image, plus this machine's Rust toolchain under the official image's paths
# (RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo, /usr/local/cargo/bin on PATH;
# the tools are links into the toolchain, no rustup), and this machine's CA bundle so that
# cargo can verify crates.io's certificate through whatever proxy this machine uses.
prepare_base() {
    local dir="$TMP/rootfs" sysroot toolchain version
    command -v rustc >/dev/null || die "no rustc on this machine to put in $BASE"
    sysroot=$(rustc --print sysroot)
    toolchain=$(basename "$sysroot")
    version=$(rustc --version | awk '{ print $2 }')
    [ -x "$sysroot/bin/cargo" ] || die "no cargo in $sysroot/bin (a rustup toolchain is expected)"
    command -v debootstrap >/dev/null || {
        log "installing debootstrap from Debian"
        apt-get update -qq
        apt-get install -y -qq debootstrap >/dev/null
    }

    log "debootstrap bookworm from $MIRROR (minbase)"
    debootstrap --variant=minbase bookworm "$dir" "$MIRROR" >"$TMP/debootstrap.log" 2>&1 || {
        tail -n 30 "$TMP/debootstrap.log" >&2
        die "debootstrap failed"
    }
    cp /etc/resolv.conf "$dir/etc/resolv.conf"
    mount -t proc proc "$dir/proc"
    PROC_MOUNT="$dir/proc"
    log "apt-get install gcc libc6-dev ca-certificates (in the chroot)"
    {
        chroot "$dir" apt-get update -qq &&
            chroot "$dir" apt-get install -y -qq --no-install-recommends gcc libc6-dev ca-certificates &&
            chroot "$dir" apt-get clean
    } >"$TMP/chroot-apt.log" 2>&1 || {
        tail -n 30 "$TMP/chroot-apt.log" >&2
        die "apt-get in the chroot failed"
    }
    umount "$dir/proc"
    PROC_MOUNT=""
    rm -rf "${dir:?}/var/lib/apt/lists/"* "$dir/etc/resolv.conf"
    cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"

    log "copying Rust $version ($sysroot) into it"
    mkdir -p "$dir/usr/local/rustup/toolchains/$toolchain" "$dir/usr/local/cargo/bin"
    tar -C "$sysroot" --exclude=./share/doc -c . | tar -C "$dir/usr/local/rustup/toolchains/$toolchain" -x
    local b
    for b in "$dir/usr/local/rustup/toolchains/$toolchain/bin/"*; do
        ln -s "/usr/local/rustup/toolchains/$toolchain/bin/${b##*/}" "$dir/usr/local/cargo/bin/${b##*/}"
    done
    chroot "$dir" /usr/local/cargo/bin/cargo --version >/dev/null || die "cargo does not run in the chroot"

    log "docker import as $BASE"
    tar -C "$dir" --numeric-owner --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' -c . |
        docker import \
            --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
            --change 'ENV CARGO_HOME=/usr/local/cargo' \
            --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change "ENV RUST_VERSION=$version" \
            --change 'LABEL org.fserve.stand-in="debootstrap bookworm + the host Rust toolchain (tests/docker.sh)"' \
            --change 'CMD ["bash"]' \
            --message "tests/docker.sh: stand-in for the official $BASE" \
            - "$BASE" >/dev/null
    rm -rf --one-file-system "$dir"
}

T_BASE=$(now)
BASE_HOW="present"
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    log "$BASE is missing; trying a pull"
    if timeout 300 docker pull "$BASE" >"$TMP/pull.log" 2>&1; then
        BASE_HOW="pulled"
    else
        log "pull failed ($(tail -n 1 "$TMP/pull.log")); preparing it locally"
        prepare_base
        BASE_HOW="prepared locally"
    fi
fi
BASE_SECONDS=$(since "$T_BASE")
log "base image $BASE: $BASE_HOW (${BASE_SECONDS} s)"
# `tests/docker.sh --base-image`: only make sure the base image exists (tests/packaging.sh
# installs the Debian package in it), then stop.
[ "${1:-}" = --base-image ] && exit 0

# ---- build ---------------------------------------------------------------------------------
log "docker build -t $IMAGE (classic builder; the release build takes minutes)"
T_BUILD=$(now)
IMAGE_BUILT=1
# The OCI labels' dynamic values, as the Dockerfile's header says to pass them.
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
REVISION=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)
SOURCE=$(git -C "$ROOT" remote get-url origin 2>/dev/null || true)
if ! docker build --force-rm --label fserve.test=1 -t "$IMAGE" \
    --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" --build-arg SOURCE="$SOURCE" \
    "$ROOT" 2>&1 | tee "$TMP/build.log" | grep --line-buffered '^Step ' >&2; then
    tail -n 40 "$TMP/build.log" >&2
    die "docker build failed"
fi
BUILD_SECONDS=$(since "$T_BUILD")

SIZE=$(docker image inspect --format '{{.Size}}' "$IMAGE")
SIZE_MB=$(awk -v s="$SIZE" 'BEGIN { printf "%.2f", s / 1e6 }')
log "image size: $SIZE bytes ($SIZE_MB MB)"
[ "$SIZE" -le "$MAX_IMAGE_BYTES" ] || die "image is $SIZE bytes, over $MAX_IMAGE_BYTES"

[ "$(docker image inspect --format '{{.Config.User}}' "$IMAGE")" = "10001:10001" ] ||
    die "the image's user is not 10001:10001"
label() { docker image inspect --format "{{index .Config.Labels \"org.opencontainers.image.$1\"}}" "$IMAGE"; }
[ "$(label version)" = "$VERSION" ] || die "label version is \"$(label version)\", not $VERSION"
[ "$(label revision)" = "$REVISION" ] || die "label revision is \"$(label revision)\", not $REVISION"
[ "$(label source)" = "$SOURCE" ] || die "label source is \"$(label source)\", not \"$SOURCE\""
[ "$(label licenses)" = "MIT OR Apache-2.0" ] || die "label licenses is \"$(label licenses)\""
[ -n "$(label title)" ] && [ -n "$(label description)" ] || die "label title or description is empty"
VERSION_LINE=$(docker run --rm "$IMAGE" -V)
want="fserve $VERSION (engines:"
[ -z "$REVISION" ] || want="fserve $VERSION (commit $REVISION;"
case "$VERSION_LINE" in
"$want"*) ;;
*) die "fserve -V in the image says \"$VERSION_LINE\", not version $VERSION, commit $REVISION" ;;
esac
log "OCI labels: version $VERSION, revision ${REVISION:-none}, source ${SOURCE:-none}; $VERSION_LINE"

# The binary, out of the image: static?
cid=$(docker create "$IMAGE")
CONTAINERS+=("$cid")
docker cp "$cid:/fserve" "$TMP/fserve" >/dev/null
LDD=$(ldd "$TMP/fserve" 2>&1 || true)
case "$LDD" in
*"statically linked"* | *"not a dynamic executable"*) ;;
*) die "/fserve is not static: $LDD" ;;
esac
if command -v file >/dev/null; then
    log "/fserve: $(file -b "$TMP/fserve" | cut -d, -f1-4)"
fi

# ---- run under the io_uring profile --------------------------------------------------------
# Waits until GET http://127.0.0.1:$1$2 answers 200 (10 s), leaving the body in $3.
fetch() {
    local port=$1 path=$2 out=$3 code=""
    for _ in $(seq 1 50); do
        code=$(curl -s -o "$out" -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port$path" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.2
    done
    die "GET $path on port $port: status ${code:-none} after 10 s"
}
host_port() { docker port "$1" 8080/tcp | head -n 1 | sed 's/.*://'; }

log "run with deploy/seccomp-io_uring.json"
T_RUN=$(now)
cid=$(docker run -d --security-opt "seccomp=$ROOT/deploy/seccomp-io_uring.json" \
    -p 127.0.0.1::8080 "$IMAGE")
CONTAINERS+=("$cid")
port=$(host_port "$cid")
fetch "$port" / "$TMP/index.html"
cmp -s "$TMP/index.html" "$ROOT/public/index.html" || die "GET / is not public/index.html"
fetch "$port" /style.css "$TMP/style.css"
cmp -s "$TMP/style.css" "$ROOT/public/style.css" || die "GET /style.css is not public/style.css"
log "GET / and /style.css: 200, the default site"

pid=$(docker inspect --format '{{.State.Pid}}' "$cid")
uids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status")
gids=$(awk '/^Gid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status")
[ "$uids" = "10001 10001 10001 10001" ] || die "fserve runs with uids $uids, not 10001"
[ "$gids" = "10001 10001 10001 10001" ] || die "fserve runs with gids $gids, not 10001"
log "process $pid runs as uid 10001, gid 10001"

# `docker exec` works on a scratch image when the command is the binary itself.
docker exec "$cid" /fserve healthcheck http://127.0.0.1:8080/logo.svg ||
    die "fserve healthcheck http://127.0.0.1:8080/logo.svg failed in the container"
if out=$(docker exec "$cid" /fserve healthcheck http://127.0.0.1:8080/no-such-file 2>&1); then
    die "fserve healthcheck passed on a 404"
else
    rc=$?
    [ "$rc" = 1 ] || die "fserve healthcheck on a 404 exited $rc, not 1"
    log "healthcheck on a 404: exit 1, \"$out\""
fi

health=""
for _ in $(seq 1 60); do
    health=$(docker inspect --format '{{.State.Health.Status}}' "$cid")
    [ "$health" = healthy ] && break
    [ "$health" = unhealthy ] && break
    sleep 0.5
done
HEALTH_SECONDS=$(since "$T_RUN")
[ "$health" = healthy ] || {
    docker inspect --format '{{json .State.Health}}' "$cid" >&2
    die "health status is ${health:-none} after 30 s"
}
log "health: $health, ${HEALTH_SECONDS} s after docker run"

# The image logs every request on stdout (FSERVE_ACCESS_LOG=-), within a second.
access=""
for _ in $(seq 1 30); do
    access=$(docker logs "$cid" 2>/dev/null | grep -c '"GET /style.css HTTP/1.1" 200 ' || true)
    [ "$access" -ge 1 ] && break
    sleep 0.2
done
[ "$access" -ge 1 ] || die "no access log line for GET /style.css on the container's stdout"
log "access log on stdout: $(docker logs "$cid" 2>/dev/null | grep -m1 'GET /style.css')"

# With the admin listener on, the image's health check asks its /healthz.
cid4=$(docker run -d --security-opt "seccomp=$ROOT/deploy/seccomp-io_uring.json" \
    -e FSERVE_ADMIN=0.0.0.0:9090 -p 127.0.0.1::8080 "$IMAGE")
CONTAINERS+=("$cid4")
health=""
for _ in $(seq 1 60); do
    health=$(docker inspect --format '{{.State.Health.Status}}' "$cid4")
    [ "$health" = healthy ] && break
    [ "$health" = unhealthy ] && break
    sleep 0.5
done
[ "$health" = healthy ] || {
    docker inspect --format '{{json .State.Health}}' "$cid4" >&2
    die "with FSERVE_ADMIN, health status is ${health:-none} after 30 s"
}
docker exec "$cid4" /fserve healthcheck http://127.0.0.1:9090/readyz ||
    die "/readyz on the admin listener is not 200 in the container"
log "with FSERVE_ADMIN=0.0.0.0:9090: healthy (GET /healthz), /readyz 200"
docker stop --time 10 "$cid4" >/dev/null

# ---- a mounted site, read-only root file system, no capabilities ---------------------------
mkdir -p "$TMP/site/docs"
printf 'hello from a mounted site\n' >"$TMP/site/hello.txt"
printf '<!doctype html><title>docs</title>\n' >"$TMP/site/docs/index.html"
chmod -R u=rwX,go=rX "$TMP/site"
cid2=$(docker run -d --security-opt "seccomp=$ROOT/deploy/seccomp-io_uring.json" \
    --read-only --cap-drop ALL --security-opt no-new-privileges \
    -v "$TMP/site:/public:ro" -p 127.0.0.1::8080 "$IMAGE")
CONTAINERS+=("$cid2")
port2=$(host_port "$cid2")
fetch "$port2" /hello.txt "$TMP/hello.txt"
cmp -s "$TMP/hello.txt" "$TMP/site/hello.txt" || die "GET /hello.txt is not the mounted file"
fetch "$port2" /docs/ "$TMP/docs.html"
cmp -s "$TMP/docs.html" "$TMP/site/docs/index.html" || die "GET /docs/ is not the mounted index"
log "mounted site (-v site:/public:ro, --read-only, --cap-drop ALL): 200"

# ---- docker stop ---------------------------------------------------------------------------
T_STOP=$(now)
docker stop --time 10 "$cid" >/dev/null
STOP_SECONDS=$(since "$T_STOP")
code=$(docker inspect --format '{{.State.ExitCode}}' "$cid")
log "docker stop: ${STOP_SECONDS} s, exit code $code"
[ "$code" = 0 ] || {
    docker logs "$cid" >&2
    die "exit code $code after docker stop, not 0"
}
awk -v s="$STOP_SECONDS" -v m="$MAX_STOP_SECONDS" 'BEGIN { exit !(s < m) }' ||
    die "docker stop took ${STOP_SECONDS} s, not under ${MAX_STOP_SECONDS} s"
docker stop --time 10 "$cid2" >/dev/null
[ "$(docker inspect --format '{{.State.ExitCode}}' "$cid2")" = 0 ] || die "the mounted-site container did not exit 0"

# ---- io_uring refused (Docker 25+'s default) -----------------------------------------------
log "run with deploy/seccomp-no-io_uring.json"
cid3=$(docker run -d --security-opt "seccomp=$ROOT/deploy/seccomp-no-io_uring.json" \
    -p 127.0.0.1::8080 "$IMAGE")
CONTAINERS+=("$cid3")
state=""
for _ in $(seq 1 100); do
    state=$(docker inspect --format '{{.State.Status}}' "$cid3")
    [ "$state" = exited ] && break
    docker logs "$cid3" 2>&1 | grep -q ' INFO fserve: serving' && break
    sleep 0.1
done
logs=$(docker logs "$cid3" 2>&1)
if [ "$state" = exited ]; then
    code=$(docker inspect --format '{{.State.ExitCode}}' "$cid3")
    [ "$code" = 2 ] || die "under seccomp-no-io_uring fserve exited $code, not 2: $logs"
    [ "$(printf '%s\n' "$logs" | wc -l)" = 1 ] || die "not one line: $logs"
    case "$logs" in
    *" ERROR fserve: "*seccomp*) ;;
    *) die "the error does not name seccomp: $logs" ;;
    esac
    NO_URING="io_uring refused: fallback engine not yet available (exit 2, one line naming seccomp)"
    log "its line: $logs"
elif printf '%s\n' "$logs" | grep -q ' INFO fserve: serving'; then
    fetch "$(host_port "$cid3")" / "$TMP/index3.html"
    cmp -s "$TMP/index3.html" "$ROOT/public/index.html" || die "GET / without io_uring is not the default site"
    NO_URING="served without io_uring: $(printf '%s\n' "$logs" | grep ' INFO fserve: serving')"
else
    die "under seccomp-no-io_uring fserve neither exited nor served within 10 s: $logs"
fi
log "$NO_URING"

# ---- summary -------------------------------------------------------------------------------
cat <<EOF

docker.sh: summary
  base image $BASE   $BASE_HOW (${BASE_SECONDS} s)
  docker build          ${BUILD_SECONDS} s
  image $IMAGE     $SIZE bytes ($SIZE_MB MB, limit 10 MB)
  health                $health (${HEALTH_SECONDS} s after docker run)
  docker stop           ${STOP_SECONDS} s, exit code 0
  without io_uring      $NO_URING
  total                 $(since "$T_START") s
docker.sh: ok
EOF
