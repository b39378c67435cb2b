#!/usr/bin/env python3
"""Side-by-side table of `train bench` and `pytorch_reference.py` results.

Reads the JSON lines both write (`--json`), takes the median training and
evaluation images/s of each
(implementation, model, batch, precision, threads) over repeated rounds, and
prints a Markdown table with the ratio of each of our rows to PyTorch's row for
the same model, batch, precision and thread count (files holding several thread
counts give a row per count, never one median across them).

    python3 benches/ratio.py results.jsonl [more.jsonl ...]
"""

import json
import statistics
import sys
from collections import defaultdict


def load(paths):
    """All result rows of the given JSON-lines files."""
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as file:
            rows.extend(json.loads(line) for line in file if line.strip())
    return rows


def summarise(rows):
    """Median images/s and GFLOP/s per (implementation, model, batch, precision, threads)."""
    groups = defaultdict(list)
    for row in rows:
        key = (
            row["implementation"],
            row["model"],
            row["batch_size"],
            row["precision"],
            row["threads"],
        )
        groups[key].append(row)
    summary = {}
    for key, members in groups.items():
        summary[key] = {
            "images_per_s": statistics.median(r["images_per_s"] for r in members),
            "gflops_per_s": statistics.median(r["gflops_per_s"] for r in members),
            # Rows written before evaluation was measured have no evaluation figure.
            "eval_images_per_s": statistics.median(
                r.get("eval_images_per_s", float("nan")) for r in members
            ),
            "peak_memory_mib": max(r["peak_memory_mib"] for r in members),
            "rounds": len(members),
            "device": members[0]["device"],
        }
    return summary


def table(summary):
    """Markdown lines: one per result, with the ratio to PyTorch where one exists."""
    reference = {
        key[1:]: value
        for key, value in summary.items()
        if key[0].startswith("pytorch")
    }
    lines = [
        "| implementation | model | batch | precision | threads | images/s | GFLOP/s "
        "| peak MiB | rounds | ours / PyTorch | eval images/s | eval ours / PyTorch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(summary, key=lambda k: (k[1], k[2], k[3], -k[4], k[0])):
        value = summary[key]
        torch = reference.get(key[1:])
        ratio = eval_ratio = "-"
        if torch and not key[0].startswith("pytorch"):
            ratio = f"{value['images_per_s'] / torch['images_per_s']:.2f}"
            eval_ratio = f"{value['eval_images_per_s'] / torch['eval_images_per_s']:.2f}"
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {key[4]} "
            f"| {value['images_per_s']:.1f} | {value['gflops_per_s']:.1f} "
            f"| {value['peak_memory_mib']:.0f} | {value['rounds']} | {ratio} "
            f"| {value['eval_images_per_s']:.1f} | {eval_ratio} |"
        )
    return lines


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: ratio.py RESULTS.jsonl [...]")
    rows = load(sys.argv[1:])
    if not rows:
        sys.exit("no results in " + ", ".join(sys.argv[1:]))
    print("\n".join(table(summarise(rows))))


if __name__ == "__main__":
    main()
