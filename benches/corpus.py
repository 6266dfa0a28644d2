#!/usr/bin/env python3
"""Write the deterministic benchmark corpus for benches/vs-nginx.sh.

    corpus.py DIR [--random-files N] [--no-10m] [--seed S]

Files (same bytes on every machine and every run, for a given seed):
    1k.html   1 KiB of HTML-ish text       16k.css  16 KiB of CSS-ish text
    64k.js    64 KiB of JS-ish text        1m.bin   1 MiB of seeded pseudo-random bytes
    10m.bin   10 MiB of seeded pseudo-random bytes (left out with --no-10m)
    r/00000.html … r/NNNNN.html   N small HTML files, 200-2000 bytes each
    32k.js    32 KiB of JS-ish text (made last)

Content comes from random.Random(seed) (Mersenne Twister: stable across Python versions),
so it is neither all zeros nor /dev/urandom. Standard library only.
"""

import argparse
import os
import random

WORDS = (
    "alpha beta gamma delta server request response header body cache kernel ring "
    "socket buffer static file thread core latency throughput nginx fserve uring "
    "loopback content length keep alive connection range bytes index html style"
).split()


def text(rng: random.Random, size: int, prefix: str, suffix: str) -> bytes:
    """size bytes: prefix, seeded words in lines, suffix, cut or padded to exactly size."""
    parts = [prefix]
    n = len(prefix) + len(suffix)
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "\n"
        parts.append(line)
        n += len(line)
    body = "".join(parts)[: max(0, size - len(suffix))] + suffix
    data = body.encode("ascii")[:size]
    return data + b" " * (size - len(data))


def write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--random-files", type=int, default=10000)
    ap.add_argument("--no-10m", action="store_true")
    ap.add_argument("--seed", type=int, default=20240601)
    a = ap.parse_args()

    rng = random.Random(a.seed)
    os.makedirs(os.path.join(a.dir, "r"), exist_ok=True)
    write(os.path.join(a.dir, "1k.html"),
          text(rng, 1024, "<!doctype html><html><body><pre>\n", "</pre></body></html>\n"))
    write(os.path.join(a.dir, "16k.css"), text(rng, 16 * 1024, "body {\n", "}\n"))
    write(os.path.join(a.dir, "64k.js"), text(rng, 64 * 1024, "/* fserve bench */\n", "\n"))
    write(os.path.join(a.dir, "1m.bin"), rng.randbytes(1 << 20))
    if not a.no_10m:
        write(os.path.join(a.dir, "10m.bin"), rng.randbytes(10 << 20))
    for i in range(a.random_files):
        size = rng.randint(200, 2000)
        write(os.path.join(a.dir, "r", f"{i:05d}.html"),
              text(rng, size, f"<!doctype html><title>{i}</title><pre>\n", "</pre>\n"))
    # Written last, so that adding it left every file above byte for byte as it was.
    write(os.path.join(a.dir, "32k.js"), text(rng, 32 * 1024, "/* fserve bench */\n", "\n"))


if __name__ == "__main__":
    main()
