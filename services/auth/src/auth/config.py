"""Configuration of the auth service."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kiln.common import bus
from kiln.common.config import non_negative, positive, setting
from kiln.common.settings import DatabaseSettings, NatsSettings, ServerSettings, TokenSettings

# OWASP Password Storage Cheat Sheet, argon2id: at least 19 MiB of memory, 2 iterations and
# 1 degree of parallelism. The defaults below are exactly that floor.
OWASP_MIN_MEMORY_KIB = 19 * 1024
OWASP_MIN_TIME_COST = 2
OWASP_MIN_PARALLELISM = 1
DEFAULT_KEY_DIR = Path(".data/auth-keys")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthConfig(
    ServerSettings, DatabaseSettings, NatsSettings, TokenSettings, bus.ReplicationSettings
):
    """Every setting of the auth service."""

    grpc_port: int = setting(
        "GRPC_PORT", "gRPC port; 0 picks a free one.", 50051, check=non_negative
    )
    # Auth's requests are a few KiB at most.
    max_message_bytes: int = setting(
        "MAX_MESSAGE_BYTES",
        "Largest gRPC request message accepted; each service's default fits its API.",
        64 * 1024,
        check=positive,
    )

    access_token_ttl: float = setting(
        "AUTH_ACCESS_TOKEN_TTL_SECONDS",
        "Lifetime of an access token. Deactivation, demotion and Logout with all_sessions "
        "reach every service within seconds (the auth_accounts bucket), before it expires.",
        900.0,
        check=positive,
    )
    refresh_token_ttl: float = setting(
        "AUTH_REFRESH_TOKEN_TTL_SECONDS",
        "Lifetime of a refresh token; every rotation starts a new one.",
        30 * 24 * 3600.0,
        check=positive,
    )

    signing_key_files: tuple[Path, ...] = setting(
        "AUTH_SIGNING_KEY_FILES",
        "Comma-separated PEM files with Ed25519 keys. Private keys sign and verify; public "
        "keys only verify (a retired key kept until its tokens expire).",
        (),
    )
    signing_keys_pem: str = setting(
        "AUTH_SIGNING_KEYS",
        "PEM text of one or more Ed25519 keys (a secret), read like AUTH_SIGNING_KEY_FILES; "
        "a literal \\n counts as a line break.",
        "",
        secret=True,
    )
    signing_key_id: str = setting(
        "AUTH_SIGNING_KEY_ID",
        "The `kid` (RFC 7638 thumbprint, logged at start and listed by GetJwks) of the key "
        "that signs; empty means the first private key listed.",
        "",
    )
    key_dir: Path = setting(  # noqa: RUF009 - setting() builds a field; a Path is immutable
        "AUTH_KEY_DIR",
        "Where a development signing key is generated and kept (mode 0600) when no key is "
        "configured.",
        DEFAULT_KEY_DIR,
    )
    generate_key: bool = setting(
        "AUTH_GENERATE_KEY",
        "Generate a development key in AUTH_KEY_DIR when no key is configured; set false in "
        "production so a missing key stops the start.",
        True,
    )

    argon2_memory_kib: int = setting(
        "AUTH_ARGON2_MEMORY_KIB",
        "argon2id memory cost in KiB (OWASP minimum 19456).",
        OWASP_MIN_MEMORY_KIB,
        check=lambda v: None if v >= 8 else "must be at least 8",
    )
    argon2_time_cost: int = setting(
        "AUTH_ARGON2_TIME_COST",
        "argon2id iterations (OWASP minimum 2).",
        OWASP_MIN_TIME_COST,
        check=positive,
    )
    argon2_parallelism: int = setting(
        "AUTH_ARGON2_PARALLELISM",
        "argon2id lanes (OWASP minimum 1).",
        OWASP_MIN_PARALLELISM,
        check=positive,
    )

    login_max_failures_per_account: int = setting(
        "AUTH_LOGIN_MAX_FAILURES_PER_ACCOUNT",
        "Failed sign-ins for one email within the window before it is locked for a while.",
        5,
        check=positive,
    )
    login_max_failures_per_address: int = setting(
        "AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS",
        "Failed sign-ins from one client address within the window before it is locked.",
        50,
        check=positive,
    )
    login_failure_window: float = setting(
        "AUTH_LOGIN_FAILURE_WINDOW_SECONDS",
        "How long failed sign-ins are counted.",
        900.0,
        check=positive,
    )
    login_lockout: float = setting(
        "AUTH_LOGIN_LOCKOUT_SECONDS",
        "How long a locked email or address gets RESOURCE_EXHAUSTED.",
        300.0,
        check=positive,
    )

    self_registration: bool = setting(
        "AUTH_SELF_REGISTRATION",
        "Whether anyone may create an account with Register; when false, Register is refused "
        "(PERMISSION_DENIED) and admins create accounts with CreateUser.",
        True,
    )
    register_max_per_address: int = setting(
        "AUTH_REGISTER_MAX_PER_ADDRESS",
        "Register calls from one client address within AUTH_LOGIN_FAILURE_WINDOW_SECONDS "
        "before the address is refused (RESOURCE_EXHAUSTED) for AUTH_LOGIN_LOCKOUT_SECONDS.",
        20,
        check=positive,
    )
    register_max_concurrent_hashes: int = setting(
        "AUTH_REGISTER_MAX_CONCURRENT_HASHES",
        "Password hashes Register and CreateUser compute at once; the rest wait, so a burst "
        "of registrations leaves CPU for Login.",
        1,
        check=positive,
    )
    register_max_waiting: int = setting(
        "AUTH_REGISTER_MAX_WAITING",
        "Registrations that may wait for a hashing slot; past it Register is refused at once "
        "with RESOURCE_EXHAUSTED.",
        16,
        check=non_negative,
    )

    bootstrap_admin_email: str = setting(
        "AUTH_BOOTSTRAP_ADMIN_EMAIL",
        "If set, this admin is created at start unless the email is already registered.",
        "",
    )
    bootstrap_admin_password: str = setting(
        "AUTH_BOOTSTRAP_ADMIN_PASSWORD",
        "Password of the bootstrap admin (a secret); required with AUTH_BOOTSTRAP_ADMIN_EMAIL.",
        "",
        secret=True,
    )
    bootstrap_admin_name: str = setting(
        "AUTH_BOOTSTRAP_ADMIN_NAME", "Display name of the bootstrap admin.", "Administrator"
    )
    accounts_resync_interval: float = setting(
        "AUTH_ACCOUNTS_RESYNC_SECONDS",
        "How often the whole users table is compared with the auth_accounts bucket (the "
        "account states other services check tokens against) and differences rewritten, "
        "repairing a write lost while NATS was unreachable.",
        300.0,
        check=positive,
    )
    housekeeping_interval: float = setting(
        "AUTH_HOUSEKEEPING_INTERVAL_SECONDS",
        "How often expired refresh tokens and stale throttle counters are deleted.",
        600.0,
        check=positive,
    )
