"""Kiln's benchmark suite: `make bench` (or `python bench/run.py`).

Starts a private PostgreSQL, then for each case a fresh nats-server, database and the
services as real processes (auth, tasks, imagegen workers with the case's provider), runs
the case a warm-up plus `--runs` times, prints one table and writes
bench/results/latest.json. bench/README.md says what each case measures.

    python bench/run.py [--cases 1,2,...] [--runs N] [--quick] [--profile DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# bench/ is a folder of scripts, not an installed package: put the repository root on the
# path so `bench.benchlib` resolves the same way for `python bench/run.py` and for mypy.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import create, env, floor, grid, pipeline, progress, unary
from bench.benchlib.results import Result, machine, table, write_json
from kiln.common import logging
from kiln.common.testing import PostgresServer

RESULTS = Path(__file__).parent / "results" / "latest.json"
CASES = (1, 2, 3, 4, 5, 6, 7, 8)


def _plan(
    servers: env.Servers, args: argparse.Namespace, pipeline_rate: list[float]
) -> dict[int, Callable[[], list[Result]]]:
    """What each case runs, with the sizes and run counts of this invocation."""
    runs: int = args.runs
    quick: bool = args.quick
    # Cases whose single run takes tens of seconds run twice with --quick.
    long_runs = min(runs, 2) if quick else runs

    def case_2() -> list[Result]:
        subtasks = 2000 if quick else 10_000
        results = []
        for workers in (1, 2):
            measured = pipeline.throughput(servers, pipeline.instant(subtasks), workers, long_runs)
            results += measured
        pipeline_rate.append(measured[0].median)  # subtasks/s with 2 workers
        return results

    def case_3() -> list[Result]:
        subtasks = 20 if quick else 50
        results = []
        for workers in (1, 2):
            results += pipeline.throughput(
                servers, pipeline.procedural(subtasks), workers, long_runs
            )
        return results

    return {
        1: lambda: create.run(servers, runs),
        2: case_2,
        3: case_3,
        4: lambda: progress.run(servers, 100 if quick else 200, long_runs, quick),
        5: lambda: unary.run(servers, runs, 10 if quick else 40),
        6: lambda: pipeline.fairness(servers, long_runs),
        7: lambda: floor.measure(
            servers,
            2000 if quick else 10_000,
            runs,
            pipeline_rate[-1] if pipeline_rate else None,
        ),
        8: lambda: grid.run(servers, runs, 50 if quick else 200),
    }


def main(argv: list[str] | None = None) -> int:
    """Runs the chosen cases; returns the exit code."""
    parser = argparse.ArgumentParser(description="Kiln benchmarks (see bench/README.md).")
    parser.add_argument("--cases", default=",".join(map(str, CASES)), help="e.g. 1,2,7")
    parser.add_argument("--runs", type=int, default=5, help="runs per case after a warm-up")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, 2 long runs")
    parser.add_argument("--output", type=Path, default=RESULTS, help="the JSON results file")
    parser.add_argument("--profile", type=Path, help="run tasks and workers under cProfile")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for every process, after the case's own (repeatable)",
    )
    args = parser.parse_args(argv)
    cases = sorted({int(c) for c in args.cases.split(",") if c.strip()})
    if unknown := set(cases) - set(CASES):
        parser.error(f"unknown cases {sorted(unknown)}; known: {CASES}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    overrides = dict(item.split("=", 1) for item in args.set if "=" in item)
    if len(overrides) != len(args.set):
        parser.error("--set takes NAME=VALUE")
    logging.configure_logging("bench", "warning", "console")

    started = time.monotonic()
    results: list[Result] = []
    try:
        with (
            PostgresServer() as postgres,
            tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmp,
        ):
            servers = env.Servers(postgres, Path(tmp), args.profile, overrides)
            plan = _plan(servers, args, [])
            for case in cases:
                case_started = time.monotonic()
                print(f"case {case} ...", file=sys.stderr, flush=True)
                done = [
                    dataclasses.replace(r, parameters={**r.parameters, **overrides})
                    for r in plan[case]()
                ]
                results += done
                print(table(done), file=sys.stderr)
                seconds = time.monotonic() - case_started
                print(f"case {case} done in {seconds:.0f} s", file=sys.stderr, flush=True)
    finally:
        # Whatever finished is kept, also when a later case fails.
        if results:
            write_json(args.output, results)
    about = machine()
    print(table(results))
    print(
        f"\n{about['cpus']} CPUs ({about['cpu_model']}), Python {about['python']}; "
        f"{time.monotonic() - started:.0f} s in all; results in {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
