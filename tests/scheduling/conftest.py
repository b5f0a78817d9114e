"""Fixtures of the scheduling scenarios: private servers per scenario, as in tests/faults."""

from faults.conftest import fault

__all__ = ["fault"]
