"""Named contexts: where the CLI connects and how, kept in a config file.

The file is `$KILN_CONFIG`, else `$XDG_CONFIG_HOME/kiln/config.yaml` (default
`~/.config/kiln/config.yaml`), written with mode 0600:

    current-context: prod
    contexts:
      prod: {target: kiln.example.com:443, auth-target: auth.example.com:443, ca: /etc/ca.pem}

Each connection setting is resolved flag > environment variable > context > default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kiln.cli.errors import CliError
from kiln.cli.session import DEFAULT_AUTH_TARGET, DEFAULT_TASKS_TARGET


@dataclasses.dataclass(frozen=True)
class Setting:
    """One connection setting: its key in a context, its variable, its flag and default."""

    key: str
    variable: str
    default: str | bool
    help: str

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. `--auth-target`."""
        return "--" + self.key

    @property
    def dest(self) -> str:
        """The argparse attribute name."""
        return self.key.replace("-", "_")

    @property
    def is_switch(self) -> bool:
        """Whether the setting is on/off rather than a value."""
        return isinstance(self.default, bool)


SETTINGS = (
    Setting("target", "KILN_TARGET", DEFAULT_TASKS_TARGET, "tasks service host:port"),
    Setting("auth-target", "KILN_AUTH_TARGET", DEFAULT_AUTH_TARGET, "auth service host:port"),
    Setting("tls", "KILN_TLS", False, "use TLS, verifying the server with the system's CAs"),
    Setting("ca", "KILN_CA", "", "use TLS, verifying the server with this PEM CA bundle"),
    Setting("cert", "KILN_CLIENT_CERT", "", "PEM client certificate for servers requiring mTLS"),
    Setting("key", "KILN_CLIENT_KEY", "", "PEM private key of --cert"),
    Setting(
        "insecure",
        "KILN_INSECURE",
        False,
        "use TLS but trust whatever certificate the server presents: encrypted, "
        "not authenticated; for test setups only",
    ),
    Setting(
        "server-name",
        "KILN_SERVER_NAME",
        "",
        "name to check the server certificate against instead of the target's host, "
        "e.g. behind kubectl port-forward",
    ),
)
_KEYS = {s.key for s in SETTINGS}


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The config file's path."""
    env = os.environ if env is None else env
    if explicit := env.get("KILN_CONFIG"):
        return Path(explicit)
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kiln" / "config.yaml"


@dataclasses.dataclass
class Config:
    """The parsed config file."""

    current_context: str = ""
    contexts: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Config:
        """The file's contents; an empty config when it does not exist."""
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            return cls()
        except (OSError, yaml.YAMLError) as error:
            raise CliError(f"cannot read config {path}: {error}") from None
        if not isinstance(data, dict) or not isinstance(data.get("contexts", {}), dict):
            raise CliError(f"config {path}: expected a mapping with `contexts:`")
        return cls(
            current_context=str(data.get("current-context") or ""),
            contexts={str(k): dict(v or {}) for k, v in (data.get("contexts") or {}).items()},
        )

    def save(self, path: Path) -> None:
        """Writes the file, readable by the user only (mode 0600 even if it existed)."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)
        data = {"current-context": self.current_context, "contexts": self.contexts}
        with os.fdopen(descriptor, "w") as handle:
            yaml.safe_dump(data, handle, sort_keys=True)

    def context(self, name: str) -> dict[str, Any]:
        """A context's settings by name; a clear error for an unknown one."""
        if name not in self.contexts:
            known = ", ".join(sorted(self.contexts))
            known = known or "none; add one with `kiln config set-context`"
            raise CliError(f"no context named {name!r} (known: {known})")
        return self.contexts[name]


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def resolve(
    flags: Mapping[str, Any], env: Mapping[str, str], config: Config, context_name: str = ""
) -> dict[str, Any]:
    """Every connection setting by its key, flag > environment > context > default.

    `flags` holds the values given on the command line (absent or None when not given);
    the context is `context_name` (from --context / KILN_CONTEXT), else the current one.
    """
    name = context_name or config.current_context
    context = config.context(name) if name else {}
    resolved: dict[str, Any] = {}
    for setting in SETTINGS:
        flag = flags.get(setting.dest)
        if flag is not None and flag != "":
            value: Any = flag
        elif setting.variable in env and env[setting.variable] != "":
            raw = env[setting.variable]
            value = _truthy(raw) if setting.is_switch else raw
        elif context.get(setting.key) not in (None, ""):
            value = context[setting.key]
            value = bool(value) if setting.is_switch else str(value)
        else:
            value = setting.default
        resolved[setting.key] = value
    return resolved


def set_context(config: Config, name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Creates or updates a context with the given settings (others are kept)."""
    unknown = set(values) - _KEYS
    if unknown:
        raise CliError(f"unknown context settings: {', '.join(sorted(unknown))}", 2)
    if not name.strip():
        raise CliError("a context needs a name", 2)
    context = config.contexts.setdefault(name, {})
    for key, value in values.items():
        if value is None:
            continue
        if value == "" or value is False:
            context.pop(key, None)
        else:
            context[key] = value
    return context
