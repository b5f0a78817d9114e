"""Fixtures of the scheduling scenarios: private servers per scenario, as in tests/faults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faults.harness import Fault

from kiln.common.testing import NatsServer, PostgresServer


@pytest.fixture
def fault(
    private_nats: NatsServer, private_postgres: PostgresServer, tmp_path: Path
) -> Iterator[Fault]:
    """Private servers plus a place for the scenario's Kiln; everything stops afterwards."""
    scenario = Fault(
        nats=private_nats,
        postgres=private_postgres,
        database_url=private_postgres.create_database("kiln"),
        data_dir=tmp_path,
    )
    try:
        yield scenario
    finally:
        scenario.close()
