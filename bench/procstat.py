"""Helpers shared by the benchmarks: CPU time from /proc, stopping children,
and the medians and number formats of their tables."""
from __future__ import annotations

import glob
import os
import statistics
import subprocess
from typing import Dict, List, Optional

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> Optional[float]:
    """CPU seconds (user + system) used so far by process `pid`; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def schedstat_cpu(pid: int) -> Optional[float]:
    """CPU seconds of process `pid` summed over its tasks' schedstat run
    times (ns resolution); None if /proc has no schedstat."""
    total = 0
    paths = glob.glob(f"/proc/{pid}/task/*/schedstat")
    if not paths:
        return None
    for path in paths:
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that just ended
    return total / 1e9


def stop_child(proc: "subprocess.Popen") -> None:
    """Stop a bench child: close its stdin (its cue to exit), then wait, then kill."""
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()


def medians(runs: Dict[str, List[dict]], metric: str, impls: List[str]) -> Dict[str, Optional[float]]:
    """impl -> the median of `metric` over its runs (None if no run has it)."""
    med: Dict[str, Optional[float]] = {}
    for impl in impls:
        values = [r[metric] for r in runs[impl] if metric in r]
        med[impl] = statistics.median(values) if values else None
    return med


def fmt(value: Optional[float]) -> str:
    """A table cell: thousands separated, one decimal below 100 (but whole numbers)."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:.1f}"
