#!/usr/bin/env python3
"""Hold many idle keep-alive connections open against a server (benches/vs-nginx.sh, idle10k).

    idle.py HOST PORT COUNT [--path /1k.html] [--connect-timeout S] [--hold S]

Each connection sends one GET (HTTP/1.1, keep-alive), reads the whole response
(Content-Length), then stays open and idle. When every connection has been tried it prints
    READY held=N failed=M open=O [phase:Error=count,…]
(held: got a 200 response and were kept; failed: why, e.g. connect:TimeoutError=3;
open: still open now), and from then on, every 0.5 s,
    OPEN n        (how many are still open: a server may close idle connections)
until SIGTERM/SIGINT or --hold seconds (a bound, so it always stops). If the connect phase
takes longer than --ready-timeout, READY comes early and counts the stragglers as failed.
Standard library only; needs `ulimit -n` above COUNT.
"""

import argparse
import asyncio
import signal
import sys


def fail(state, phase, e):
    state["failed"] += 1
    key = f"{phase}:{type(e).__name__}"
    if isinstance(e, OSError) and e.errno:
        key += f"({e.errno})"
    state["why"][key] = state["why"].get(key, 0) + 1


async def one(host, port, path, timeout, sem, state, conns):
    async with sem:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            fail(state, "connect", e)
            return
        try:
            w.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), timeout)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip())
            if not head.startswith(b"HTTP/1.1 200"):
                raise ValueError(head.split(b"\r\n")[0])
            await asyncio.wait_for(r.readexactly(length), timeout)
        except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            fail(state, "response", e)
            w.close()
            return
    state["open"] += 1
    state["held"] += 1
    conns.append(w)
    # Idle from here; notice when the server closes us.
    try:
        await r.read(1)
    except OSError:
        pass
    state["open"] -= 1


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("--path", default="/1k.html")
    ap.add_argument("--connect-timeout", type=float, default=10.0)
    ap.add_argument("--hold", type=float, default=120.0)
    ap.add_argument("--ready-timeout", type=float, default=60.0)
    ap.add_argument("--parallel", type=int, default=256)
    a = ap.parse_args()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)

    state = {"open": 0, "held": 0, "failed": 0, "why": {}}
    conns = []
    sem = asyncio.Semaphore(a.parallel)
    tasks = [asyncio.create_task(one(a.host, a.port, a.path, a.connect_timeout, sem, state, conns))
             for _ in range(a.count)]
    # Wait until every connection is either held (idle) or failed.
    ready_by = loop.time() + a.ready_timeout
    while (state["held"] + state["failed"] < a.count and not stop.is_set()
           and loop.time() < ready_by):
        await asyncio.sleep(0.05)
    failed = a.count - state["held"]
    why = ",".join(f"{k}={v}" for k, v in sorted(state["why"].items()))
    print(f"READY held={state['held']} failed={failed} open={state['open']} {why}".rstrip(),
          flush=True)
    deadline = loop.time() + a.hold
    while not stop.is_set() and loop.time() < deadline:
        print(f"OPEN {state['open']}", flush=True)
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
    for w in conns:
        w.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
