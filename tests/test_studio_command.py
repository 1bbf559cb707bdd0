"""`manage.py studio` for real: a Daphne subprocess on a free port, spoken to over HTTP."""

import os
import re
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
    )
    return env


@pytest.fixture
def studio(tmp_path):
    """A running studio: yields (base URL, process, path of its output)."""
    port = free_port()
    log_path = tmp_path / "studio.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "studio", "--port", str(port)],
            cwd=REPO,
            env=studio_env(tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, process, log_path)
        yield base, process, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


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


def test_it_serves_pages_static_files_and_stops_on_sigterm(studio):
    base, process, log_path = studio

    with httpx.Client(base_url=base, timeout=10) as http:
        health = http.get("/healthz").json()
        login_page = http.get("/accounts/login/")
        htmx = http.get("/static/django_htmx/htmx-2.min.js")
        css = http.get("/static/studio/studio.css")
        missing = http.get("/static/no-such-file.js")

    assert health == {"status": "ok", "database": "ok", "worker": "ok", "channel_layer": "ok"}
    assert login_page.status_code == 200
    assert 'name="password"' in login_page.text
    assert htmx.status_code == 200
    assert "javascript" in htmx.headers["content-type"]
    assert "htmx" in htmx.text[:2000]
    assert css.status_code == 200
    assert missing.status_code == 404

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    output = log_path.read_text()
    assert f"Drama Studio is serving at {base}/" in output
    assert "Log in as producer / drama-studio" in output


def test_it_logs_the_demo_producer_in(studio):
    base, _, _ = studio

    with httpx.Client(base_url=base, timeout=10) as http:
        page = http.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = http.post(
            "/accounts/login/",
            data={
                "username": "producer",
                "password": "drama-studio",
                "csrfmiddlewaretoken": token,
            },
        )

    assert response.status_code == 302
    assert response.headers["location"] == "/"
    assert "sessionid" in response.cookies


def test_it_explains_when_the_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "studio", "--port", str(port), "--no-seed"],
            cwd=REPO,
            env=studio_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )

    assert result.returncode == 1
    assert f"Could not listen on 127.0.0.1:{port}" in result.stderr
