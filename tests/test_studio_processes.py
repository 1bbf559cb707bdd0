"""`manage.py studio` on every core: several web processes on one port, one job worker, a
private Valkey carrying live events between them (studio/serve.py), and quiet disconnects."""

import asyncio
import http.client
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets

from tests.studio_process import REPO, START_TIMEOUT_S, serve_studio, studio_env, wait_until_healthy

PROCESSES = 2


def children(parent: int) -> dict[int, str]:
    """pid -> command line of `parent`'s live children."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text().rpartition(")")[2].split()
            command = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if int(stat[1]) == parent and stat[0] != "Z":
            found[int(entry.name)] = command.decode(errors="replace")
    return found


def web_processes(studio: subprocess.Popen) -> list[int]:
    return sorted(pid for pid, cmd in children(studio.pid).items() if "--serve-endpoint" in cmd)


def serving_process(*, client_port: int, candidates: list[int], timeout_s: float = 5) -> int:
    """Which of `candidates` holds the server side of the connection from `client_port` (a
    connection just made may wait a moment in the backlog before a process accepts it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == client_port:
                    inodes.add(fields[9])
        for pid in candidates:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return pid
        if time.monotonic() > deadline:
            raise AssertionError(f"no process holds the connection from port {client_port}")
        time.sleep(0.02)


def log_in(base: str) -> httpx.Cookies:
    with httpx.Client(base_url=base, timeout=10) as http:
        page = http.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        answer = http.post(
            "/accounts/login/",
            data={"username": "producer", "password": "drama-studio", "csrfmiddlewaretoken": token},
        )
        assert answer.status_code == 302
        return http.cookies


@pytest.fixture
def studio(tmp_path):
    env = studio_env(tmp_path) | {"STUDIO_WEB_PROCESSES": str(PROCESSES)}
    with serve_studio(tmp_path, env) as running:
        yield running


def test_the_web_processes_share_the_port_evenly_beside_one_worker_and_valkey(studio):
    base, process, log_path = studio
    started = children(process.pid)
    web = web_processes(process)

    assert len(web) == PROCESSES
    assert sum("studio_worker" in cmd for cmd in started.values()) == 1
    assert sum("valkey-server" in cmd for cmd in started.values()) == 1
    assert httpx.get(f"{base}/healthz", timeout=10).json() == {
        "status": "ok",
        "database": "ok",
        "worker": "ok",
        "workers": 1,  # the worker process, seen by its heartbeat row
        "channel_layer": "ok",
    }

    # Twenty browsers at once: each web process takes a share of the connections.
    connections = []
    port = int(base.rsplit(":", 1)[1])
    for _ in range(20):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/healthz")
        assert connection.getresponse().read()
        connections.append(connection)
    served_by = [
        serving_process(client_port=c.sock.getsockname()[1], candidates=web) for c in connections
    ]
    for connection in connections:
        connection.close()
    assert set(served_by) == set(web)
    assert "2 web processes and a job worker share the work." in log_path.read_text()


def test_a_page_on_one_web_process_hears_what_happened_on_the_other(studio):
    base, process, _ = studio
    port = int(base.rsplit(":", 1)[1])
    cookies = log_in(base)
    web = web_processes(process)
    cookie_header = "; ".join(f"{name}={value}" for name, value in cookies.items())

    async def scenario() -> str:
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws/dramas/1/live/",
            additional_headers={"Cookie": cookie_header, "Origin": base},
        ) as socket:
            snapshot = await asyncio.wait_for(socket.recv(), 20)
            assert "Paused" not in snapshot
            listening = serving_process(client_port=socket.local_address[1], candidates=web)
            # A pause sent to the other web process, on a connection that lands there.
            for _ in range(200):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.connect()
                other = serving_process(
                    client_port=connection.sock.getsockname()[1], candidates=web
                )
                if other != listening:
                    break
                connection.close()
            else:
                pytest.fail("every new connection went to the websocket's process")
            connection.request(
                "POST",
                "/dramas/1/queue/pause/",
                headers={
                    "Cookie": cookie_header,
                    "X-CSRFToken": cookies["csrftoken"],
                    "Origin": base,
                },
            )
            assert connection.getresponse().status in (200, 302)
            connection.close()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                message = await asyncio.wait_for(socket.recv(), deadline - time.monotonic())
                if "Paused" in message:
                    return message
            raise AssertionError("the pause never reached the page")

    assert 'id="queue-summary"' in asyncio.run(scenario())


def test_a_web_process_that_dies_is_replaced_and_the_port_keeps_answering(studio):
    base, process, log_path = studio
    victim = web_processes(process)[0]

    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        now = web_processes(process)
        if len(now) == PROCESSES and victim not in now:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no replacement web process:\n{log_path.read_text()}")
    wait_until_healthy(base, process, log_path)
    answers = [httpx.get(f"{base}/healthz", timeout=10).status_code for _ in range(20)]

    assert answers == [200] * 20
    assert re.search(
        r"The web-\d process exited \(status -9\); restarting it", log_path.read_text()
    )


def test_sigterm_stops_every_process_it_started(studio):
    _, process, log_path = studio
    started = list(children(process.pid))
    assert len(started) >= PROCESSES + 2

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=30) == 0
    # The supervisor's own pool helpers (it scored the demo's photos) exit when it does.
    deadline = time.monotonic() + 10
    while (alive := [pid for pid in started if Path(f"/proc/{pid}").exists()]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert alive == []
    assert "Drama Studio stopped." in log_path.read_text()


def test_one_web_process_serves_alone_with_the_embedded_worker(tmp_path):
    env = studio_env(tmp_path) | {"STUDIO_WEB_PROCESSES": "1"}
    with serve_studio(tmp_path, env) as (base, process, log_path):
        health = httpx.get(f"{base}/healthz", timeout=10).json()
        started = children(process.pid)

    assert health["worker"] == "ok" and health["workers"] == 1
    assert not any("--serve-endpoint" in cmd or "valkey" in cmd for cmd in started.values())
    assert "share the work" not in log_path.read_text()


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_a_bad_process_count_is_refused_before_anything_starts(tmp_path, value):
    result = subprocess.run(
        [sys.executable, "manage.py", "studio", "--port", "0", "--no-seed"],
        cwd=REPO,
        env=studio_env(tmp_path) | {"STUDIO_WEB_PROCESSES": value},
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )

    assert result.returncode == 1
    assert "STUDIO_WEB_PROCESSES must be a whole number of 1 or more" in result.stderr
    assert "Traceback" not in result.stderr


def test_clients_that_drop_their_requests_leave_one_info_line_each(studio):
    base, _, log_path = studio
    cookies = log_in(base)
    dropped = 0
    for attempt in range(30):
        try:
            httpx.get(f"{base}/dramas/1/", cookies=cookies, timeout=0.002 + 0.002 * attempt)
        except httpx.TimeoutException:
            dropped += 1
    assert httpx.get(f"{base}/dramas/1/", cookies=cookies, timeout=10).status_code == 200
    time.sleep(1.5)  # Daphne reaps finished requests every second
    log = log_path.read_text()

    assert dropped > 0
    assert "Traceback" not in log
    assert " ERROR " not in log
    assert "CurrentThreadExecutor" not in log
    # A dropped request is answered anyway (a 200 line) or noted as gone, never both; one
    # the client gave up on before Daphne read it leaves nothing (nothing was asked).
    gone = log.count("GET /dramas/1/: the client went away before the answer")
    answered = len(re.findall(r"GET /dramas/1/ 200 ", log))
    assert gone >= 1
    assert 31 - dropped <= answered and gone + answered <= 31


@pytest.mark.parametrize("processes", ["1", "2"])
def test_port_0_serves_on_a_free_port_and_says_which(tmp_path, processes):
    log_path = tmp_path / "studio.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "studio", "--port", "0", "--no-seed"],
            cwd=REPO,
            env=studio_env(tmp_path) | {"STUDIO_WEB_PROCESSES": processes},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (
            said := re.search(r"serving at http://127\.0\.0\.1:(\d+)/", log_path.read_text())
        ):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        port = int(said.group(1))
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
