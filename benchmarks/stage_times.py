"""Per-rule wall times of a finished Snakemake run, from its log (.snakemake/log/*.snakemake.log).

    python benchmarks/stage_times.py [LOG]     # default: the newest log; prints a Markdown table
    python benchmarks/stage_times.py LOG --out /tmp/stage-times   # also writes it to <out>/stage-times.md
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path


def job_spans(log: str) -> dict[int, tuple[str, datetime, datetime]]:
    """jobid -> (rule, start, end), read from the log's timestamped start and finish lines."""
    now, pending_rule, starts, spans = None, None, {}, {}
    for line in log.splitlines():
        if match := re.match(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$", line):
            now = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
        elif match := re.match(r"^(?:local)?rule (\w+):$", line):
            pending_rule = match.group(1)
        elif (match := re.match(r"^\s+jobid: (\d+)$", line)) and pending_rule:
            starts[int(match.group(1))] = (pending_rule, now)
            pending_rule = None
        elif match := re.match(r"^Finished jobid: (\d+)", line):
            rule, start = starts[int(match.group(1))]
            spans[int(match.group(1))] = (rule, start, now)
    return spans


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", nargs="?", type=Path, help="a Snakemake log (default: the newest under .snakemake/log/)")
    parser.add_argument("--out", type=Path, help="also write the table to <out>/stage-times.md")
    args = parser.parse_args(argv)
    path = args.log or max(Path(".snakemake/log").glob("*.log"), key=lambda p: p.stat().st_mtime)
    spans = job_spans(path.read_text(errors="replace"))
    per_rule = defaultdict(list)
    for rule, start, end in spans.values():
        per_rule[rule].append((end - start).total_seconds())
    first = min(start for _, start, _ in spans.values())
    last = max(end for _, _, end in spans.values())
    span = (last - first).total_seconds()
    summed = sum(sum(times) for times in per_rule.values())  # the default's budget is on this sum
    lines = [f"{path.name}: {len(spans)} jobs, {summed:.0f} s of summed job time, {span:.0f} s from first start "
             "to last finish\n",
             "| rule | jobs | total job time (s) | mean per job (s) |\n|---|---|---|---|"]
    for rule, times in sorted(per_rule.items(), key=lambda item: -sum(item[1])):
        lines.append(f"| {rule} | {len(times)} | {sum(times):.0f} | {sum(times) / len(times):.1f} |")
    print("\n".join(lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "stage-times.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
