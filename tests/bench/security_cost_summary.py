#!/usr/bin/env python3
"""Medians of a security_cost.sh log, per part and set-up (docs/BENCHMARKS.md).

For each gRPC part (the 8-client load, one client at a time, the bare echo floor) and each set-up:
the median rate with its range, the median of the per-round ratios to the same round's plain
run, the median p50 and p99 latency (p50 also as the per-round ratio to plain) and the median
server CPU per call.

    security_cost_summary.py /tmp/security_cost.txt
"""
import collections
import re
import statistics
import sys

PARTS = {
    "== gRPC: ": "8 clients, qnetd",
    "== gRPC, one client": "1 client, qnetd",
    "== bare gRPC echo": "8 clients, bare gRPC echo",
}


def parse(lines):
    """{part: {(round, set-up): {rate, p50, p99, cpu}}} from the log's lines."""
    runs = collections.defaultdict(lambda: collections.defaultdict(dict))
    part = run = None
    for line in lines:
        if line.startswith("== "):
            part = next((name for prefix, name in PARTS.items() if line.startswith(prefix)), None)
            run = None
            continue
        heading = re.match(r"-- round (\d+) (\w+)", line)
        if heading:
            run = (int(heading.group(1)), heading.group(2))
            continue
        if part is None or run is None:
            continue
        fields = line.split()
        row = runs[part][run]
        if re.match(r"^(GetJob +\d|Echo \((plain|tls|mtls),)", line):
            row["rate"], row["p50"], row["p99"] = (float(f) for f in fields[-5:-2])
        elif line.startswith(("qnetd CPU per call", "echo server CPU per call")):
            row["cpu"] = float(fields[-3])
    return runs


def main():
    with open(sys.argv[1], encoding="utf-8") as log:
        runs = parse(log)
    missing = []
    for part, rows in runs.items():
        print(f"{part}: median (range) over {len({r for r, _ in rows})} rounds")
        setups = list(dict.fromkeys(setup for _, setup in rows))
        for setup in setups:
            rounds = [r for r, s in rows if s == setup and "rate" in rows[(r, s)]]
            if not rounds:
                missing.append(f"{part}, {setup}")
                continue
            got = [rows[(r, setup)] for r in rounds]
            plain = [rows.get((r, "plain"), {}) for r in rounds]

            def med(key, got=got):
                return statistics.median(g[key] for g in got if key in g)

            ratio = statistics.median(g["rate"] / p["rate"] for g, p in zip(got, plain) if p)
            p50 = statistics.median(g["p50"] / p["p50"] for g, p in zip(got, plain) if p)
            cpu = f"{med('cpu'):6.1f} us" if any("cpu" in g for g in got) else "-"
            print(
                f"  {setup:7s} {med('rate'):7.0f}/s ({min(g['rate'] for g in got):.0f} to "
                f"{max(g['rate'] for g in got):.0f}) {ratio:5.2f}x of plain | p50 "
                f"{med('p50'):.3f} ms ({p50:.2f}x) p99 {med('p99'):.3f} ms | server CPU {cpu}"
            )
    if missing:
        print(f"no measurement in the log for: {'; '.join(missing)}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
