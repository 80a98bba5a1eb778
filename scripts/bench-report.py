#!/usr/bin/env python3
"""bench-report.py DIR — turns bench.sh's DIR/raw.jsonl and DIR/meta.json into
DIR/results.json (everything, grouped), DIR/results.md (the tables) and DIR/loss.svg
(throughput against loss, SVG written by hand: no plotting dependency)."""

import json
import sys
from pathlib import Path

ROWS = ["direct", "rawtun", "rawtun-pcap", "rawtun-bypass", "kcptun", "kcptun-tcp", "kcptun-tuned", "kcptun-tcp-tuned"]
GIB = 1 << 30


def measured(records):
    """The rows this run measured (bench.sh --rows picks some), in ROWS order."""
    seen = {r.get("row") for r in records}
    return [row for row in ROWS if row in seen]


def load(out):
    records = [json.loads(l) for l in (out / "raw.jsonl").read_text().splitlines() if l.strip()]
    meta = json.loads((out / "meta.json").read_text())
    return records, meta


def pick(records, **kw):
    return [r for r in records if all(r.get(k) == v for k, v in kw.items())]


def one(records, **kw):
    found = pick(records, **kw)
    return found[-1] if found else None


def fmt_mbps(r):
    if r is None:
        return "—"
    if "error" in r:
        return "fail"
    return f"{r['mbps']:.0f}"


def fmt_ms(us):
    return f"{us / 1000:.2f}" if us < 100_000 else f"{us / 1000:.0f}"


def group(records, meta):
    """The structured results.json: per profile, per row."""
    profiles = {}
    for profile in sorted({r["profile"] for r in records if "profile" in r and r["profile"] != "backend"}):
        rows = {}
        for row in measured(records):
            na = one(records, kind="na", profile=profile, row=row)
            entry = {}
            if na:
                entry["na"] = na["reason"]
            entry["iperf_mbps"] = {
                f"{r['streams']}x_{r['dir']}": r.get("mbps")
                for r in pick(records, kind="iperf", profile=profile, row=row)
            }
            cpu = one(records, kind="cpu", profile=profile, row=row)
            if cpu and cpu["bytes"] > 0:
                gib = cpu["bytes"] / GIB
                entry["cpu_s_per_gib"] = {
                    "client": round(cpu["client_ticks"] / cpu["clk_tck"] / gib, 2),
                    "server": round(cpu["server_ticks"] / cpu["clk_tck"] / gib, 2),
                }
                entry["peak_rss_mib"] = {
                    "client": round(cpu["client_hwm_kib"] / 1024, 1),
                    "server": round(cpu["server_hwm_kib"] / 1024, 1),
                }
                entry["bytes_moved"] = cpu["bytes"]
            echo = one(records, kind="echo", profile=profile, row=row)
            if echo:
                entry["echo"] = {k: v for k, v in echo.items() if k not in ("kind", "profile", "row")}
            http = pick(records, kind="http", profile=profile, row=row)
            if http:
                entry["http"] = [{k: v for k, v in h.items() if k not in ("kind", "profile", "row")} for h in http]
            idle = one(records, kind="idle-streams", profile=profile, row=row)
            if idle:
                entry["idle_streams"] = {k: v for k, v in idle.items() if k not in ("kind", "profile", "row")}
            rss = one(records, kind="rss-after-http", profile=profile, row=row)
            if rss:
                entry["peak_rss_after_http_mib"] = {
                    "client": round(rss["client_hwm_kib"] / 1024, 1),
                    "server": round(rss["server_hwm_kib"] / 1024, 1),
                }
            stats = {r["side"]: r["stats"] for r in pick(records, kind="rawtun-stats", profile=profile)
                     if r.get("row", "rawtun") == row}
            if stats:
                entry["rawtun_stats"] = stats
            rows[row] = entry
        profiles[profile] = rows
    backend = [{k: v for k, v in h.items() if k not in ("kind", "profile", "row")}
               for h in pick(records, kind="http", profile="backend")]
    sweep = {}
    for r in pick(records, kind="loss"):
        sweep.setdefault(r["row"], []).append({"loss_pct": r["loss_pct"], "mbps": r.get("mbps"),
                                               **({"error": r["error"]} if "error" in r else {})})
    return {"meta": meta, "backend_alone_http": backend, "profiles": profiles, "loss_sweep": sweep}


def markdown(records, meta):
    m = meta
    out = [
        f"# rawtun benchmark — {m['timestamp']}",
        "",
        f"`{m['command']}` at {m['git']}; {m['nproc']} CPUs ({m['cpu']}), kernel {m['kernel']}, "
        f"kcptun {m['kcptun']}, {m['iperf3']}; {m['elapsed_s']} s in all"
        + (" (**--quick**: short runs, not for comparison)" if m["quick"] else "") + ".",
        "",
    ]
    for name, mode in sorted(m["links"].items()):
        warn = " **⚠ fallback link: no delay emulated, WAN figures not comparable**" if "FALLBACK" in mode else ""
        out.append(f"- link `{name}`: {mode}{warn}")
    out.append("")
    profiles = [p for p in ("clean", "wan") if pick(records, profile=p)]
    for profile in profiles:
        out += [
            f"## Profile `{profile}`",
            "",
            f"iperf3 Mbit/s received, {m['iperf_seconds']} s per run (↑ client→server, ↓ server→client); "
            "echo: 1-byte TCP round trips (ms); CPU: daemon user+system seconds per GiB moved by the "
            "iperf3 runs; RSS: peak (VmHWM) after them, MiB"
            + (
                " (rawtun rows: the daemons' peak since start, which includes the idle-streams step "
                "below when it ran)."
                if any(r.get("kind") == "idle-streams" and r.get("profile") == profile for r in records)
                else "."
            ),
            "",
            "| row | 1× ↑ | 1× ↓ | 8× ↑ | 8× ↓ | echo p50 | echo p99 | CPU s/GiB client / server | peak RSS client / server |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in measured(records):
            na = one(records, kind="na", profile=profile, row=row)
            it = {(r["streams"], r["dir"]): r for r in pick(records, kind="iperf", profile=profile, row=row)}
            if na and not it:
                out.append(f"| {row} | n/a: {na['reason']} |||||||| ")
                continue
            cells = [fmt_mbps(it.get(k)) for k in ((1, "up"), (1, "down"), (8, "up"), (8, "down"))]
            echo = one(records, kind="echo", profile=profile, row=row)
            if echo and "error" not in echo:
                cells += [fmt_ms(echo["p50_us"]), fmt_ms(echo["p99_us"]) + (f" (n={echo['count']})" if echo["count"] < 1000 else "")]
            else:
                cells += ["fail", "fail"]
            cpu = one(records, kind="cpu", profile=profile, row=row)
            if row == "direct":
                cells += ["kernel", "kernel"]
            elif cpu and cpu["bytes"] > 0:
                gib = cpu["bytes"] / GIB
                cells.append(f"{cpu['client_ticks'] / cpu['clk_tck'] / gib:.1f} / {cpu['server_ticks'] / cpu['clk_tck'] / gib:.1f}")
                cells.append(f"{cpu['client_hwm_kib'] / 1024:.0f} / {cpu['server_hwm_kib'] / 1024:.0f}")
            else:
                cells += ["—", "—"]
            out.append(f"| {row} | " + " | ".join(cells) + " |")
        out.append("")
    idle = [r for r in records if r.get("kind") == "idle-streams"]
    if idle:
        out += [
            "## Idle streams",
            "",
            "examples/loadgen idle-client through the echo forward on fresh daemons: every stream proven "
            "with a 1-byte round trip, then held open and idle; RSS (VmRSS) of each daemon before and "
            "while they are open, KiB per stream = the rise / streams open.",
            "",
            "| profile | row | open / failed | client KiB/stream | server KiB/stream | client / server RSS before → while, MiB |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in idle:
            n = max(r.get("open", 0), 1)
            c = (r["client_rss1_kib"] - r["client_rss0_kib"]) / n
            sv = (r["server_rss1_kib"] - r["server_rss0_kib"]) / n
            out.append(
                f"| {r['profile']} | {r['row']} | {r.get('open', 0)} / {r.get('failed', '?')} | {c:.1f} | {sv:.1f} | "
                f"{r['client_rss0_kib'] / 1024:.0f} → {r['client_rss1_kib'] / 1024:.0f} / "
                f"{r['server_rss0_kib'] / 1024:.0f} → {r['server_rss1_kib'] / 1024:.0f} |"
            )
        out.append("")
    http_rows = [("backend", "backend alone (server ns, loopback)")] + [
        (r, r) for r in ("direct", "rawtun", "rawtun-pcap", "rawtun-bypass") if r in measured(records)
    ]
    out += [
        "## HTTP through SOCKS5 (concurrency ramp)",
        "",
        f"examples/loadgen http-client, keep-alive connections, {m['http_seconds']} s per level, 5 s per-request "
        "timeout (the first request on a connection includes TCP connect + SOCKS5 CONNECT). `direct` is plain "
        "HTTP to the server across the link; `rawtun` goes through its SOCKS5 listener. kcptun has no SOCKS5: n/a.",
        "",
        "| profile | path | concurrency | req/s | success % | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for profile in ["backend"] + profiles:
        for row, label in http_rows:
            if (profile == "backend") != (row == "backend"):
                continue
            for h in pick(records, kind="http", profile=profile, row=row):
                if "error" in h:
                    out.append(f"| {profile} | {label} | {h['concurrency']} | fail | | | |")
                else:
                    out.append(f"| {profile} | {label} | {h['concurrency']} | {h['rps']:.0f} | {h['success_pct']:.2f} | "
                               f"{fmt_ms(h['p50_us'])} | {fmt_ms(h['p99_us'])} |")
    out.append("")
    sweep = pick(records, kind="loss")
    if sweep:
        losses = sorted({r["loss_pct"] for r in sweep})
        rows = [r for r in ("direct", "rawtun", "kcptun") if pick(sweep, row=r)]
        out += [
            "## Loss sweep",
            "",
            f"iperf3 1 stream client→server, {m['sweep_seconds']} s per point, link `sweep` ("
            + ("FALLBACK: no delay, 100 mbit" if "FALLBACK" in m["links"].get("sweep", "") else "50 ms RTT, 100 mbit")
            + "), Mbit/s. Plot: `loss.svg`.",
            "",
            "| loss % | " + " | ".join(rows) + " |",
            "|---:|" + "---:|" * len(rows),
        ]
        for loss in losses:
            out.append(f"| {loss} | " + " | ".join(fmt_mbps(one(sweep, row=r, loss_pct=loss)) for r in rows) + " |")
        out += ["", "![throughput against loss](loss.svg)", ""]
    return "\n".join(out)


def svg(records, meta):
    sweep = pick(records, kind="loss")
    colors = {"direct": "#1f77b4", "rawtun": "#d62728", "kcptun": "#2ca02c"}
    rtt = "NO delay (fallback link)" if "FALLBACK" in meta.get("links", {}).get("sweep", "") else "50 ms RTT"
    w, h, left, right, top, bottom = 640, 400, 60, 130, 40, 50
    pw, ph = w - left - right, h - top - bottom
    losses = sorted({r["loss_pct"] for r in sweep}) or [0, 1]
    xmax = max(losses) or 1
    ymax = max([r.get("mbps", 0) or 0 for r in sweep] + [1]) * 1.1
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 1e9) if ymax / s <= 8)

    def x(v):
        return left + pw * v / xmax

    def y(v):
        return top + ph * (1 - v / ymax)

    e = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
         'font-family="sans-serif" font-size="12">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{left + pw / 2}" y="20" text-anchor="middle" font-size="14">'
         f'iperf3 1 stream, {rtt}, 100 mbit link — throughput vs random loss</text>']
    v = 0
    while v <= ymax:
        e.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        e.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
        v += step
    for loss in losses:
        e.append(f'<line x1="{x(loss):.1f}" x2="{x(loss):.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>')
        e.append(f'<text x="{x(loss):.1f}" y="{top + ph + 16}" text-anchor="middle">{loss:g}</text>')
    e.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    e.append(f'<text x="{left + pw / 2}" y="{h - 12}" text-anchor="middle">random loss, % (each direction)</text>')
    e.append(f'<text transform="translate(16 {top + ph / 2}) rotate(-90)" text-anchor="middle">Mbit/s received</text>')
    for i, row in enumerate(r for r in colors if pick(sweep, row=r)):
        pts = [(p["loss_pct"], p.get("mbps", 0) or 0) for p in sorted(pick(sweep, row=row), key=lambda p: p["loss_pct"])]
        c = colors[row]
        e.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="'
                 + " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in pts) + '"/>')
        for a, b in pts:
            e.append(f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="3.5" fill="{c}"><title>{row}: {b:.1f} Mbit/s at {a:g}%</title></circle>')
        ly = top + 20 + 20 * i
        e.append(f'<line x1="{left + pw + 12}" x2="{left + pw + 36}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="2"/>')
        e.append(f'<text x="{left + pw + 42}" y="{ly + 4}">{row}</text>')
    if "FALLBACK" in meta.get("links", {}).get("sweep", ""):
        e.append(f'<text x="{left + 8}" y="{top + ph - 8}" fill="#d62728">fallback link: no delay emulated</text>')
    e.append("</svg>")
    return "\n".join(e) + "\n"


def main():
    out = Path(sys.argv[1])
    records, meta = load(out)
    (out / "results.json").write_text(json.dumps(group(records, meta), indent=1) + "\n")
    (out / "results.md").write_text(markdown(records, meta) + "\n")
    (out / "loss.svg").write_text(svg(records, meta))


if __name__ == "__main__":
    main()
