"""Per-rule wall times of a finished Snakemake run, from its log (.snakemake/log/*.snakemake.log).

    python benchmarks/stage_times.py [LOG]     # default: the newest log; prints a Markdown table
"""

from __future__ import annotations

import re
import sys
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


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else max(Path(".snakemake/log").glob("*.log"), key=lambda p: p.stat().st_mtime)
    spans = job_spans(path.read_text(errors="replace"))
    per_rule = defaultdict(list)
    for rule, start, end in spans.values():
        per_rule[rule].append((end - start).total_seconds())
    first = min(start for _, start, _ in spans.values())
    last = max(end for _, _, end in spans.values())
    print(f"{path.name}: {len(spans)} jobs, {(last - first).total_seconds():.0f} s from first start to last finish\n")
    print("| rule | jobs | total job time (s) | mean per job (s) |\n|---|---|---|---|")
    for rule, times in sorted(per_rule.items(), key=lambda item: -sum(item[1])):
        print(f"| {rule} | {len(times)} | {sum(times):.0f} | {sum(times) / len(times):.1f} |")


if __name__ == "__main__":
    main()
