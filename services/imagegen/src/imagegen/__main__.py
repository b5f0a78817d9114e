"""`python -m imagegen [serve]`: config -> logging -> worker process."""

from imagegen import app
from imagegen.config import ImagegenConfig
from kiln.common import cli


def main() -> None:
    """Entry point of an imagegen worker process."""
    cli.service_main("imagegen", ImagegenConfig, app.serve)


if __name__ == "__main__":
    main()
