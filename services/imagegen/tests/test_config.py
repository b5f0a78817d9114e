"""Worker configuration: per-queue defaults and command-line overrides."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from imagegen.config import ImagegenConfig
from kiln.common import config


def _load(**env: str) -> ImagegenConfig:
    return config.load(ImagegenConfig, environ=env, env_file=None)


def test_concurrency_defaults_per_first_queue() -> None:
    """Without WORKER_CONCURRENCY, a worker takes its first queue's default concurrency."""
    assert _load(WORKER_QUEUES="lumina").concurrency == 1
    assert _load(WORKER_QUEUES="standard", IMAGEGEN_CONCURRENCY_STANDARD="6").concurrency == 6
    assert _load(WORKER_QUEUES="standard", WORKER_CONCURRENCY="3").concurrency == 3


def test_overrides_from_the_command_line() -> None:
    """--queues and --concurrency replace the settings; bad values name the flag."""
    settings = _load().with_overrides(("lumina",), 4)
    assert (settings.worker_queues, settings.concurrency) == (("lumina",), 4)
    with pytest.raises(ValueError, match="--queues"):
        _load().with_overrides(("nope",), None)
    with pytest.raises(ValueError, match="--concurrency"):
        _load().with_overrides(None, 0)


def test_provider_options_must_be_a_json_object() -> None:
    """Provider options are parsed as a JSON object; anything else fails naming the variable."""
    settings = _load(IMAGEGEN_PROVIDER_OPTIONS_LUMINA='{"step_delay": 0.1}')
    assert settings.provider_options("lumina") == {"step_delay": 0.1}
    with pytest.raises(config.ConfigError, match="IMAGEGEN_PROVIDER_OPTIONS_STANDARD"):
        _load(IMAGEGEN_PROVIDER_OPTIONS_STANDARD="[1, 2]")
    with pytest.raises(config.ConfigError, match="IMAGEGEN_PROVIDER_LUMINA"):
        _load(IMAGEGEN_PROVIDER_LUMINA="gpu9000")


def test_cli_rejects_an_unknown_queue() -> None:
    """`python -m imagegen worker --queues bogus` exits 2 before connecting to anything."""
    result = subprocess.run(
        [sys.executable, "-m", "imagegen", "worker", "--queues", "bogus"],
        env={**os.environ, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--queues" in result.stderr


def test_bad_provider_option_stops_the_worker_at_start(nats_url: str) -> None:
    """A misspelt provider option ends the process with exit code 2 and names the option."""
    result = subprocess.run(
        [sys.executable, "-m", "imagegen", "worker", "--queues", "standard"],
        env={
            **os.environ,
            "LOG_FORMAT": "json",
            "NATS_URL": nats_url,
            "GRPC_PORT": "0",
            "METRICS_PORT": "-1",
            "IMAGEGEN_PROVIDER_OPTIONS_STANDARD": '{"step_dealy": 1}',
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "step_dealy" in result.stdout + result.stderr


def test_retired_time_limit_stops_the_worker_naming_the_shared_setting() -> None:
    """IMAGEGEN_TIME_LIMIT_SECONDS, replaced by the bus-wide JOB_TIME_LIMIT_SECONDS, ends the
    process with exit code 2 before it connects, naming both variables."""
    result = subprocess.run(
        [sys.executable, "-m", "imagegen", "worker", "--queues", "standard"],
        env={**os.environ, "LOG_FORMAT": "json", "IMAGEGEN_TIME_LIMIT_SECONDS": "600"},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "IMAGEGEN_TIME_LIMIT_SECONDS" in result.stderr
    assert "JOB_TIME_LIMIT_SECONDS" in result.stderr
