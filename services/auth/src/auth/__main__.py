"""`python -m auth [serve|migrate|create-admin]`: config -> logging -> command."""

from auth import app, bootstrap
from auth.config import AuthConfig
from kiln.common import cli


def main() -> None:
    """Entry point of the auth service."""
    cli.service_main(
        "auth",
        AuthConfig,
        app.serve,
        app.migrate,
        extra_commands={"create-admin": ("create an admin account", bootstrap.create_admin_main)},
    )


if __name__ == "__main__":
    main()
