"""`python -m auth [serve|migrate|create-admin]`: config -> logging -> command."""

import sys

from auth import app, bootstrap
from auth.config import AuthConfig
from kiln.common import cli


def main() -> None:
    """Entry point of the auth service."""
    if sys.argv[1:2] == ["create-admin"]:
        bootstrap.create_admin_main(sys.argv[2:])
    else:
        cli.service_main("auth", AuthConfig, app.serve, app.migrate)


if __name__ == "__main__":
    main()
