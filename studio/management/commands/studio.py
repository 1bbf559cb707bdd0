"""`manage.py studio`: the one-command studio (migrate, seed the demo, serve with Daphne).

Static files are served by wrapping the ASGI app in Django's ASGIStaticFilesHandler, which
serves from the staticfiles finders whatever DEBUG says: no collectstatic step. Daphne calls
`ready_callable` on its own event loop just before serving; the embedded job worker starts there
(DESIGN §4), so it shares the loop and the in-memory channel layer with the consumers. On
SIGTERM the worker gets its grace period before the reactor stops (a "before shutdown" trigger).
"""

import asyncio
import logging
import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

access_log = logging.getLogger("studio.access")


def log_request(protocol, action, details) -> None:
    """Daphne's action logger: one line per finished HTTP request."""
    if protocol != "http" or action != "complete":
        return
    level = logging.DEBUG if details["path"] == "/healthz" else logging.INFO
    access_log.log(
        level,
        "%s %s %s %.0f ms",
        details["method"],
        details["path"],
        details["status"],
        details["time_taken"] * 1000,
    )


class Command(BaseCommand):
    help = "Migrate, seed the demo drama and serve the studio (HTTP and websockets) with Daphne."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--port",
            type=int,
            # A string default goes through `type` too, so a bad $PORT gives a usage error.
            default=os.environ.get("PORT") or "8000",
            help="Port to listen on (default: $PORT, else 8000).",
        )
        parser.add_argument(
            "--host", default="127.0.0.1", help="Interface to listen on (default: 127.0.0.1)."
        )
        parser.add_argument(
            "--no-seed", action="store_true", help="Do not create the demo user and drama."
        )

    def handle(self, *args, port: int, host: str, no_seed: bool, verbosity: int, **options):
        # Imported here: daphne.server installs Twisted's asyncio reactor on import.
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from studio.asgi import application

        call_command("migrate", interactive=False, verbosity=max(0, verbosity - 1))
        if not no_seed:
            call_command("seed_demo", verbosity=verbosity)

        login = self.demo_login() if not no_seed else ""
        shown_host = "localhost" if host in ("0.0.0.0", "::") else host
        if ":" in shown_host:
            shown_host = f"[{shown_host}]"
        url = f"http://{shown_host}:{port}/"
        self.ready = False

        def on_ready() -> None:
            # Called just before Daphne serves, with its event loop current.
            self.ready = True
            if settings.STUDIO_EMBEDDED_WORKER:
                self.start_worker()
            self.stdout.write(self.style.SUCCESS(f"Drama Studio is serving at {url}"))
            if login:
                self.stdout.write(login)
            self.stdout.write("Quit with CONTROL-C.")

        Server(
            application=ASGIStaticFilesHandler(application),
            endpoints=build_endpoint_description_strings(host=host, port=port),
            signal_handlers=True,
            action_logger=log_request,
            ready_callable=on_ready,
            verbosity=verbosity,
        ).run()
        if not self.ready:
            raise CommandError(
                f"Could not listen on {host}:{port}. Is another server using the port? "
                "Choose another with --port or PORT=..."
            )
        self.stdout.write("Drama Studio stopped.")

    def start_worker(self) -> None:
        """Run the job worker as a task on Daphne's loop; stop it before the reactor stops."""
        from twisted.internet import defer, reactor

        from studio.jobs.worker import Worker

        worker = Worker(name="embedded")
        task = asyncio.get_event_loop().create_task(worker.run())

        async def stop() -> None:
            await worker.stop()
            await task

        reactor.addSystemEventTrigger(
            "before", "shutdown", lambda: defer.Deferred.fromFuture(asyncio.ensure_future(stop()))
        )

    def demo_login(self) -> str:
        """The login line to show, without claiming a password the user has since changed."""
        user = get_user_model().objects.filter(username=settings.DEMO_USERNAME).first()
        if user is None:
            return ""
        if user.check_password(settings.DEMO_PASSWORD):
            return f"Log in as {settings.DEMO_USERNAME} / {settings.DEMO_PASSWORD}"
        return f"Log in as {settings.DEMO_USERNAME} (with the password you set)"
