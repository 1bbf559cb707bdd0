"""`manage.py studio`: the one-command studio (migrate, seed the demo, serve with Daphne).

Static files are served by wrapping the ASGI app in Django's ASGIStaticFilesHandler, which
serves from the staticfiles finders whatever DEBUG says: no collectstatic step. Daphne calls
`ready_callable` on its own event loop just before serving; the embedded job worker starts there
(DESIGN §4), so it shares the loop and the in-memory channel layer with the consumers. On
SIGTERM the worker gets its grace period before the reactor stops (a "before shutdown" trigger).

With several web processes (`STUDIO_WEB_PROCESSES`, default the core count; studio/serve.py),
this process binds the socket, starts the web processes (this command again, with
`--serve-endpoint`) and one `studio_worker`, and supervises them; with one, it serves itself.
"""

import argparse
import asyncio
import logging
import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from studio import serve
from studio.disconnects import QuietDisconnects

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
        parser.add_argument(
            "--processes",
            type=int,
            default=None,
            help="Web processes (default: $STUDIO_WEB_PROCESSES, else the number of cores).",
        )
        # Internal, for the web processes the supervisor starts: serve on an inherited socket.
        parser.add_argument("--serve-endpoint", default="", help=argparse.SUPPRESS)
        parser.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)

    def handle(
        self,
        *args,
        port: int,
        host: str,
        no_seed: bool,
        processes: int | None,
        serve_endpoint: str,
        ready_fd: int | None,
        verbosity: int,
        **options,
    ):
        if serve_endpoint:
            self.serve_endpoint(serve_endpoint, ready_fd=ready_fd, verbosity=verbosity)
            return
        try:
            processes = serve.web_process_count(None if processes is None else str(processes))
        except ValueError as error:
            raise CommandError(str(error)) from error

        call_command("migrate", interactive=False, verbosity=max(0, verbosity - 1))
        if not no_seed:
            call_command("seed_demo", verbosity=verbosity)

        login = self.demo_login() if not no_seed else ""
        shown_host = "localhost" if host in ("0.0.0.0", "::") else host
        if ":" in shown_host:
            shown_host = f"[{shown_host}]"
        self.ready = False

        def announce(bound_port: int) -> None:
            # The port bound (`--port 0` asks for any free one).
            url = f"http://{shown_host}:{bound_port}/"
            self.stdout.write(self.style.SUCCESS(f"Drama Studio is serving at {url}"))
            if login:
                self.stdout.write(login)
            self.stdout.write("Quit with CONTROL-C.")

        layer = serve.cross_process_layer() if processes > 1 else ""
        if processes > 1 and not layer:
            self.stderr.write(
                "note: no Valkey server for this platform and no REDIS_URL, so the studio "
                "serves from one process."
            )
        elif layer and ":" in host:
            # Twisted adopts inherited sockets as IPv4 only (studio/serve.py).
            self.stderr.write("note: on an IPv6 address the studio serves from one process.")
            layer = ""
        if layer:
            self.serve_processes(
                host=host, port=port, processes=processes, verbosity=verbosity, announce=announce
            )
            return

        def on_ready() -> None:
            # Called just before Daphne serves, with its event loop current.
            self.ready = True
            if settings.STUDIO_EMBEDDED_WORKER:
                self.start_worker()
            bound = [address[1] for address in self.server.listening_addresses]
            announce(bound[0] if bound else port)

        from daphne.endpoints import build_endpoint_description_strings

        self.daphne(
            endpoints=build_endpoint_description_strings(host=host, port=port),
            on_ready=on_ready,
            verbosity=verbosity,
        )
        if not self.ready:
            raise CommandError(
                f"Could not listen on {host}:{port}. Is another server using the port? "
                "Choose another with --port or PORT=..."
            )
        self.stdout.write("Drama Studio stopped.")

    def serve_processes(self, *, host: str, port: int, processes: int, verbosity: int, announce):
        """Supervise `processes` web processes and a job worker (studio/serve.py)."""
        from studio.cpu import shutdown_cpu_pool

        # Seeding may have scored the demo's photos here; the children score from now on.
        shutdown_cpu_pool()
        supervisor = serve.Supervisor(
            host=host,
            port=port,
            web_processes=processes,
            worker=settings.STUDIO_EMBEDDED_WORKER,
            worker_grace_s=settings.STUDIO_WORKER["grace_s"],
            verbosity=verbosity,
        )

        def on_ready() -> None:
            announce(supervisor.port)
            what = "a job worker" if settings.STUDIO_EMBEDDED_WORKER else "no job worker"
            self.stdout.write(f"{processes} web processes and {what} share the work.")

        try:
            status = supervisor.run(on_ready=on_ready)
        except serve.PortUnavailable as error:
            raise CommandError(
                f"Could not listen on {host}:{port} ({error}). Is another server "
                "using the port? Choose another with --port or PORT=..."
            ) from error
        except RuntimeError as error:  # the private Valkey did not start (its log says why)
            raise CommandError(
                f"{error}\nSet STUDIO_WEB_PROCESSES=1 to serve from one process meanwhile."
            ) from error
        if status:
            raise CommandError("A studio process kept crashing; the studio stopped.")
        self.stdout.write("Drama Studio stopped.")

    def serve_endpoint(self, endpoint: str, *, ready_fd: int | None, verbosity: int) -> None:
        """One of the supervisor's web processes: Daphne on the inherited socket."""

        def on_ready() -> None:
            if ready_fd is not None:
                os.write(ready_fd, b"1")
                os.close(ready_fd)

        self.daphne(endpoints=[endpoint], on_ready=on_ready, verbosity=verbosity)

    def daphne(self, *, endpoints: list[str], on_ready, verbosity: int) -> None:
        # Imported here: daphne.server installs Twisted's asyncio reactor on import.
        from daphne.server import Server

        from studio.asgi import application

        self.server = Server(
            application=QuietDisconnects(ASGIStaticFilesHandler(application)),
            endpoints=endpoints,
            signal_handlers=True,
            action_logger=log_request,
            ready_callable=on_ready,
            verbosity=verbosity,
        )
        self.server.run()

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
