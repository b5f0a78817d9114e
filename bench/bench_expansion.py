"""How long validating and expanding a task takes, by task size.

Run from the repository root: `.venv/bin/python bench/bench_expansion.py`. Prints the
median of 5 runs for tasks of 1, 100, 1,000 and 10,000 subtasks. Expansion of 10,000
subtasks is meant to stay well under 50 ms.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

from tasks import expansion, validation
from tasks import spec as task_spec

RUNS = 5
PROMPT = "a {style} photograph of a {animal} in a {place}, golden hour, 35 mm, {mood} light"
NEGATIVE = "blurry, low quality, {animal} out of frame"


def task_of(size: int) -> task_spec.TaskSpec:
    """A realistic task expanding to `size` subtasks: up to four variables, two zipped."""
    shapes = {1: (1, 1, 1), 100: (10, 10, 1), 1000: (10, 10, 10), 10_000: (25, 20, 20)}
    styles, animals, places = shapes[size]
    return task_spec.TaskSpec(
        task_name=f"bench {size}",
        prompt_template=PROMPT,
        negative_prompt=NEGATIVE,
        variables={
            "style": tuple(f"style {i}" for i in range(styles)),
            "animal": tuple(f"animal {i}" for i in range(animals)),
            "place": tuple(f"place {i}" for i in range(places)),
            "mood": tuple(f"mood {i}" for i in range(places)),
        },
        zip_groups=(("place", "mood"),),
        ratio="16:9",
    )


def median_ms(work: Callable[[], object]) -> float:
    """The median wall time of RUNS calls of `work`, in milliseconds."""
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(size: int, limits: task_spec.Limits) -> tuple[float, float, float]:
    """Median milliseconds to validate, expand, and expand with a fixed seed, a task of `size`."""
    spec = task_of(size)
    fixed = dataclasses.replace(spec, seed=42)
    assert validation.validate(spec, limits) == size
    assert len(expansion.expand(spec)) == size
    return (
        median_ms(lambda: validation.validate(spec, limits)),
        median_ms(lambda: expansion.expand(spec)),
        median_ms(lambda: expansion.expand(fixed)),
    )


def main() -> None:
    limits = task_spec.Limits()
    print(f"median of {RUNS} runs, milliseconds")
    print(f"{'subtasks':>9} {'validate':>9} {'expand':>8} {'expand (fixed seed)':>20}")
    for size in (1, 100, 1000, 10_000):
        validate_ms, expand_ms, fixed_ms = measure(size, limits)
        print(f"{size:>9} {validate_ms:>9.3f} {expand_ms:>8.3f} {fixed_ms:>20.3f}")


if __name__ == "__main__":
    main()
