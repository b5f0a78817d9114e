"""Config loading: types, defaults, `.env` files, and errors that name the variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kiln.common import config
from kiln.common.bus import BusSettings
from kiln.common.config import ConfigError, non_negative, positive, setting
from kiln.common.settings import DatabaseSettings, ServerSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sample(ServerSettings, DatabaseSettings):
    ratio: float = setting("SAMPLE_RATIO", "A ratio.", 0.5, check=positive)
    names: tuple[str, ...] = setting("SAMPLE_NAMES", "Some names.", ("a", "b"))
    enabled: bool = setting("SAMPLE_ENABLED", "A flag.", False)
    limit: int = setting(("SAMPLE_LIMIT", "LIMIT"), "A limit.", 3, check=non_negative)


def test_defaults_and_types() -> None:
    """Unset variables take their defaults; set ones are converted to the field's type."""
    loaded = config.load(
        Sample,
        {
            "DATABASE_URL": "postgresql://x/y",
            "SAMPLE_RATIO": "2.5",
            "SAMPLE_NAMES": "x, y,,z",
            "SAMPLE_ENABLED": "yes",
            "GRPC_PORT": "0",
        },
        env_file=None,
    )
    assert loaded.ratio == 2.5
    assert loaded.names == ("x", "y", "z")
    assert loaded.enabled is True
    assert loaded.grpc_port == 0
    assert loaded.limit == 3
    assert loaded.log_level == "info"


def test_missing_required_value_names_the_variable() -> None:
    """A required setting that is not set stops the load with its variable's name."""
    with pytest.raises(ConfigError) as caught:
        config.load(Sample, {}, env_file=None)
    assert caught.value.variable == "DATABASE_URL"
    assert "required" in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("GRPC_PORT", "eighty", "whole number"),
        ("SAMPLE_RATIO", "-1", "greater than 0"),
        ("SAMPLE_ENABLED", "maybe", "true or false"),
        ("LOG_LEVEL", "loud", "one of"),
        ("LIMIT", "-4", "0 or more"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str, problem: str) -> None:
    """A malformed value is refused with the variable's name and what is wrong."""
    with pytest.raises(ConfigError) as caught:
        config.load(Sample, {"DATABASE_URL": "postgresql://x/y", variable: value}, env_file=None)
    assert caught.value.variable == variable
    assert problem in caught.value.problem
    assert value in str(caught.value) or problem in str(caught.value)


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    """`.env` supplies values; the real environment overrides them."""
    env_file = tmp_path / ".env"
    env_file.write_text("DATABASE_URL=postgresql://from/file\nSAMPLE_LIMIT=7\nGRPC_PORT=1\n")
    loaded = config.load(Sample, {"GRPC_PORT": "2"}, env_file=env_file)
    assert loaded.database_url == "postgresql://from/file"
    assert loaded.limit == 7
    assert loaded.grpc_port == 2


def test_fallback_variable_is_used() -> None:
    """A setting with several names takes the first one that is set."""
    loaded = config.load(Sample, {"DATABASE_URL": "postgresql://x/y", "LIMIT": "9"}, env_file=None)
    assert loaded.limit == 9


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("TASKS_JOB_TIME_LIMIT_SECONDS", "JOB_TIME_LIMIT_SECONDS"),
        ("IMAGEGEN_TIME_LIMIT_SECONDS", "JOB_TIME_LIMIT_SECONDS"),
        ("TASKS_JOB_AGE_LIMIT_SECONDS", "JOB_MAX_AGE_SECONDS"),
        ("IMAGEGEN_AGE_LIMIT_SECONDS", "JOB_MAX_AGE_SECONDS"),
    ],
)
def test_retired_variable_stops_loading_and_names_its_replacement(old: str, new: str) -> None:
    """A per-service job limit replaced by a shared bus setting is refused when still set,
    naming the variable to set instead, rather than being silently ignored."""
    with pytest.raises(ConfigError) as caught:
        config.load(BusSettings, {old: "600"}, env_file=None)
    assert caught.value.variable == old
    assert new in str(caught.value)


def test_shared_job_limits_are_read_once_for_both_services() -> None:
    """JOB_TIME_LIMIT_SECONDS and JOB_MAX_AGE_SECONDS are bus settings, so the tasks service
    and the workers read the same values."""
    loaded = config.load(
        BusSettings, {"JOB_TIME_LIMIT_SECONDS": "42", "JOB_MAX_AGE_SECONDS": "7"}, env_file=None
    )
    assert (loaded.job_time_limit, loaded.job_max_age) == (42.0, 7.0)


def test_describe_hides_secrets() -> None:
    """The documentation table never shows a secret's default."""
    rows = {name: (default, meaning) for name, default, meaning in config.describe(Sample)}
    assert rows["DATABASE_URL"][0] == "(required)"
    assert rows["SAMPLE_LIMIT"][1].endswith("Falls back to LIMIT.")
    assert rows["SAMPLE_NAMES"][0] == "a,b"


def test_load_or_exit_prints_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process entry point exits with status 2 and the variable's name on stderr."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(Path(__file__).parent)
    with pytest.raises(SystemExit) as caught:
        config.load_or_exit(Sample)
    assert caught.value.code == 2
    assert "DATABASE_URL" in capsys.readouterr().err
