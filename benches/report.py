#!/usr/bin/env python3
"""Turn the raw runs of benches/vs-nginx.sh into a Markdown report, an SVG chart and a
summary table on stdout. Standard library only.

    report.py --work DIR --md OUT.md --svg OUT.svg

DIR (written by vs-nginx.sh) holds:
    runs.tsv       one line per measured run (header line names the columns)
    meta.tsv       key<TAB>value: machine facts and settings
    workloads.tsv  name<TAB>description, in run order
    commands.txt   every distinct command line the harness ran, in order
    nginx.conf     the exact nginx config used
    notes.txt      anomalies seen during the run (may be empty)

Every ratio is oriented so that > 1 means fserve did better: fserve ÷ nginx for req/s and
MiB/s, nginx ÷ fserve for CPU per request, CPU per GiB, latency and memory.
"""

import argparse
import csv
import math
import os
import statistics
from html import escape

SERVERS = ("nginx", "fserve")


def read_kv(path):
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("\t")
            if k:
                out[k] = v
    return out


def metrics(row, clk_tck):
    """Per-run figures from one runs.tsv row (None where they do not apply)."""
    req = int(row["requests"] or 0)
    byt = int(row["bytes"] or 0)
    dur = int(row["duration_us"] or 0) / 1e6
    cpu = int(row["cpu_ticks"] or 0) / clk_tck if row["cpu_ticks"] != "" else None
    m = {
        "rps": req / dur if dur and req else None,
        "cpu_us": cpu * 1e6 / req if cpu is not None and req else None,
        "p50": int(row["p50_us"]) if req else None,
        "p99": int(row["p99_us"]) if req else None,
        "mibs": byt / 2**20 / dur if dur and req else None,
        "cpu_gib": cpu / (byt / 2**30) if cpu is not None and byt else None,
        "rss": int(row["rss_kb"]) / 1024 if row["rss_kb"] else None,
    }
    return m


# metric key, column title, formatter, True if higher is better
def f_count(v):
    return f"{v / 1000:.1f}k" if v >= 10000 else f"{v:,.0f}"


def f_cpu(v):
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def f_lat(v):
    return f"{v:.0f} µs" if v < 1000 else f"{v / 1000:.2f} ms"


def f_mib(v):
    return f"{v:,.1f}"


def f_gib(v):
    return f"{v:.3g}"


METRICS = [
    ("rps", "req/s", f_count, True),
    ("cpu_us", "CPU-µs/req", f_cpu, False),
    ("p50", "p50", f_lat, False),
    ("p99", "p99", f_lat, False),
    ("mibs", "MiB/s", f_mib, True),
    ("cpu_gib", "CPU-s/GiB", f_gib, False),
    ("rss", "peak RSS MiB", f_mib, False),
]


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def ratio(n, f, higher_better):
    if n is None or f is None or n == 0 or f == 0:
        return None
    return f / n if higher_better else n / f


def cell(n, f, r, fmt, fserve_note=None):
    ns = fmt(n) if n is not None else "—"
    if fserve_note:
        return f"{ns} / n/a"
    fs = fmt(f) if f is not None else "—"
    rs = f" ({r:.2f}×)" if r is not None else ""
    return f"{ns} / {fs}{rs}"


def text_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def svg_chart(groups, title):
    """groups: [(workload, nginx_value|None, fserve_value|None)] -> SVG text (grouped bars)."""
    groups = [g for g in groups if g[1] is not None or g[2] is not None]
    W, H = 960, 480
    left, right, top, bottom = 80, 20, 50, 60
    pw, ph = W - left - right, H - top - bottom
    vals = [v for g in groups for v in g[1:] if v]
    colours = {"nginx": "#4e79a7", "fserve": "#e15759"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>']
    if not vals:
        out.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text></svg>')
        return "\n".join(out)
    lo, hi = min(vals), max(vals)
    log = hi / lo > 50
    if log:
        e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        if e1 == e0:
            e1 += 1
        ticks = [10**e for e in range(e0, e1 + 1)]
        y = lambda v: top + ph - (math.log10(v) - e0) / (e1 - e0) * ph
        base = lambda: top + ph
    else:
        step = 10 ** math.floor(math.log10(hi / 5)) if hi > 0 else 1
        for m in (1, 2, 5, 10):
            if hi / (step * m) <= 6:
                step *= m
                break
        ymax = step * math.ceil(hi / step)
        ticks = [step * i for i in range(int(round(ymax / step)) + 1)]
        y = lambda v: top + ph - v / ymax * ph
        base = lambda: top + ph
    for t in ticks:
        ty = y(t) if t > 0 else top + ph
        out.append(f'<line x1="{left}" y1="{ty:.1f}" x2="{left + pw}" y2="{ty:.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end">{t:g}</text>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="black"/>')
    out.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" '
               f'stroke="black"/>')
    ylabel = "server CPU-µs per request" + (" (log scale)" if log else "") + ", lower is better"
    out.append(f'<text transform="translate(20,{top + ph / 2}) rotate(-90)" '
               f'text-anchor="middle">{escape(ylabel)}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{top + ph + 42}" text-anchor="middle">workload</text>')
    gw = pw / len(groups)
    bw = min(40, gw * 0.35)
    for i, (name, nv, fv) in enumerate(groups):
        cx = left + gw * (i + 0.5)
        for j, (srv, v) in enumerate((("nginx", nv), ("fserve", fv))):
            x = cx - bw + j * bw
            if v is None or v <= 0:
                out.append(f'<text x="{x + bw / 2:.1f}" y="{top + ph - 4}" '
                           f'text-anchor="middle" font-size="10">n/a</text>')
                continue
            yt = y(v)
            out.append(f'<rect x="{x:.1f}" y="{yt:.1f}" width="{bw - 2:.1f}" '
                       f'height="{base() - yt:.1f}" fill="{colours[srv]}"/>')
            out.append(f'<text x="{x + bw / 2 - 1:.1f}" y="{yt - 4:.1f}" text-anchor="middle" '
                       f'font-size="10">{escape(f_cpu(v))}</text>')
        out.append(f'<text x="{cx:.1f}" y="{top + ph + 18}" text-anchor="middle">'
                   f'{escape(name)}</text>')
    lx = left + pw - 150
    for j, srv in enumerate(SERVERS):
        out.append(f'<rect x="{lx + j * 75}" y="{top - 16}" width="12" height="12" '
                   f'fill="{colours[srv]}"/>')
        out.append(f'<text x="{lx + j * 75 + 16}" y="{top - 6}">{srv}</text>')
    out.append("</svg>")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--svg", required=True)
    a = ap.parse_args()
    w = a.work

    meta = read_kv(os.path.join(w, "meta.tsv"))
    workloads = read_kv(os.path.join(w, "workloads.tsv"))
    clk = int(meta.get("clk_tck", "100"))
    with open(os.path.join(w, "runs.tsv")) as f:
        runs = list(csv.DictReader(f, delimiter="\t"))
    with open(os.path.join(w, "commands.txt")) as f:
        commands = [c.rstrip("\n") for c in f if c.strip()]
    with open(os.path.join(w, "nginx.conf")) as f:
        nginx_conf = f.read()
    notes_path = os.path.join(w, "notes.txt")
    notes = []
    if os.path.exists(notes_path):
        with open(notes_path) as f:
            notes = [n.rstrip("\n") for n in f if n.strip()]

    for r in runs:
        r["m"] = metrics(r, clk)

    # Medians per workload and server; a fserve "skip" row carries a note instead of numbers.
    summary_rows_md, summary_rows_txt, chart, footnotes = [], [], [], []
    for wl in workloads:
        per = {s: [r for r in runs if r["workload"] == wl and r["server"] == s] for s in SERVERS}
        if not per["nginx"] and not per["fserve"]:
            continue
        skip_note = next((r["note"] for r in per["fserve"] if r["status_kind"] == "skipped"), None)
        meds = {s: {k: med([r["m"][k] for r in per[s] if r["status_kind"] != "skipped"])
                    for k, *_ in METRICS} for s in SERVERS}
        cells = []
        for key, _title, fmt, hb in METRICS:
            n, fv = meds["nginx"][key], meds["fserve"][key]
            cells.append(cell(n, fv, ratio(n, fv, hb), fmt, skip_note))
        tail = f" (fserve: {skip_note})" if skip_note else ""
        summary_rows_md.append([f"`{wl}`{tail}"] + cells)
        summary_rows_txt.append([wl + ("*" if skip_note else "")] + cells)
        if skip_note:
            footnotes.append(f"* {wl}: fserve {skip_note}; not compared")
        if wl != "idle10k":
            chart.append((wl, meds["nginx"]["cpu_us"], None if skip_note else meds["fserve"]["cpu_us"]))

    header = ["workload"] + [t for _k, t, *_ in METRICS]

    raw_header = ["workload", "round", "server", "requests", "req/s", "CPU-µs/req", "p50", "p99",
                  "MiB/s", "CPU-s/GiB", "RSS MiB", "socket errors", "status ≥ 400", "note"]
    raw_rows = []
    for r in runs:
        m = r["m"]
        fmt = lambda k, f: f(m[k]) if m[k] is not None else "—"
        sock = sum(int(r[k] or 0) for k in ("connect", "read", "write", "timeout"))
        raw_rows.append([f"`{r['workload']}`", r["round"], r["server"],
                         f"{int(r['requests'] or 0):,}", fmt("rps", lambda v: f"{v:,.0f}"),
                         fmt("cpu_us", f_cpu), fmt("p50", f_lat), fmt("p99", f_lat),
                         fmt("mibs", f_mib), fmt("cpu_gib", f_gib), fmt("rss", f_mib),
                         str(sock), r["status"] or "0", r["note"] or ""])

    svg = svg_chart(chart, f"fserve vs nginx — server CPU per request ({meta.get('date', '')}, "
                           f"{meta.get('threads', '?')} worker(s), median of "
                           f"{meta.get('rounds', '?')} round(s))")
    with open(a.svg, "w") as f:
        f.write(svg + "\n")

    facts = [
        ("date", meta.get("date")), ("mode", meta.get("mode")),
        ("kernel", meta.get("kernel")), ("CPU", meta.get("cpu_model")),
        ("cores", meta.get("cores")), ("nginx", meta.get("nginx_version")),
        ("fserve commit", meta.get("fserve_commit")), ("fserve binary", meta.get("fserve_bin")),
        ("fserve start-up line", meta.get("fserve_banner") or "—"),
        ("wrk", meta.get("wrk_version")), ("rustc", meta.get("rustc_version")),
        ("server CPUs / client CPUs", f"{meta.get('server_cpus')} / {meta.get('client_cpus')}"),
        ("workers (nginx worker_processes = fserve --threads)", meta.get("threads")),
        ("rounds × duration (warm-up)", f"{meta.get('rounds')} × {meta.get('duration')} "
                                        f"({meta.get('warmup')})"),
        ("CPU quota run", meta.get("quota")),
        ("open-file limit (ulimit -n)", meta.get("nofile")),
        ("corpus", meta.get("corpus")),
    ]
    md = [f"# fserve vs nginx — {meta.get('date', '')}", "",
          "Produced by `benches/vs-nginx.sh` (method: shared BENCHMARKING.md). Each workload ran "
          "against nginx and fserve alternately, on the same pinned CPUs, same files, same worker "
          "count; figures are medians over the rounds.", "",
          "## Machine", "", md_table(["fact", "value"], [[k, v or "?"] for k, v in facts]), "",
          "## Summary", "",
          "Each cell: **nginx / fserve (ratio)**. Every ratio is oriented so that **> 1 means "
          "fserve did better**: fserve ÷ nginx for req/s and MiB/s; nginx ÷ fserve for CPU-µs "
          "per request, CPU-seconds per GiB sent, p50/p99 latency and RSS. CPU is utime+stime of "
          "all the server's processes (/proc/PID/stat) over the measured run, divided by the "
          "requests wrk completed. Peak RSS is VmHWM summed over the server's processes; for "
          "`idle10k` it is VmRSS with the connections open. MiB/s is what wrk read, headers "
          "included. The client saturates first on small files: compare CPU-µs/req and the "
          "quota row, not raw req/s.", "",
          md_table(header, summary_rows_md), "",
          f"![server CPU-µs per request]({os.path.basename(a.svg)})", "",
          "## Workloads", "",
          md_table(["workload", "what"], [[f"`{k}`", v] for k, v in workloads.items()]), "",
          "## Observations", ""]
    md += [f"- {n}" for n in notes] if notes else ["- nothing unusual was detected."]
    md += ["", "## Per-round figures", "", md_table(raw_header, raw_rows), "",
           "## Commands", "",
           "Servers are started afresh for every measured run (so peak RSS belongs to that "
           "workload) and stopped with SIGTERM after it. "
           + (f"Each measured run is preceded by the same wrk line with -d{meta.get('warmup_d')} "
              "(warm-up, not measured). " if meta.get("warmup_d", "0") != "0" else "")
           + "Server CPU and RSS are read from /proc/PID/stat and /proc/PID/status of the "
           "server's processes just before and after the measured wrk run.", "",
           "```"] + commands + ["```", "",
           "## nginx config", "", "```nginx", nginx_conf.rstrip("\n"), "```", ""]
    with open(a.md, "w") as f:
        f.write("\n".join(md))

    print()
    print("Summary (nginx / fserve (ratio, > 1 = fserve better); medians of "
          f"{meta.get('rounds')} round(s) × {meta.get('duration')})")
    print(text_table(header, summary_rows_txt))
    for n in footnotes:
        print(n)
    if notes:
        print("\nObservations:")
        for n in notes:
            print(f"  - {n}")


if __name__ == "__main__":
    main()
