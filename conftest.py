"""Root conftest: every test in the workspace gets the NATS/PostgreSQL harness fixtures."""

pytest_plugins = ["kiln.common.testing.fixtures"]
