"""A real `manage.py studio` in a subprocess (Daphne, websockets, the embedded worker), for
tests that need the whole server: the command's own test and the browser journeys."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def studio_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PORT")}
    env.update(
        STUDIO_VAR_DIR=str(tmp_path / "var"),
        MEDIA_ROOT=str(tmp_path / "media"),
        DJANGO_SETTINGS_MODULE="studio.settings",
        PYTHONUNBUFFERED="1",
        # Several web processes, a worker process and Valkey between them, whatever the
        # machine's core count: the browser journeys run against the studio as `make run` is.
        STUDIO_WEB_PROCESSES="2",
    )
    return env


# Every service offline whatever the caller's environment says, and the fastest x264 preset,
# which keeps a short chapter's animatics to a few seconds each.
OFFLINE = dict.fromkeys(
    ("WRITER_BASE_URL", "VIDEO_BASE_URL", "SPEECH_BASE_URL", "LIPSYNC_BASE_URL", "IMAGE_BASE_URL"),
    "",
) | {"ANIMATIC_PRESET": "ultrafast", "EXPORT_X264_PRESET": "superfast"}


def offline_studio_env(tmp_path: Path) -> dict[str, str]:
    return studio_env(tmp_path) | OFFLINE


def wait_until_healthy(base: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"studio exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(
        f"studio did not answer /healthz within {START_TIMEOUT_S} s:\n{log_path.read_text()}"
    )


def wait_until_announced(base: str, process: subprocess.Popen, log_path: Path) -> None:
    """Until the studio says it serves: with several web processes the port answers as soon as
    one does, the line comes once every process (the job worker included) is up."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while f"Drama Studio is serving at {base}/" not in log_path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"studio never said it serves:\n{log_path.read_text()}")
        time.sleep(0.1)


@contextlib.contextmanager
def serve_studio(tmp_path: Path, env: dict[str, str] | None = None):
    """Start the studio (migrated and seeded) on a free port; yields (base URL, process, log)."""
    port = free_port()
    log_path = tmp_path / "studio.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "studio", "--port", str(port)],
            cwd=REPO,
            env=env or studio_env(tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, process, log_path)
        wait_until_announced(base, process, log_path)
        yield base, process, log_path
    finally:
        stop_studio(process)


def stop_studio(process: subprocess.Popen, *, timeout_s: float = 30) -> None:
    """SIGTERM, as a service manager stops it (the web processes, then the worker's grace
    period); SIGKILL if it is still running after `timeout_s`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
