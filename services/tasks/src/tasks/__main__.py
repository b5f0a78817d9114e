"""`python -m tasks [serve|migrate]`: config -> logging -> command."""

from kiln.common import cli
from tasks import app
from tasks.config import TasksConfig


def main() -> None:
    """Entry point of the tasks service."""
    cli.service_main("tasks", TasksConfig, app.serve, app.migrate)


if __name__ == "__main__":
    main()
