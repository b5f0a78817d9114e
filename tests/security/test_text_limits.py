"""The per-service text-limit tables (kiln.common.textlimits) name real string fields."""

from __future__ import annotations

import importlib

import pytest
from google.protobuf import descriptor_pool


@pytest.mark.parametrize(
    "table",
    ["tasks.validation", "auth.validation", "imagegen.generation"],
)
def test_service_tables_name_real_fields(table: str) -> None:
    """Every field a service's table names exists (a typo would silently fall back to the
    default limit)."""
    module = importlib.import_module(table)
    pool = descriptor_pool.Default()
    for name in module.TEXT_LIMITS.fields:
        field = pool.FindFieldByName(name)
        assert field.type == field.TYPE_STRING, name
