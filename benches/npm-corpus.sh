# shellcheck shell=bash
# The real front-end corpus shared by benches/compression.sh and benches/pageload.sh, sourced
# by them (not run): React DOM, lodash, Bootstrap, three.js and d3 from the npm registry,
# fetched with `npm pack` and pinned by version, plus an index.html that loads them all. No
# sidecars: the servers compress by themselves.
#
#   npm_corpus WORK SITE   packs into WORK/npm (logs in WORK/logs), writes the files to SITE
#                          and sets the array FILES (index.html first). Calls the caller's
#                          `die` and `say` on failure and progress.
#   fserve_binary REPO     FSERVE: $FSERVE_BIN, or a fresh release build.
#   nginx_gzip_conf WORK SITE PORT   WORK/nginx/nginx.conf: nginx's static config, gzip on.
#   wait_port PORT NAME    waits until 127.0.0.1:PORT answers.

# package@version, then the files taken from it (paths inside the package).
NPM_CORPUS_PACKAGES=(
    "react-dom@18.3.1 umd/react-dom.production.min.js"
    "lodash@4.17.21 lodash.js"
    "bootstrap@5.3.3 dist/css/bootstrap.min.css dist/js/bootstrap.bundle.min.js"
    "three@0.160.0 build/three.module.js"
    "d3@7.9.0 dist/d3.min.js"
)

npm_corpus() { # WORK SITE
    local work=$1 site=$2 entry spec paths name tgz p f
    mkdir -p "$work/npm" "$work/logs" "$site"
    FILES=()
    for entry in "${NPM_CORPUS_PACKAGES[@]}"; do
        read -r spec paths <<<"$entry"
        name=${spec%@*}
        say "npm pack $spec"
        tgz=$(cd "$work/npm" && npm pack --silent --cache "$work/npm-cache" "$spec" 2>"$work/logs/npm-$name.log" | tail -n 1) ||
            { cat "$work/logs/npm-$name.log" >&2; die "npm pack $spec failed"; }
        mkdir -p "$work/npm/$name"
        tar -xzf "$work/npm/$tgz" -C "$work/npm/$name" || die "cannot unpack $tgz"
        for p in $paths; do
            f=$(basename "$p")
            cp "$work/npm/$name/package/$p" "$site/$f" || die "$spec has no $p"
            FILES+=("$f")
        done
    done
    cat >"$site/index.html" <<'HTML'
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fserve compression corpus</title>
<link rel="stylesheet" href="bootstrap.min.css">
<script src="react-dom.production.min.js" defer></script>
<script src="lodash.js" defer></script>
<script src="bootstrap.bundle.min.js" defer></script>
<script src="d3.min.js" defer></script>
<script type="module">import * as THREE from "./three.module.js"; window.THREE = THREE;</script>
</head>
<body class="container"><h1>A real front-end, uncompressed on disk</h1>
<p>React DOM, lodash, Bootstrap, three.js and d3 from the npm registry, pinned by version.</p>
</body>
</html>
HTML
    FILES=(index.html "${FILES[@]}")
}

# Helpers for both benches; they call the caller's `say` and `die`.

fserve_binary() { # REPO: sets FSERVE to $FSERVE_BIN, or to a fresh release build of REPO
    if [[ -n ${FSERVE_BIN:-} ]]; then
        FSERVE=$FSERVE_BIN
    else
        say "cargo build --release"
        (cd "$1" && cargo build --release --quiet) || die "cargo build --release failed"
        FSERVE=$1/target/release/fserve
    fi
    [[ -x $FSERVE ]] || die "no fserve binary at $FSERVE"
}

nginx_gzip_conf() { # WORK SITE PORT: WORK/nginx/nginx.conf, nginx's static config, gzip on
    local work=$1 site=$2 port=$3
    mkdir -p "$work/nginx"
    cp /etc/nginx/mime.types "$work/nginx/mime.types" || die "no /etc/nginx/mime.types"
    cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
    include mime.types;
    access_log off;
    sendfile on; tcp_nopush on; tcp_nodelay on;
    keepalive_requests 1000000; keepalive_timeout 65;
    open_file_cache max=10000 inactive=60s; open_file_cache_valid 60s;
    gzip on; gzip_comp_level 6; gzip_vary on; gzip_min_length 512;
    gzip_types text/css text/javascript application/javascript application/json image/svg+xml text/plain;
    client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi; uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server { listen 127.0.0.1:$port reuseport; root $site; }
}
EOF
}

wait_port() { # PORT NAME (the caller's WORK holds the logs)
    local i
    for i in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$1/index.html" && return 0
        sleep 0.1
    done
    die "$2 does not answer on port $1 (logs in $WORK/logs)"
}
