"""Benchmark results: summary statistics, the machine they ran on, a table and a JSON file."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Result:
    """One case's numbers: a summary over `runs` repetitions (after a warm-up)."""

    case: str
    parameters: dict[str, Any]
    unit: str
    median: float
    p95: float
    min: float
    max: float
    runs: int
    target: str = ""
    note: str = ""

    @classmethod
    def of(
        cls,
        case: str,
        parameters: dict[str, Any],
        unit: str,
        samples: Sequence[float],
        *,
        target: str = "",
        note: str = "",
    ) -> Result:
        """Summarises raw samples."""
        ordered = sorted(samples)
        return cls(
            case=case,
            parameters=parameters,
            unit=unit,
            median=statistics.median(ordered),
            p95=percentile(ordered, 95),
            min=ordered[0],
            max=ordered[-1],
            runs=len(ordered),
            target=target,
            note=note,
        )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of already sorted samples."""
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
        "platform": platform.platform(), "load_average": list(os.getloadavg()),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip


def write_json(path: Path, results: Sequence[Result]) -> None:
    """Writes the results file other tools read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"machine": machine(), "results": [dataclasses.asdict(r) for r in results]}
    path.write_text(json.dumps(document, indent=2) + "\n")


def table(results: Sequence[Result]) -> str:
    """A fixed-width table of the results."""
    headers = ["case", "parameters", "median", "p95", "min", "max", "unit", "runs", "target"]
    rows = [
        [r.case, ", ".join(f"{k}={v}" for k, v in r.parameters.items()), _num(r.median),
         _num(r.p95), _num(r.min), _num(r.max), r.unit, str(r.runs), r.target]
        for r in results
    ]  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"
