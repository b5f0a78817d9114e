"""The benchmark harness still runs: `bench/run.py` end to end on its cheapest case."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"


@pytest.mark.timeout(120)
def test_floor_case_prints_a_table_and_writes_the_results_file(tmp_path: Path) -> None:
    """`run.py --cases 7 --runs 1 --quick` starts its own NATS and PostgreSQL, prints one
    table with both floor rows and writes a JSON file with the machine and every summary
    field other tools read."""
    output = tmp_path / "latest.json"
    result = subprocess.run(
        [sys.executable, str(RUN), "--cases", "7", "--runs", "1", "--quick",
         "--output", str(output)],
        capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "7 floor JetStream pub+consume" in result.stdout
    assert "7 floor PostgreSQL COPY" in result.stdout
    document = json.loads(output.read_text())
    assert document["machine"]["cpus"] >= 1
    rows = document["results"]
    assert [r["case"] for r in rows] == ["7 floor JetStream pub+consume", "7 floor PostgreSQL COPY"]
    for row in rows:
        assert row["runs"] == 1
        assert row["median"] > 0
        assert {"parameters", "p95", "min", "max", "unit"} <= row.keys()


def test_an_unknown_case_is_refused() -> None:
    """A case number the suite does not have stops the run before anything starts."""
    result = subprocess.run(
        [sys.executable, str(RUN), "--cases", "9"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown cases [9]" in result.stderr
