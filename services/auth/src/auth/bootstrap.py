"""`python -m auth create-admin --email ...`: the first admin, from the command line.

The password comes from a prompt (asked twice) on a terminal, or from the first line of
standard input otherwise, so it never appears in the process list or shell history.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import ed25519

from auth import account_usecases, keys
from auth.app import MIGRATIONS, SCHEMA
from auth.config import AuthConfig
from auth.core import build_core
from kiln.common import config, db, errors, logging, migrations, runner
from kiln.common.principal import Role

EXIT_INVALID = 2
EXIT_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m auth create-admin",
        description="Create an admin account. The password is prompted for on a terminal, "
        "else read from the first line of standard input.",
    )
    parser.add_argument("--email", required=True, help="the admin's email address")
    parser.add_argument("--display-name", default="Administrator", help="the name shown")
    return parser


def read_password() -> str:
    """The password from a prompt (confirmed) or the first line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != first:
            print("the passwords differ", file=sys.stderr)
            raise SystemExit(EXIT_INVALID)
        return first
    return sys.stdin.readline().rstrip("\r\n")


async def create_admin(settings: AuthConfig, email: str, password: str, name: str) -> str:
    """Creates the admin and returns its id; raises typed errors for bad input or a taken
    email, SchemaOutdatedError when the database is not migrated."""
    engine = db.create_engine(settings, application_name="auth-cli")
    try:
        await migrations.ensure_current(engine, MIGRATIONS, SCHEMA, "auth")
        # No token is issued here: an in-memory key stands in for the signing key ring, so
        # the command needs no access to the real keys.
        key = ed25519.Ed25519PrivateKey.generate()
        ring = keys.KeyRing("cli", key, {"cli": key.public_key()})
        core = build_core(settings, engine, ring)
        user = await account_usecases.create_account(core, email, password, name, Role.ADMIN)
        return str(user.id)
    finally:
        await engine.dispose()


def create_admin_main(argv: Sequence[str]) -> None:
    """Runs the command; exits 0 on success, 1 when it failed, 2 for bad input."""
    args = _parser().parse_args(argv)
    settings = config.load_or_exit(AuthConfig)
    logging.configure_logging("auth", settings.log_level, settings.log_format)
    password = read_password()
    outcome: list[str] = []

    async def run() -> None:
        outcome.append(await create_admin(settings, args.email, password, args.display_name))

    try:
        runner.run(run())
    except errors.InvalidArgument as exc:
        for violation in exc.violations:
            print(f"{violation.field}: {violation.description}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID) from None
    except (errors.AlreadyExists, migrations.SchemaOutdatedError) as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None
    print(f"admin created: {outcome[0]}")
