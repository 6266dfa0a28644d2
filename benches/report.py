#!/usr/bin/env python3
"""Turn the raw runs of benches/vs-nginx.sh into a Markdown report, an SVG chart, the report's
summary table alone (for pasting into the README) and summary tables on stdout. Standard
library only.

    report.py --work DIR --md OUT.md --svg OUT.svg [--summary OUT-summary.md]

DIR (written by vs-nginx.sh) holds:
    runs.tsv       one line per measured run (header line names the columns)
    meta.tsv       key<TAB>value: machine facts and settings ("slots": the servers that ran)
    workloads.tsv  name<TAB>description, in run order
    commands.txt   every distinct command line the harness ran, in order
    nginx.conf     the exact nginx config used (absent when no slot ran nginx)
    Caddyfile      the exact Caddy config used (absent when the caddy slot did not run)
    notes.txt      anomalies seen during the run (may be empty)

A ratio is the median over the rounds of the ratio within each round (the slots of one round
ran back to back, so a burst on a shared host tends to hit them alike); the values beside it are
the medians of each slot's rounds.

Servers ("slots"), in run order: nginx; fserve (its default engine, io_uring); fserve-base (a
second fserve binary, FSERVE_BASE_BIN, io_uring: an earlier build to A/B against); fserve-epoll
(--io epoll); the peers sws (static-web-server) and caddy. Every ratio compares one slot with
nginx and is oriented so that > 1 means that slot did better: slot ÷ nginx for req/s and MiB/s,
nginx ÷ slot for CPU per request, CPU per GiB, latency and memory. fserve-base gets its own
ratio against nginx, so the A/B reads as fserve-base's ratio next to fserve's.

A workload a slot did not run (a "skipped" row in runs.tsv, with its reason) shows "—" in that
slot's cells, and the reason, one line per workload and reason, in the report's header and under
the summary table.
"""

import argparse
import csv
import math
import os
import statistics
from html import escape

SLOT_ORDER = ("nginx", "fserve", "fserve-base", "fserve-epoll", "sws", "caddy")
ENGINE = {"fserve": "io_uring", "fserve-base": "io_uring", "fserve-epoll": "epoll"}
COLOURS = {"nginx": "#4e79a7", "fserve": "#e15759", "fserve-base": "#f28e2b",
           "fserve-epoll": "#59a14f", "sws": "#b07aa1", "caddy": "#9c755f"}


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


def with_ratio(v, r, fmt):
    if v is None:
        return "—"
    return f"{fmt(v)} ({r:.2f}×)" if r is not None else fmt(v)


def text_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def text_width(s, size):
    """Rough rendered width of s in px at font-size size (sans-serif)."""
    return len(s) * size * 0.6


def svg_chart(groups, series, title, subtitle):
    """Grouped bars of CPU-µs per request.

    groups: [(workload, {slot: value or None})]; series: [(slot, label, colour)] in bar order.
    One group per workload, one bar per series, the value above each bar, a legend above the
    plot; log scale when the values span more than 50×. Sizes grow with the number of
    workloads and series so labels never overlap."""
    groups = [g for g in groups if any(g[1].get(s) for s, *_ in series)]
    ns = max(1, len(series))
    vals = [v for _, g in groups for v in g.values() if v]
    bar_slot, bar_w, fs_val = 36, 32, 10  # px per bar (with gap), bar width, value font size
    longest = max([text_width(name, 12) for name, _ in groups] + [0])
    gw = max(ns * bar_slot + 28, longest + 16)  # group width: bars, or the workload name
    left, right, top, bottom = 84, 24, 88, 64
    legend_w = sum(36 + text_width(lab, 11) for _, lab, _ in series)
    W = int(max(left + gw * max(1, len(groups)) + right, left + legend_w + right,
                text_width(title, 15) + 40, text_width(subtitle, 12) + 40, 640))
    H = 520
    pw, ph = W - left - right, H - top - bottom
    gw = pw / max(1, len(groups))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2:.1f}" y="24" text-anchor="middle" font-size="15" '
           f'font-weight="bold">{escape(title)}</text>',
           f'<text x="{W / 2:.1f}" y="43" text-anchor="middle" fill="#444">'
           f'{escape(subtitle)}</text>']
    # Legend, centred on one line between the subtitle and the plot.
    lx = W / 2 - legend_w / 2
    for slot, lab, colour in series:
        out.append(f'<rect x="{lx:.1f}" y="56" width="14" height="14" fill="{colour}"/>')
        out.append(f'<text x="{lx + 19:.1f}" y="67">{escape(lab)}</text>')
        lx += 36 + text_width(lab, 11)
    if not vals:
        out.append(f'<text x="{W / 2:.1f}" y="{top + ph / 2:.1f}" text-anchor="middle">'
                   'no data</text></svg>')
        return "\n".join(out)
    lo, hi = min(vals), max(vals)
    log = hi / lo > 50
    if log:
        e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        if math.log10(lo) - e0 < 0.05:  # keep the smallest bar visible
            e0 -= 1
        if e1 == e0:
            e1 += 1
        ticks = [m * 10**e for e in range(e0, e1 + 1) for m in (1, 2, 5) if m * 10**e <= 10**e1]
        y = lambda v: top + ph - (math.log10(v) - e0) / (e1 - e0) * ph
    else:
        step = 10 ** math.floor(math.log10(hi / 5)) if hi > 0 else 1
        for m in (1, 2, 5, 10):
            if hi / (step * m) <= 6:
                step *= m
                break
        ymax = step * math.ceil(hi / step)
        ticks = [step * i for i in range(int(round(ymax / step)) + 1)]
        y = lambda v: top + ph - v / ymax * ph
    base = top + ph
    for t in ticks:
        ty = y(t) if t > 0 else base
        out.append(f'<line x1="{left}" y1="{ty:.1f}" x2="{left + pw}" y2="{ty:.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end">{t:g}</text>')
    ylabel = "server CPU-µs per request" + (" (log scale)" if log else "") + ", lower is better"
    out.append(f'<text transform="translate(22,{top + ph / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle">{escape(ylabel)}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{H - 14}" text-anchor="middle">workload</text>')
    for i, (name, g) in enumerate(groups):
        cx = left + gw * (i + 0.5)
        x0 = cx - ns * bar_slot / 2
        for j, (slot, _lab, colour) in enumerate(series):
            v = g.get(slot)
            x = x0 + j * bar_slot + (bar_slot - bar_w) / 2
            if v is None or v <= 0:
                out.append(f'<text x="{x + bar_w / 2:.1f}" y="{base - 4:.1f}" '
                           f'text-anchor="middle" font-size="{fs_val}">—</text>')
                continue
            yt = y(v)
            label = f_cpu(v)
            size = fs_val if text_width(label, fs_val) <= bar_slot else 8
            out.append(f'<rect x="{x:.1f}" y="{yt:.1f}" width="{bar_w}" '
                       f'height="{base - yt:.1f}" fill="{colour}"><title>{escape(name)}, '
                       f'{escape(_lab)}: {escape(label)} CPU-µs/request</title></rect>')
            out.append(f'<text x="{x + bar_w / 2:.1f}" y="{yt - 4:.1f}" text-anchor="middle" '
                       f'font-size="{size}">{escape(label)}</text>')
        out.append(f'<text x="{cx:.1f}" y="{base + 18:.1f}" text-anchor="middle">'
                   f'{escape(name)}</text>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="black"/>')
    out.append(f'<line x1="{left}" y1="{base}" x2="{left + pw}" y2="{base}" stroke="black"/>')
    out.append("</svg>")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--svg", required=True)
    ap.add_argument("--summary", help="also write the summary table alone to this file")
    a = ap.parse_args()
    w = a.work

    meta = read_kv(os.path.join(w, "meta.tsv"))
    workloads = read_kv(os.path.join(w, "workloads.tsv"))
    clk = int(meta.get("clk_tck", "100"))
    with open(os.path.join(w, "runs.tsv")) as f:
        runs = list(csv.DictReader(f, delimiter="\t"))
    with open(os.path.join(w, "commands.txt")) as f:
        commands = [c.rstrip("\n") for c in f if c.strip()]
    nginx_conf = None
    if os.path.exists(os.path.join(w, "nginx.conf")):
        with open(os.path.join(w, "nginx.conf")) as f:
            nginx_conf = f.read()
    caddyfile = None
    if os.path.exists(os.path.join(w, "Caddyfile")):
        with open(os.path.join(w, "Caddyfile")) as f:
            caddyfile = f.read()
    notes_path = os.path.join(w, "notes.txt")
    notes = []
    if os.path.exists(notes_path):
        with open(notes_path) as f:
            notes = [n.rstrip("\n") for n in f if n.strip()]

    listed = meta.get("slots", "nginx fserve").split()
    slots = [s for s in SLOT_ORDER if s in listed]
    self_test = meta.get("self_test") == "1"
    has_nginx = "nginx" in slots

    peer_names = {"sws": meta.get("sws_version") or "static-web-server",
                  "caddy": meta.get("caddy_version") or "Caddy"}

    def label(s):  # long name, for the legend and the detailed table
        if s == "nginx":
            return "nginx"
        if s in peer_names:
            return peer_names[s]
        if self_test:
            return f"{s} slot (nginx, self-test)"
        return "fserve-base (io_uring, FSERVE_BASE_BIN)" if s == "fserve-base" \
            else f"fserve ({ENGINE[s]})"

    def short(s):  # names in the summary table's req/s and p99 columns
        if s == "nginx" or self_test or s not in ENGINE:
            return s
        return "base" if s == "fserve-base" else ENGINE[s]

    def col_name(s):  # name in the summary table's CPU columns
        if s == "nginx" or self_test or s not in ENGINE:
            return {"caddy": "Caddy"}.get(s, s)
        return f"{'fserve-base' if s == 'fserve-base' else 'fserve'} {ENGINE[s]}"

    for r in runs:
        r["m"] = metrics(r, clk)

    # Medians per workload and slot; a "skipped" row carries a note instead of numbers.
    stats = {}
    for wl in workloads:
        per = {}
        for s in slots:
            rs = [r for r in runs if r["workload"] == wl and r["server"] == s]
            if not rs:
                continue
            ok = [r for r in rs if r["status_kind"] != "skipped"]
            per[s] = {"skip": next((r["note"] for r in rs if r["status_kind"] == "skipped"), None),
                      "med": {k: med([r["m"][k] for r in ok]) for k, *_ in METRICS},
                      "rounds": {r["round"]: r["m"] for r in ok}}
        if per:
            stats[wl] = per

    def val(wl, s, key):
        p = stats[wl].get(s)
        return None if p is None or p["skip"] else p["med"][key]

    def rat(wl, s, key, hb):
        """The median over the rounds of the ratio within each round: a burst on a shared
        host tends to hit the slots of one round alike, so pairing them cancels much of it.
        The ratio of the medians where no round has both."""
        if s == "nginx" or val(wl, "nginx", key) is None or val(wl, s, key) is None:
            return None
        ours, theirs = stats[wl][s]["rounds"], stats[wl]["nginx"]["rounds"]
        paired = [ratio(theirs[r].get(key), ours[r].get(key), hb)
                  for r in sorted(ours.keys() & theirs.keys())]
        return med(paired) if any(v is not None for v in paired) else \
            ratio(val(wl, "nginx", key), val(wl, s, key), hb)

    # One line per workload and reason, naming the slots it applies to.
    skipped = {}
    for wl, per in stats.items():
        for s, p in per.items():
            if p["skip"]:
                skipped.setdefault((wl, p["skip"]), []).append(s)
    footnotes = [f"`{wl}`: not run on {', '.join(ss)}: {why}"
                 for (wl, why), ss in skipped.items()]

    # ---- the compact summary (top of the report, and the -summary.md file) ----
    quota_cpu = meta.get("quota_cpu", "?")
    idle_conns = meta.get("idle_conns", "?")
    def cpu_col(s):
        return f"{col_name(s)} CPU-µs/req" + (" (×)" if s != "nginx" and has_nginx else "")

    sum_header = (["workload"] + [cpu_col(s) for s in slots]
                  + ["req/s " + " / ".join(short(s) for s in slots),
                     "p99 " + " / ".join(short(s) for s in slots)])
    sum_rows = []
    for wl, per in stats.items():
        if wl == "idle10k":
            row = [f"`idle10k`: RSS MiB, {idle_conns} idle conns"]
            row += [("—" if per.get(s, {}).get("skip") else
                     with_ratio(val(wl, s, "rss"), rat(wl, s, "rss", False), f_mib)) for s in slots]
            row += ["—", "—"]
        else:
            quota = wl == "small-c64-quota"
            row = [f"`{wl}`" + (f": {quota_cpu} CPU quota" if quota else "")]
            row += [("—" if per.get(s, {}).get("skip") else
                     with_ratio(val(wl, s, "cpu_us"), rat(wl, s, "cpu_us", False), f_cpu))
                    for s in slots]
            rps = [with_ratio(val(wl, s, "rps"), rat(wl, s, "rps", True) if quota else None,
                              f_count) for s in slots]
            row += [" / ".join(rps),
                    " / ".join(f_lat(v) if (v := val(wl, s, "p99")) is not None else "—"
                               for s in slots)]
        sum_rows.append(row)
    quota_ran = "small-c64-quota" in stats
    rounds_desc = f"{meta.get('rounds', '?')} round(s) × {meta.get('duration', '?')}"
    peers = [s for s in slots if s in peer_names]
    others = [label(s) for s in peers]
    legend = []
    if not self_test and any(s in ENGINE for s in slots):
        legend.append("io_uring = fserve as started by default"
                      + (", epoll = `fserve --io epoll`" if "fserve-epoll" in slots else "")
                      + (", base = fserve-base, an earlier fserve build (FSERVE_BASE_BIN) started "
                         "with the same flags, on io_uring" if "fserve-base" in slots else ""))
    if peers:
        legend.append(", ".join(f"{col_name(s)} = {label(s)}" for s in peers)
                      + " (production settings: compression and access log off)")
    caption = [
        f"**fserve vs {', '.join(['nginx'] + others)}, {meta.get('date', '?')}**"
        + (" (`--quick` smoke test: numbers are not meaningful)" if "quick" in meta.get("mode", "")
           else "")
        + (" (**self-test**: every fserve slot runs nginx)" if self_test else "")
        + f": {meta.get('cpu_model', '?')}, {meta.get('cores', '?')} cores, kernel "
        f"{meta.get('kernel', '?')}; {meta.get('threads', '?')} worker(s) per server pinned to "
        f"CPU {meta.get('server_cpus', '?')}, wrk "
        + (f"({meta['wrk_threads']} threads) " if meta.get("wrk_threads", "1") != "1" else "")
        + f"on CPU {meta.get('client_cpus', '?')}; "
        f"medians of {rounds_desc}; `benches/vs-nginx.sh`.",
        "",
        "".join(f"{x}. " for x in legend)
        + "CPU-µs/req: the server's CPU time per request, lower is better"
        + ("; (×) = nginx ÷ that server (the median of the ratios within each round), "
           "**> 1 means it did better than nginx**" if has_nginx else "")
        + ". " + (f"Quota row: the server limited to {quota_cpu} CPU (cgroup), so req/s is the "
                  "server's limit, not the client's" + ("; its req/s ratios are server ÷ nginx"
                                                        if has_nginx else "") + ". "
                  if quota_ran else "")
        + ("`idle10k`: the server's RSS with the idle keep-alive connections open"
           + ("; (×) = nginx ÷ that server" if has_nginx else "") + "."
           if "idle10k" in stats else ""),
    ]
    sum_notes = []
    if not quota_ran:
        why = meta.get("quota", "") if meta.get("quota", "").startswith("unavailable") else \
            "not in WORKLOADS"
        sum_notes.append(f"Quota run: not done ({why}).")
    def summary_text(notes_):
        return "\n".join(caption + ["", md_table(sum_header, sum_rows)]
                         + ([""] + [f"- {n}" for n in notes_] if notes_ else [])) + "\n"

    # The report names skipped workloads in its header; the summary file stands alone.
    report_summary_md = summary_text(sum_notes)
    sum_notes += [f"{n}." for n in footnotes]
    summary_md = summary_text(sum_notes)
    if a.summary:
        with open(a.summary, "w") as f:
            f.write(summary_md)

    # ---- detailed medians: a row per workload and slot, every metric ----
    header = ["workload", "server"] + [t for _k, t, *_ in METRICS]
    det_md, det_txt = [], []
    for wl, per in stats.items():
        first = True
        for s in slots:
            if s not in per:
                continue
            if per[s]["skip"]:
                cells = ["—"] * len(METRICS)
            else:
                cells = [with_ratio(val(wl, s, k), rat(wl, s, k, hb), fmt)
                         for k, _t, fmt, hb in METRICS]
            det_md.append([f"`{wl}`" if first else "", label(s)] + cells)
            det_txt.append([wl if first else "", s] + cells)
            first = False

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

    series = [(s, label(s), COLOURS[s]) for s in slots]
    chart = [(wl, {s: val(wl, s, "cpu_us") for s in slots}) for wl in stats if wl != "idle10k"]
    svg = svg_chart(chart, series,
                    "Server CPU per request: " + " vs ".join(label(s) for s in slots),
                    f"{meta.get('date', '')}: {meta.get('threads', '?')} worker(s), median of "
                    f"{rounds_desc}"
                    + (", --quick smoke test" if "quick" in meta.get("mode", "") else ""))
    with open(a.svg, "w") as f:
        f.write(svg + "\n")

    facts = [
        ("date", meta.get("date")), ("mode", meta.get("mode")),
        ("kernel", meta.get("kernel")), ("CPU", meta.get("cpu_model")),
        ("cores", meta.get("cores")), ("nginx", meta.get("nginx_version")),
        ("servers (slots, run in this order)", ", ".join(label(s) for s in slots)),
        ("fserve commit", meta.get("fserve_commit")), ("fserve binary", meta.get("fserve_bin")),
        ("fserve start-up line", meta.get("fserve_banner") or "—"),
        ("fserve --io epoll start-up line", meta.get("fserve_epoll_banner") or "—"),
    ]
    if "fserve-base" in slots and not self_test:
        facts += [("fserve-base binary (FSERVE_BASE_BIN)", meta.get("fserve_base_bin")),
                  ("fserve-base start-up line", meta.get("fserve_base_banner") or "—")]
    if "sws" in slots:
        facts += [("static-web-server", f"{meta.get('sws_version')} (cargo install --locked, "
                                        f"{meta.get('sws_bin')})")]
    if "caddy" in slots:
        facts += [("Caddy", f"{meta.get('caddy_version')} (Debian package)")]
    facts += [
        ("wrk", meta.get("wrk_version")), ("rustc", meta.get("rustc_version")),
        ("server CPUs / client CPUs", f"{meta.get('server_cpus')} / {meta.get('client_cpus')}"),
        ("workers (nginx worker_processes = fserve --threads"
         + (" = sws worker threads" if "sws" in slots else "")
         + (" = Caddy GOMAXPROCS" if "caddy" in slots else "") + ")", meta.get("threads")),
        ("rounds × duration (warm-up)", f"{meta.get('rounds')} × {meta.get('duration')} "
                                        f"({meta.get('warmup')})"),
        ("CPU quota run", meta.get("quota")),
        ("open-file limit (ulimit -n)", meta.get("nofile")),
        ("netfilter connection tracking",
         f"on ({meta['conntrack']} connections tracked after the run): every server's requests "
         "also went through it" if meta.get("conntrack", "0") not in ("0", "")
         else "off"),
        ("corpus", meta.get("corpus")),
    ]
    intro = ("Produced by `benches/vs-nginx.sh` (method: README.md, section Benchmark against nginx). Each workload "
             "ran against " + ", ".join(label(s) for s in slots) + " in turn, every round, on the "
             "same pinned CPUs, same files, same worker count; figures are medians over the "
             "rounds, and each ratio against nginx is the median of the ratios within each "
             "round.")
    if "fserve-base" in slots and not self_test:
        intro += (" fserve-base is a second fserve binary (FSERVE_BASE_BIN, "
                  f"`{meta.get('fserve_base_bin')}`) started with the fserve slot's flags: its "
                  "ratio against nginx next to fserve's is the A/B of the two builds.")
    if "sws" in slots:
        intro += (f" {label('sws')}: `--compression false --directory-listing false "
                  "--log-level error`, cache-control headers as default, "
                  "`--threads-multiplier` so its worker threads equal the other servers' workers.")
    if "caddy" in slots:
        intro += (f" {label('caddy')}: the Caddyfile at the end (`file_server`, no `encode`, no "
                  "access log, admin API and automatic HTTPS off), GOMAXPROCS = the other servers' "
                  "workers.")
    md = [f"# fserve vs {', '.join(['nginx'] + others)} — {meta.get('date', '')}", "", intro, ""]
    if footnotes:
        md += ["Not run (— in the tables):", ""] + [f"- {n}" for n in footnotes] + [""]
    md += ["## Summary", "",
          report_summary_md.rstrip("\n"), "",
          f"![server CPU-µs per request]({os.path.basename(a.svg)})", "",
          "## Machine", "", md_table(["fact", "value"], [[k, v or "?"] for k, v in facts]), "",
          "## Medians per workload", "",
          "One row per workload and server; each cell other than nginx's is **value (ratio "
          "against nginx)**. Every ratio is oriented so that **> 1 means that server did better "
          "than nginx**: server ÷ nginx for req/s and MiB/s; nginx ÷ server for CPU-µs per request, "
          "CPU-seconds per GiB sent, p50/p99 latency and RSS. CPU is utime+stime of all the "
          "server's processes (/proc/PID/stat) over the measured run, divided by the requests "
          "wrk completed. Peak RSS is VmHWM summed over the server's processes; for `idle10k` "
          "it is VmRSS with the connections open. MiB/s is what wrk read, headers included. The "
          "client saturates first on small files: compare CPU-µs/req and the quota row, not raw "
          "req/s.", "",
          md_table(header, det_md), ""]
    md += ["## Workloads", "",
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
           "```"] + commands + ["```", ""]
    if nginx_conf is not None:
        md += ["## nginx config", "", "```nginx", nginx_conf.rstrip("\n"), "```", ""]
    if caddyfile is not None:
        md += ["## Caddyfile", "", "```", caddyfile.rstrip("\n"), "```", ""]
    with open(a.md, "w") as f:
        f.write("\n".join(md))

    print()
    print(f"Summary (medians of {rounds_desc}"
          + ("; (×) > 1 = that server better than nginx)" if has_nginx else ")"))
    print(text_table(sum_header, [[c.replace("`", "") for c in r] for r in sum_rows]))
    for n in sum_notes:
        print(n)
    print()
    print("Medians per workload" + (" (cells other than nginx's: value (ratio against nginx, "
                                    "> 1 = that server better))" if has_nginx else ""))
    print(text_table(["workload", "server"] + [t for _k, t, *_ in METRICS], det_txt))
    if notes:
        print("\nObservations:")
        for n in notes:
            print(f"  - {n}")


if __name__ == "__main__":
    main()
