# fserve: a static binary on an empty image, run as a non-root user.
#
#   docker build -t fserve .
#   docker run --rm -p 8080:8080 --security-opt seccomp=deploy/seccomp-io_uring.json fserve
#
# Works with the classic builder (DOCKER_BUILDKIT=0) as well as BuildKit: no --mount, no
# heredocs. tests/docker.sh builds and checks this image.
#
# Build arguments (all optional) fill the OCI labels and `fserve --version`:
#   docker build -t fserve \
#     --build-arg VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)" \
#     --build-arg REVISION="$(git rev-parse --short HEAD)" \
#     --build-arg SOURCE="$(git remote get-url origin)" .
# VERSION: the crate's version; REVISION: the git commit (the build context has no .git);
# SOURCE: where the source lives. Another architecture: see README's Docker section.

# ---- build: a statically linked fserve ------------------------------------------------------
FROM rust:1-slim-bookworm AS build
# Marks this stage's untagged images, so that tests/docker.sh can prune them.
LABEL fserve.stage=build

# glibc, statically linked: fserve makes no DNS or NSS lookups (the healthcheck's default
# URL is an IP literal), so nothing needs the shared NSS modules at run time.
ENV RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_TERM_COLOR=never
ARG TARGET=x86_64-unknown-linux-gnu
ARG REVISION=""
WORKDIR /src

# Dependencies first, against placeholder sources, so that editing src/ reuses this layer.
# (benches/pipeline.rs only has to exist: Cargo.toml names it.)
# (xtask/ and benches/ring-floor/, workspace members, only have to exist too: they are not
# built here.)
COPY Cargo.toml Cargo.lock ./
COPY xtask/Cargo.toml ./xtask/
COPY benches/ring-floor/Cargo.toml ./benches/ring-floor/
# The patched io_uring runtime (Cargo.toml's [patch.crates-io]), built with the dependencies.
COPY vendor ./vendor
RUN mkdir -p src benches xtask/src benches/ring-floor/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/pipeline.rs \
 && echo 'fn main() {}' > xtask/src/main.rs \
 && echo 'fn main() {}' > benches/ring-floor/src/main.rs \
 && cargo build --release --locked --target "$TARGET" \
 && rm -rf src

COPY build.rs ./
COPY src ./src
# COPY keeps the files' own mtimes, which may be older than the placeholder build's outputs:
# touch the crate roots so cargo rebuilds fserve itself. build.rs reads the commit from
# FSERVE_GIT_COMMIT, since there is no .git here.
RUN touch src/main.rs src/lib.rs \
 && FSERVE_GIT_COMMIT="$REVISION" cargo build --release --locked --target "$TARGET" \
 && mkdir -p /out/etc \
 && cp "target/$TARGET/release/fserve" /out/fserve \
 && if readelf -d /out/fserve | grep -q '(NEEDED)'; then echo "fserve is not static:"; ldd /out/fserve; exit 1; fi \
 && /out/fserve --version \
 && echo 'fserve:x:10001:10001:fserve:/nonexistent:/sbin/nologin' > /out/etc/passwd \
 && echo 'fserve:x:10001:' > /out/etc/group

# The default site, readable by anyone whatever the checkout's umask was.
COPY public /out/public
RUN chmod -R u=rwX,go=rX /out/public

# ---- runtime: nothing but the binary, the site and a user ----------------------------------
FROM scratch

ARG VERSION=""
ARG REVISION=""
ARG SOURCE=""
LABEL org.opencontainers.image.title="fserve" \
      org.opencontainers.image.description="A static file server for Linux: HTTP/1.1, one io_uring ring per core" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.source="$SOURCE"

COPY --from=build /out/etc/passwd /out/etc/group /etc/
COPY --from=build /out/fserve /fserve
COPY --from=build /out/public /public

USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
# 2xx/3xx is healthy: from GET /healthz on the admin listener when FSERVE_ADMIN turns it on
# (e.g. -e FSERVE_ADMIN=0.0.0.0:9090), else from GET / on 127.0.0.1:$FSERVE_PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=2s --retries=3 CMD ["/fserve", "healthcheck"]
ENTRYPOINT ["/fserve"]
# Address and port come from the environment, so `-e FSERVE_PORT=9000` moves the server and
# its health check together.
ENV FSERVE_BIND=0.0.0.0 \
    FSERVE_PORT=8080
# One access log line per request on stdout (`docker logs`), as nginx's image does; lines
# are dropped and counted, never waited for, if the log driver falls behind. Set
# FSERVE_ACCESS_LOG= (empty) to turn it off, FSERVE_LOG_FORMAT=json for JSON lines.
ENV FSERVE_ACCESS_LOG=-
CMD ["/public"]
