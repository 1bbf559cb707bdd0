"""`manage.py studio` for real: a Daphne subprocess on a free port, spoken to over HTTP."""

import re
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from tests.studio_process import REPO, START_TIMEOUT_S, serve_studio, studio_env


@pytest.fixture
def studio(tmp_path):
    """A running studio: yields (base URL, process, path of its output)."""
    with serve_studio(tmp_path) as running:
        yield running


def test_it_serves_pages_static_files_and_stops_on_sigterm(studio):
    base, process, log_path = studio

    with httpx.Client(base_url=base, timeout=10) as http:
        health = http.get("/healthz").json()
        login_page = http.get("/accounts/login/")
        htmx = http.get("/static/django_htmx/htmx-2.min.js")
        css = http.get("/static/studio/studio.css")
        missing = http.get("/static/no-such-file.js")

    assert health == {
        "status": "ok",
        "database": "ok",
        "worker": "ok",
        "workers": 1,  # the embedded worker, also seen by its heartbeat row
        "channel_layer": "ok",
    }
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
