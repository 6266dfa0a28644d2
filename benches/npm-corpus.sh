# shellcheck shell=bash
# The real front-end corpus shared by benches/compression.sh and benches/pageload.sh, sourced
# by them (not run): React DOM, lodash, Bootstrap, three.js and d3 from the npm registry,
# fetched with `npm pack` and pinned by version, plus an index.html that loads them all. No
# sidecars: the servers compress by themselves.
#
#   npm_corpus WORK SITE   packs into WORK/npm (logs in WORK/logs), writes the files to SITE
#                          and sets the array FILES (index.html first). Calls the caller's
#                          `die` and `say` on failure and progress.

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
