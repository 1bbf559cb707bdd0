"""Security proofs (#9): who may open every URL and websocket route, CSRF on every POST route,
`check --deploy` with the production environment, and API keys that never leak."""

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from dramas import generation
from dramas.models import Role
from studio.asgi import application
from studio.jobs.models import Job, JobStatus
from studio.jobs.worker import Worker, WorkerConfig
from studio.models import UsageRecord
from studio.providers import registry
from studio.providers.base import VideoRequest
from studio.providers.ledger import DbLedger
from tests.conftest import login
from tests.factories import (
    PASSWORD,
    add_member,
    create_chapter,
    create_character,
    create_drama,
    create_user,
)
from tests.providers_support import running_sim, video_for
from tests.test_permissions import _snapshot, drama_url_names, url_for, world  # noqa: F401

BASE_DIR = Path(__file__).resolve().parent.parent
ROLES = ["anonymous", "non_member", "viewer", "editor", "producer", "staff"]


@pytest.fixture
def people(world):  # noqa: F811
    staff = create_user(username="staffer", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_usagerecord"))
    return {
        "anonymous": None,
        "non_member": create_user(username="outsider"),
        "viewer": world["viewer"],
        "editor": world["editor"],
        "producer": world["producer"],
        "staff": staff,
    }


def client_for(user) -> Client:
    return Client() if user is None else login(user)


# --- (a) Every URL outside the drama tree, for every role ---------------------------------------

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
# Expected GET status per role: "login" = redirect to the site login, "admin" = to the admin's.
SITE_URLS = {
    "/healthz": {role: 200 for role in ROLES},
    LOGIN: {role: 200 for role in ROLES},
    "/": {"anonymous": "login"} | {role: 200 for role in ROLES[1:]},
    "/dramas/new/": {"anonymous": "login"} | {role: 200 for role in ROLES[1:]},
    "/providers/health/": {
        "anonymous": "login",
        "non_member": 403,
        "viewer": 403,
        "editor": 200,
        "producer": 200,
        "staff": 200,
    },
    "/admin/": {role: "admin" for role in ROLES[:-1]} | {"staff": 200},
    "/admin/studio/usagerecord/": {role: "admin" for role in ROLES[:-1]} | {"staff": 200},
    "/admin/studio/usagerecord/summary/": {role: "admin" for role in ROLES[:-1]} | {"staff": 200},
    "/admin/studio/usagerecord/export.csv": {role: "admin" for role in ROLES[:-1]} | {"staff": 200},
    "/admin/studio/price/": {role: "admin" for role in ROLES[:-1]} | {"staff": 403},
    "/admin/auth/user/": {role: "admin" for role in ROLES[:-1]} | {"staff": 403},
}


def site_url_patterns() -> list[str]:
    """Routes outside the drama tree and the admin (which is listed by hand above)."""
    names = []
    for pattern in get_resolver().url_patterns:
        if isinstance(pattern, URLPattern):
            names.append(pattern.name)
        elif isinstance(pattern, URLResolver) and pattern.app_name != "admin":
            names += [
                p.name
                for p in pattern.url_patterns
                if isinstance(p, URLPattern) and "drama_id" not in p.pattern.regex.pattern
            ]
    return sorted(names)


def test_it_lists_every_site_url_in_the_matrix():
    listed = set(SITE_URLS) | {"/accounts/logout/"}
    for name in site_url_patterns():
        assert reverse(name) in listed, name


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("url", sorted(SITE_URLS))
def test_it_lets_each_role_open_only_the_site_pages_it_may(people, url, role):
    expected = SITE_URLS[url][role]
    response = client_for(people[role]).get(url)
    if expected == "login":
        assert response.status_code == 302
        assert response["Location"].startswith(LOGIN)
    elif expected == "admin":
        assert response.status_code == 302
        assert response["Location"].startswith((LOGIN, ADMIN_LOGIN))  # anonymous: the site's
    else:
        assert response.status_code == expected, (url, role)


def test_it_keeps_staff_outside_dramas_they_do_not_belong_to(people, world):  # noqa: F811
    staff = login(people["staff"])
    for name in drama_url_names():
        url = url_for(name, world["ids"])
        assert staff.get(url).status_code == 404, url
        assert staff.post(url).status_code == 404, url


def test_it_only_logs_out_on_post(people):
    client = login(people["producer"])
    assert client.get("/accounts/logout/").status_code == 405
    assert client.get("/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


# --- (a) Every websocket route, for every role --------------------------------------------------


@pytest.fixture
def fresh_channel_layer():
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


async def ws_connect(path: str, user) -> tuple[bool, int | None]:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if user is not None:
        client = await sync_to_async(login)(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect()
    if connected:
        await communicator.receive_from()  # the snapshot
        await communicator.disconnect()
    return connected, code


WS_EXPECTED = {
    "live": {"non_member": 4404, "viewer": True, "editor": True, "producer": True, "staff": 4404},
    "health": {"non_member": 4403, "viewer": 4403, "editor": True, "producer": True, "staff": True},
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_channel_layer")
async def test_it_accepts_on_every_websocket_route_only_whom_it_should():
    @sync_to_async
    def make():
        producer = create_user()
        drama = create_drama(owner=producer)
        return drama, {
            "anonymous": None,
            "non_member": create_user(),
            "viewer": add_member(drama=drama, role=Role.VIEWER),
            "editor": add_member(drama=drama, role=Role.EDITOR),
            "producer": producer,
            "staff": create_user(is_staff=True),
        }

    drama, users = await make()
    routes = {"live": f"/ws/dramas/{drama.id}/live/?view=board", "health": "/ws/providers/health/"}
    for route, path in routes.items():
        expected = {"anonymous": 4404 if route == "live" else 4403} | WS_EXPECTED[route]
        for role in ROLES:
            connected, code = await ws_connect(path, users[role])
            if expected[role] is True:
                assert connected, (route, role)
            else:
                assert (connected, code) == (False, expected[role]), (route, role)
    # Routes that do not exist, or ids beyond the converter, are refused, not crashed on.
    for path in ["/ws/dramas/abc/live/", f"/ws/dramas/{'9' * 30}/live/", "/ws/nowhere/"]:
        with pytest.raises(ValueError, match="No route found"):
            await ws_connect(path, users["producer"])


# --- (b) CSRF on every POST route ---------------------------------------------------------------


def post_routes(ids: dict) -> list[str]:
    urls = [url_for(name, ids) for name in drama_url_names()]
    return [*urls, "/dramas/new/", "/accounts/logout/", LOGIN, ADMIN_LOGIN]


def test_it_enforces_csrf_on_every_post_route(people, world):  # noqa: F811
    from django.contrib.auth import get_user_model

    client = Client(enforce_csrf_checks=True)
    client.force_login(world["producer"])
    before = (_snapshot(world["drama"]), get_user_model().objects.count())
    dramas_before = world["producer"].memberships.count()
    routes = post_routes(world["ids"])
    assert len(routes) >= 55
    data = {
        "title": "Sneaky",
        "offset": "1",
        "note": "x",
        "username": people["non_member"].username,
        "role": "producer",
        "password": PASSWORD,
        "action": "approve",
        "location": "Sneaky",
        "line": "Sneaky",
    }
    for url in routes:
        assert client.post(url, data).status_code == 403, url
    assert (_snapshot(world["drama"]), get_user_model().objects.count()) == before
    assert world["producer"].memberships.count() == dramas_before
    assert client.get("/").status_code == 200  # the logout without a token did not log out


# --- (c) check --deploy with the production environment ----------------------------------------

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "prod-" + "x7Qp9#vL2m!Zr4Tb8Nk1Wc6Yh3Jd5Fg0" * 2,
    "HTTPS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "ALLOWED_HOSTS": "studio.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://studio.example.com",
}


def test_it_passes_check_deploy_with_the_documented_production_env(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "LANG", "PYTHONPATH") or key.startswith("VIRTUAL_ENV")
    }
    env |= PRODUCTION_ENV | {"STUDIO_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    readme = (BASE_DIR / "README.md").read_text()
    for name in PRODUCTION_ENV:
        assert f"`{name}`" in readme, name


# --- (d) API keys never leak --------------------------------------------------------------------

SECRET = "sk-live-S3CRET-9f8e7d6c5b4a3210"


@pytest.mark.django_db(transaction=True)
async def test_it_never_shows_an_api_key_in_logs_pages_errors_or_records(settings, caplog):
    caplog.set_level(logging.DEBUG)
    async with running_sim(api_key="sk-the-right-one") as sim:
        settings.PROVIDER_WRITER = {
            **settings.PROVIDER_WRITER,
            "base_url": f"{sim.url}/v1",
            "api_key": SECRET,
            "model": "gpt-4.1",
            "provider": "openai",
        }
        settings.PROVIDER_VIDEO = {
            **settings.PROVIDER_VIDEO,
            "api": "openai_videos",
            "base_url": f"{sim.url}/v1",
            "api_key": SECRET,
            "provider": "openai",
            "model": "sora-2",
        }
        registry.forget()
        try:
            texts = await _fail_with_the_secret(sim)
        finally:
            registry.forget()
    texts.append(caplog.text)
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.exc_info) for record in caplog.records if record.exc_info]
    assert texts and sim.stats.statuses["chat"].get("401")
    for text in texts:
        assert SECRET not in text


async def _fail_with_the_secret(sim) -> list[str]:
    @sync_to_async
    def make():
        producer = create_user(is_staff=True)
        producer.is_superuser = True  # every admin page, the job admin included
        producer.save()
        drama = create_drama(owner=producer)
        create_character(drama=drama, name="Mei")
        chapter = create_chapter(drama=drama)
        return producer, drama, chapter

    producer, drama, chapter = await make()
    texts: list[str] = []
    # A chapter generation with the wrong key, run by a real worker: the job fails.
    worker = Worker(config=WorkerConfig(poll_s=0.05, watch_s=0.05, lease_s=5))
    running = asyncio.create_task(worker.run())
    try:
        job = await sync_to_async(generation.chapter_generate)(chapter=chapter)
        for _ in range(200):
            await job.arefresh_from_db()
            if job.status in (JobStatus.FAILED, JobStatus.SUCCEEDED):
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop(grace_s=0.5)
        await running
    assert job.status == JobStatus.FAILED, job.status
    assert "API key" in job.last_error or "401" in job.last_error
    # The video provider with the same key: the error the pipeline would store.
    video = video_for(sim, api_key=SECRET, ledger=DbLedger())
    try:
        await video.submit(VideoRequest(prompt="A rooftop at night"), "leak-test-1")
    except Exception as error:  # the adapter's own error type
        texts += [str(error), repr(error), str(error.__cause__ or ""), repr(error.args)]
    else:
        raise AssertionError("a wrong key was accepted")

    @sync_to_async
    def pages() -> list[str]:
        found = [job.last_error, repr(job.result)]
        found += list(Job.objects.values_list("last_error", flat=True))
        found += [str(row) for row in UsageRecord.objects.values_list()]
        client = login(producer)
        for url in [
            "/providers/health/",
            f"/dramas/{drama.id}/queue/",
            f"/dramas/{drama.id}/chapters/{chapter.id}/",
            f"/dramas/{drama.id}/costs/",
            "/admin/studio/usagerecord/",
            "/admin/studio/usagerecord/summary/",
            "/admin/jobs/job/",
            f"/admin/jobs/job/{job.id}/change/",
        ]:
            response = client.get(url)
            assert response.status_code == 200, url
            found.append(response.content.decode())
        csv = client.get("/admin/studio/usagerecord/export.csv")
        found.append(b"".join(csv.streaming_content).decode())
        return found

    texts += await pages()
    assert await sync_to_async(UsageRecord.objects.filter(error__gt="").exists)()
    return texts
