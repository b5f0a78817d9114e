"""`python -m auth [serve|migrate]`: config -> logging -> command."""

from auth import app
from auth.config import AuthConfig
from kiln.common import cli


def main() -> None:
    """Entry point of the auth service."""
    cli.service_main("auth", AuthConfig, app.serve, app.migrate)


if __name__ == "__main__":
    main()
