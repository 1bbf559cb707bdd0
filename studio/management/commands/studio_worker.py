"""`manage.py studio_worker`: a job worker on its own, for scale-out (DESIGN §4).

Run several per machine and on many machines against one PostgreSQL database (claims use
`FOR UPDATE SKIP LOCKED`) and set REDIS_URL, so live progress reaches the web processes.
SIGTERM or CONTROL-C stops claiming and gives running jobs the grace period to finish or reach a
checkpoint; the rest go back to the queue. A second signal ends the grace period at once.
"""

import argparse
import asyncio
import os
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from studio.jobs import registry
from studio.jobs.worker import Worker, config_from_settings


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


async def tell_when_visible(worker: Worker, *, ready_fd: int) -> None:
    try:
        await worker.visible.wait()
        os.write(ready_fd, b"1")
    finally:
        os.close(ready_fd)


class Command(BaseCommand):
    help = "Run a job worker: claim queued jobs and run up to --concurrency of them at once."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--concurrency",
            type=positive_int,
            default=None,
            help="Jobs run at once (default: $STUDIO_WORKER_CONCURRENCY, else 8).",
        )
        parser.add_argument("--lease", type=float, default=None, help="Lease seconds (30).")
        parser.add_argument(
            "--grace", type=float, default=None, help="Seconds running jobs get on stop (8)."
        )
        parser.add_argument("--name", default="studio_worker", help="Name shown in logs.")
        # Internal, for `manage.py studio`'s supervisor: one byte once other processes see us.
        parser.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)

    def handle(self, *args, concurrency, lease, grace, name, ready_fd, **options) -> None:
        config = config_from_settings(concurrency=concurrency, lease_s=lease, grace_s=grace)
        if config.lease_s <= 0:
            raise CommandError("--lease must be more than 0 seconds.")
        registry.load()
        worker = Worker(name=name, config=config)
        if not settings.REDIS_URL:
            self.stderr.write(
                "note: REDIS_URL is not set, so live progress from this worker reaches no "
                "browser (the in-memory channel layer is per process); pages show it on reload."
            )
        self.stdout.write(
            f"Job worker {worker.owner}: up to {config.concurrency} jobs at once; "
            f"kinds: {', '.join(registry.kinds()) or 'none'}. Stop with SIGTERM or CONTROL-C."
        )
        asyncio.run(self.serve(worker, ready_fd=ready_fd))
        self.stdout.write("Job worker stopped.")

    async def serve(self, worker: Worker, *, ready_fd: int | None) -> None:
        loop = asyncio.get_running_loop()
        if ready_fd is not None:
            self.telling = loop.create_task(tell_when_visible(worker, ready_fd=ready_fd))

        def on_signal() -> None:
            # The first signal starts the grace period, a second one ends it.
            worker.request_stop(grace_s=0 if worker.stopping else None)

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal)
        await worker.run()
