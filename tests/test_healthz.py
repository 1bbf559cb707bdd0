import asyncio
import time

import pytest
from django.db import OperationalError

from studio import health

pytestmark = pytest.mark.django_db


class BrokenLayer:
    """A channel layer whose backend is down."""

    async def new_channel(self, prefix="specific"):
        return f"{prefix}.broken!abc"

    async def send(self, channel, message):
        raise ConnectionError("Error connecting to redis://studio:hunter2@cache:6379/0")

    async def receive(self, channel):
        raise AssertionError("not reached")


class SilentLayer(BrokenLayer):
    """A channel layer that accepts messages and never delivers them."""

    async def send(self, channel, message):
        pass

    async def receive(self, channel):
        await asyncio.sleep(60)


@pytest.fixture(autouse=True)
def no_workers(monkeypatch):
    monkeypatch.setattr(health, "_workers", {})


def test_it_answers_ok_without_login(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "worker": "absent",
        "workers": 0,
        "channel_layer": "ok",
    }
    assert "no-cache" in response["Cache-Control"]


def test_it_answers_503_when_the_channel_layer_is_broken(client, monkeypatch):
    monkeypatch.setattr(health, "get_channel_layer", BrokenLayer)

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"] == "ok"
    assert body["channel_layer"].startswith("error: ConnectionError: Error connecting to")
    assert "hunter2" not in response.content.decode()
    assert "Traceback" not in response.content.decode()


def test_it_answers_503_when_the_database_fails(client, monkeypatch):
    class DownConnection:
        def cursor(self):
            raise OperationalError("connection to server at 10.0.0.5 port 5432 failed")

    monkeypatch.setattr(health, "connection", DownConnection())

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["status"] == "error"
    assert response.json()["database"] == (
        "error: OperationalError: connection to server at 10.0.0.5 port 5432 failed"
    )
    assert response.json()["channel_layer"] == "ok"


async def test_it_gives_up_on_a_channel_layer_that_never_answers(monkeypatch):
    monkeypatch.setattr(health, "get_channel_layer", SilentLayer)

    started = time.monotonic()
    result = await health.check_channel_layer(timeout=0.2)

    assert result == "error: no answer within 0.2 s"
    assert time.monotonic() - started < 2


def test_it_reports_a_worker_that_sends_heartbeats(client):
    health.worker_heartbeat("embedded")

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["worker"] == "ok"
    assert response.json()["status"] == "ok"


def test_it_reports_a_stale_worker_as_degraded_but_serving(client):
    health._workers["embedded"] = time.monotonic() - health.WORKER_STALE_AFTER_S - 1

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["worker"] == "stale: embedded"


def test_it_forgets_a_worker_that_stopped():
    health.worker_heartbeat("embedded")
    health.worker_gone("embedded")

    assert health.worker_state() == ("absent", 0)


def beat(owner: str, *, seconds_ago: float) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from studio.jobs.models import WorkerBeat

    at = timezone.now() - timedelta(seconds=seconds_ago)
    WorkerBeat.objects.create(owner=owner, name="w", concurrency=8, started_at=at, beat_at=at)


def test_it_sees_workers_of_other_processes_by_their_heartbeats(client):
    beat("studio_worker@a:1", seconds_ago=2)
    beat("studio_worker@b:2", seconds_ago=3)
    beat("studio_worker@c:3", seconds_ago=health.WORKER_STALE_AFTER_S + 60)  # killed

    body = client.get("/healthz").json()

    assert body["status"] == "ok" and body["worker"] == "ok" and body["workers"] == 2


def test_it_reports_degraded_when_every_other_worker_stopped_beating(client):
    beat("studio_worker@a:1", seconds_ago=health.WORKER_STALE_AFTER_S + 12)

    response = client.get("/healthz")

    assert response.status_code == 200  # the studio serves; jobs wait
    body = response.json()
    assert body["status"] == "degraded" and body["workers"] == 0
    seconds = int(body["worker"].removeprefix("stale: no worker heartbeat for ").split()[0])
    assert 42 <= seconds < 50, body["worker"]


def test_it_masks_credentials_and_shortens_error_messages():
    error = ValueError("cannot reach postgres://admin:s3cret@db/studio " + "x" * 300)

    text = health.describe_error(error)

    assert "s3cret" not in text
    assert text.startswith("error: ValueError: cannot reach postgres://admin:***@db/studio")
    assert len(text) < 200


def test_it_refuses_post(client):
    assert client.post("/healthz").status_code == 405
