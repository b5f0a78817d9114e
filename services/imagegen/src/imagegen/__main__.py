"""`python -m imagegen [worker] [--queues Q1,Q2] [--concurrency N]`: config -> logging -> worker."""

import argparse

from imagegen import app
from imagegen.config import ImagegenConfig
from kiln.common import config, logging, metrics, runner


def main() -> None:
    """Entry point of an imagegen worker process; flags override WORKER_* settings."""
    parser = argparse.ArgumentParser(prog="python -m imagegen", description="Kiln imagegen worker.")
    parser.add_argument("command", nargs="?", default="worker", choices=["worker", "serve"])
    parser.add_argument("--queues", help="queues to serve, highest priority first (a,b)")
    parser.add_argument("--concurrency", type=int, help="jobs this process runs at once")
    args = parser.parse_args()
    queues = tuple(q.strip() for q in args.queues.split(",") if q.strip()) if args.queues else None
    settings = config.load_or_exit(ImagegenConfig)
    try:
        settings = settings.with_overrides(queues, args.concurrency)
    except ValueError as error:
        parser.error(str(error))
    logging.configure_logging("imagegen", settings.log_level, settings.log_format)
    metrics.set_build_info("imagegen")
    runner.run(app.serve(settings))


if __name__ == "__main__":
    main()
