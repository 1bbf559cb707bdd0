"""`python manage.py bench load`: the hot pages under a team's load while a chapter renders.

The studio is started as `make run` starts it (`manage.py studio --no-seed`: one Daphne with
its embedded job worker, or one web process per core beside a job worker process and a private
Valkey; every service offline) on a scratch folder of its own: an SQLite database
and media in a temporary folder, handed to the server through the environment
(`DATABASE_URL`, `STUDIO_VAR_DIR`, `MEDIA_ROOT`); the studio's own data is never opened.

The scratch database is seeded once, in a child process, through the studio's services: a
producer (a known password), a cast of three with real reference portraits (dramas/demo/faces),
10 chapters of 8 scenes with dialog lines (`--quick`: 3 of 4), and in every chapter but the last
two finished takes per scene with four scored frames each, reviews, their render jobs and
booked usage. Each run gets a fresh copy of that folder, so both runs see the same data.

A run logs in over HTTP as a browser does (the login form and its CSRF token), presses the
last chapter's "Render chapter" on its board (the offline animatic renderer), then drives 20
closed-loop clients (`--quick`: 4) for 20 s (`--quick`: 5 s), each with one keep-alive
connection and the producer's session, cycling through the drama board (`?chapter=` over every
chapter), the queue page, a take page and the chapter editor. A non-2xx answer is an error, a
request unanswered after 5 s a timeout (counted in the latencies at the 5 s it was given up).
One warm-up round per client comes first, uncounted.

Two runs in the same invocation: the baseline with one web process (`STUDIO_WEB_PROCESSES=1`),
then one web process per core (the default). Reported per run: requests, requests/s, p50 / p95
/ p99 latency, errors, timeouts, per page requests and p95, how far the render got, what the
server logged at ERROR; at the top, the multi-process figures, the baseline's requests/s and
the speedup between them.

Targets (issue 19): p95 <= 300 ms, no errors, no timeouts, speedup >= 1.6.
"""

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from django.conf import settings
from django.urls import reverse

from dramas.bench.load_seed import PASSWORD, USERNAME
from dramas.models import (
    Scene,
    Take,
    TakeStatus,
)
from studio.bench.harness import percentile

CLIENTS, QUICK_CLIENTS = 20, 4
WINDOW_S, QUICK_WINDOW_S = 20.0, 5.0
CHAPTERS, QUICK_CHAPTERS = 10, 3
SCENES, QUICK_SCENES = 8, 4  # per chapter
REQUEST_TIMEOUT_S = 5.0
RENDER_POLL_S = 0.5
START_TIMEOUT_S = 90.0
SEED_TIMEOUT_S = 300.0
STOP_GRACE_S = 20.0  # after SIGTERM, before SIGKILL
TARGET_P95_MS = 300.0
TARGET_SPEEDUP = 1.6
PAGES = ("board", "queue", "take", "editor")
# In the environment of every process a run starts, with a value of its own.
RUN_MARKER = "STUDIO_BENCH_LOAD_RUN"
# Whatever the caller's environment configures, the bench's servers call no vendor: every
# service on its offline provider, nothing spent.
OFFLINE = dict.fromkeys(
    ("WRITER_BASE_URL", "VIDEO_BASE_URL", "SPEECH_BASE_URL", "LIPSYNC_BASE_URL", "IMAGE_BASE_URL"),
    "",
)
# Run inside the seeding child (its own process: the caller's database connection is never
# pointed elsewhere); prints the seeded ids as its last line.
SEED_SCRIPT = """
import json, sys
import django
django.setup()
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from dramas.bench.load_seed import seed_drama
print(json.dumps(seed_drama(**json.loads(sys.argv[1]))))
"""


def load(options: dict) -> dict:
    quick = options.get("quick")
    clients = QUICK_CLIENTS if quick else CLIENTS
    window_s = QUICK_WINDOW_S if quick else WINDOW_S
    chapters = QUICK_CHAPTERS if quick else CHAPTERS
    scenes = QUICK_SCENES if quick else SCENES
    say = options["stdout"].write
    cores = os.cpu_count() or 1
    figures: dict = {
        "load_average_1min_before": round(os.getloadavg()[0], 2),
        "clients": clients,
        "duration_s": window_s,
        "chapters": chapters,
        "scenes_per_chapter": scenes,
        "cpu_count": cores,
        "request_timeout_s": REQUEST_TIMEOUT_S,
    }
    with tempfile.TemporaryDirectory(prefix="studio-bench-load-") as folder:
        scratch = Path(folder)
        seed_folder = scratch / "seed"
        secret_key = secrets.token_urlsafe(50)
        started = time.perf_counter()
        seeded = _seed(folder=seed_folder, secret_key=secret_key, chapters=chapters, scenes=scenes)
        figures["seed_s"] = round(time.perf_counter() - started, 1)
        figures["takes_seeded"] = seeded["takes"]
        say(
            f"seeded {chapters} chapters x {scenes} scenes, {seeded['takes']} takes "
            f"in {figures['seed_s']} s"
        )
        for label, web_processes in (("baseline", 1), ("multi", cores)):
            run = _measure_run(
                folder=scratch / label,
                seed_folder=seed_folder,
                secret_key=secret_key,
                web_processes=web_processes,
                seeded=seeded,
                clients=clients,
                window_s=window_s,
            )
            figures[label] = run
            say(
                f"{label} ({web_processes} web process{'es' if web_processes > 1 else ''}): "
                f"{run['requests_per_s']} requests/s, p50 {run['p50_ms']} ms, "
                f"p95 {run['p95_ms']} ms, p99 {run['p99_ms']} ms, {run['errors']} errors, "
                f"{run['timeouts']} timeouts; render {run['render']['scenes_done']} of "
                f"{run['render']['scenes']} scenes done"
            )
    multi, baseline = figures["multi"], figures["baseline"]
    for key in ("requests_per_s", "p50_ms", "p95_ms", "p99_ms", "errors", "timeouts"):
        figures[key] = multi[key]
    figures["baseline_requests_per_s"] = baseline["requests_per_s"]
    figures["baseline_p95_ms"] = baseline["p95_ms"]
    figures["speedup"] = (
        round(multi["requests_per_s"] / baseline["requests_per_s"], 2)
        if baseline["requests_per_s"]
        else None
    )
    figures["target_p95_ms"] = TARGET_P95_MS
    figures["target_speedup"] = TARGET_SPEEDUP
    figures["meets_targets"] = bool(
        multi["p95_ms"] <= TARGET_P95_MS
        and multi["errors"] == 0
        and multi["timeouts"] == 0
        and (figures["speedup"] or 0) >= TARGET_SPEEDUP
    )
    figures["measured"] = (
        "manage.py studio over HTTP/1.1 on loopback, httpx clients in the bench's process"
    )
    return figures


# --- The scratch studio ------------------------------------------------------------------------


def _studio_env(
    *, folder: Path, secret_key: str, marker: str, web_processes: int | None = None
) -> dict:
    """The environment of a child studio process living entirely in `folder`; `marker` finds
    every process it starts."""
    env = {
        name: value
        for name, value in os.environ.items()
        # Another database, Redis or port would reach outside the scratch folder; DEBUG off as
        # `make run` has it by default (DEBUG keeps every query in memory).
        if name not in ("DATABASE_URL", "REDIS_URL", "PORT", "DEBUG", "STUDIO_WEB_PROCESSES")
    }
    env.update(OFFLINE)
    env.update(
        DJANGO_SETTINGS_MODULE="studio.settings",
        PYTHONUNBUFFERED="1",
        SECRET_KEY=secret_key,
        DATABASE_URL=f"sqlite:///{folder / 'studio.sqlite3'}",
        STUDIO_VAR_DIR=str(folder / "var"),
        MEDIA_ROOT=str(folder / "media"),
        MEDIA_STORAGE="filesystem",
        # The render needs a worker; its unfinished takes go with the scratch folder, so the
        # stop need not wait long for them.
        STUDIO_EMBEDDED_WORKER="1",
        STUDIO_JOB_GRACE_S="1",
    )
    env[RUN_MARKER] = marker
    if web_processes is not None:
        env["STUDIO_WEB_PROCESSES"] = str(web_processes)
    return env


def _seed(*, folder: Path, secret_key: str, chapters: int, scenes: int) -> dict:
    folder.mkdir(parents=True)
    finished = subprocess.run(
        [sys.executable, "-c", SEED_SCRIPT, json.dumps({"chapters": chapters, "scenes": scenes})],
        cwd=settings.BASE_DIR,
        env=_studio_env(folder=folder, secret_key=secret_key, marker=secrets.token_hex(8)),
        capture_output=True,
        text=True,
        timeout=SEED_TIMEOUT_S,
        check=False,
    )
    if finished.returncode != 0:
        raise RuntimeError(
            f"Seeding the scratch database failed ({finished.returncode}):\n"
            + _tail(finished.stderr)
        )
    return json.loads(finished.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _start_studio(*, env: dict, port: int, log_path: Path) -> subprocess.Popen:
    """`make run`'s command on `port`, in a session of its own (a terminal's CONTROL-C meant
    for the bench reaches the bench, which stops it in order)."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "manage.py", "studio", "--port", str(port), "--no-seed"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_until_healthy(*, base: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"The studio exited with {server.returncode} before it served:\n"
                + _tail(log_path.read_text(errors="replace"))
            )
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(
        f"The studio did not answer /healthz with 200 within {START_TIMEOUT_S:.0f} s:\n"
        + _tail(log_path.read_text(errors="replace"))
    )


def _marked_processes(marker: str) -> list[int]:
    """The live processes whose environment, as they started, held this run's marker: the
    server and everything it started, in whatever process group, orphaned or not (from
    /proc; zombies have ended)."""
    wanted = f"{RUN_MARKER}={marker}".encode()
    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as handle:
                    if wanted not in handle.read().split(b"\0"):
                        continue
                with open(f"/proc/{name}/stat", "rb") as handle:
                    state = handle.read().rpartition(b")")[2].split()[0]
            except (OSError, IndexError):
                continue  # ended meanwhile, or not ours to read
            if state not in (b"Z", b"X"):
                found.append(int(name))
    return found


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) so far of each of `pids` still alive, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        found[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def _stop_studio(server: subprocess.Popen, *, marker: str) -> dict:
    """SIGTERM, SIGKILL after the grace period, then every process of the run still alive
    (pool workers, encoders, web processes), each by its id."""
    started = time.perf_counter()
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    left = {pid: _command_line(pid) for pid in _marked_processes(marker)}
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {
        "stop_s": round(time.perf_counter() - started, 1),
        "exit_code": server.returncode,
        # Still alive once the server had exited (then killed): its shutdown missed them.
        "processes_left_behind": sorted(left.values()),
    }


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            words = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
    return words[:120]


def _log_summary(log_path: Path) -> dict:
    lines = log_path.read_text(errors="replace").splitlines()
    errors = [line for line in lines if " ERROR " in line or " CRITICAL " in line]
    return {
        "error_lines": len(errors),
        "tracebacks": sum(1 for line in lines if line.startswith("Traceback")),
        "first_error": errors[0][:300] if errors else "",
    }


def _render_progress(*, database: Path, chapter_id: int) -> Counter:
    """The rendered chapter's takes by status, read from the scratch database (read-only)."""
    takes, scenes = Take._meta.db_table, Scene._meta.db_table
    with contextlib.closing(
        sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    ) as db:
        rows = db.execute(
            f"SELECT t.status, COUNT(*) FROM {takes} t JOIN {scenes} s ON s.id = t.scene_id "
            "WHERE s.chapter_id = ? GROUP BY t.status",
            [chapter_id],
        ).fetchall()
    return Counter(dict(rows))


# --- One run: a server, a login, a render, the clients --------------------------------------


def _measure_run(
    *,
    folder: Path,
    seed_folder: Path,
    secret_key: str,
    web_processes: int,
    seeded: dict,
    clients: int,
    window_s: float,
) -> dict:
    shutil.copytree(seed_folder, folder)
    port = _free_port()
    log_path = folder / "studio.log"
    load_before = os.getloadavg()[0]
    marker = secrets.token_hex(8)
    env = _studio_env(
        folder=folder, secret_key=secret_key, marker=marker, web_processes=web_processes
    )
    server = _start_studio(env=env, port=port, log_path=log_path)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_healthy(base=base, server=server, log_path=log_path)
        figures = asyncio.run(
            _drive(
                base=base,
                seeded=seeded,
                database=folder / "studio.sqlite3",
                clients=clients,
                window_s=window_s,
                marker=marker,
            )
        )
    finally:
        stopped = _stop_studio(server, marker=marker)
    return {
        "web_processes": web_processes,
        "load_average_1min_before": round(load_before, 2),
        **figures,
        "server": stopped | _log_summary(log_path),
    }


def _csrf_token(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    if found is None:
        raise RuntimeError("The page has no CSRF token in a form.")
    return found.group(1)


async def _log_in(client: httpx.AsyncClient, *, base: str) -> None:
    login = reverse(settings.LOGIN_URL)
    form = await client.get(login)
    answer = await client.post(
        login,
        data={
            "username": USERNAME,
            "password": PASSWORD,
            "csrfmiddlewaretoken": _csrf_token(form.text),
        },
        headers={"Origin": base, "Referer": f"{base}{login}"},
    )
    if answer.status_code != 302:
        raise RuntimeError(f"Logging in answered {answer.status_code}, not a redirect.")


async def _render_chapter(client: httpx.AsyncClient, *, base: str, seeded: dict) -> None:
    """Press the chapter's "Render chapter" on its board, as a producer does."""
    drama_id, chapter_id = seeded["drama_id"], seeded["render_chapter_id"]
    board_url = reverse("drama_board", args=[drama_id]) + f"?chapter={chapter_id}"
    board = await client.get(board_url)
    action = reverse("render_chapter", args=[drama_id, chapter_id])
    if board.status_code != 200 or f'action="{action}"' not in board.text:
        raise RuntimeError(f"The board ({board.status_code}) has no Render chapter form.")
    answer = await client.post(
        action,
        data={"csrfmiddlewaretoken": _csrf_token(board.text), "priority": "0"},
        headers={"Origin": base, "Referer": f"{base}{board_url}"},
    )
    if answer.status_code != 302:
        raise RuntimeError(f"Render chapter answered {answer.status_code}, not a redirect.")
    await client.get(answer.headers["location"])  # shows, and so clears, its message


def _page_urls(seeded: dict) -> dict[str, list[str]]:
    drama_id = seeded["drama_id"]
    return {
        "board": [
            reverse("drama_board", args=[drama_id]) + f"?chapter={chapter_id}"
            for chapter_id in seeded["chapter_ids"]
        ],
        "queue": [reverse("drama_queue", args=[drama_id])],
        "take": [
            reverse("take_review", args=[drama_id, take_id]) for take_id in seeded["take_ids"]
        ],
        "editor": [
            reverse("chapter_editor", args=[drama_id, chapter_id])
            for chapter_id in seeded["chapter_ids"]
        ],
    }


class Samples:
    """What the clients saw: (page, seconds, outcome) per request, outcome "ok", "error" or
    "timeout", and what the errors were."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, float, str]] = []
        self.error_kinds: Counter = Counter()


async def _get(client: httpx.AsyncClient, *, page: str, url: str, samples: Samples) -> None:
    started = time.perf_counter()
    try:
        answer = await client.get(url)
    except httpx.TimeoutException:
        samples.requests.append((page, time.perf_counter() - started, "timeout"))
        return
    except httpx.TransportError as error:
        samples.requests.append((page, time.perf_counter() - started, "error"))
        samples.error_kinds[f"{page}: {type(error).__name__}"] += 1
        return
    elapsed = time.perf_counter() - started
    if 200 <= answer.status_code < 300:
        samples.requests.append((page, elapsed, "ok"))
    else:
        samples.requests.append((page, elapsed, "error"))
        samples.error_kinds[f"{page}: HTTP {answer.status_code}"] += 1


async def _client_loop(
    client: httpx.AsyncClient, *, number: int, urls: dict, until: float, samples: Samples
) -> None:
    """Closed loop: the next page as soon as the last one answered, until `until`; each
    client starts at its own chapter and take, so the clients spread over the drama."""
    cycle = 0
    while time.perf_counter() < until:
        for page in PAGES:
            choices = urls[page]
            await _get(
                client, page=page, url=choices[(number + cycle) % len(choices)], samples=samples
            )
            if time.perf_counter() >= until:
                break
        cycle += 1


async def _one_round(
    client: httpx.AsyncClient, *, number: int, urls: dict, samples: Samples
) -> None:
    for page in PAGES:
        await _get(client, page=page, url=urls[page][number % len(urls[page])], samples=samples)


async def _drive(
    *,
    base: str,
    seeded: dict,
    database: Path,
    clients: int,
    window_s: float,
    marker: str,
) -> dict:
    def client(cookies: httpx.Cookies | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=base,
            cookies=cookies,
            timeout=httpx.Timeout(REQUEST_TIMEOUT_S),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )

    chapter_id = seeded["render_chapter_id"]
    urls = _page_urls(seeded)
    async with client() as producer:
        await _log_in(producer, base=base)
        sessions = [client(httpx.Cookies(producer.cookies)) for _ in range(clients)]
        try:
            # One uncounted round of every page per client (first-use template loads and
            # imports in the server, connections opened), then the render, then the window:
            # the render overlaps as much of the window as it lasts.
            warm_up = Samples()
            await asyncio.gather(
                *(
                    _one_round(c, number=n, urls=urls, samples=warm_up)
                    for n, c in enumerate(sessions)
                )
            )
            await _render_chapter(producer, base=base, seeded=seeded)
            if not _render_progress(database=database, chapter_id=chapter_id):
                raise RuntimeError("Render chapter queued no take (see the board's message).")
            samples = Samples()
            cpu_before = _cpu_seconds(_marked_processes(marker))
            client_cpu_before = time.process_time()
            started = time.perf_counter()
            watch = asyncio.create_task(
                _render_finished_after(database=database, chapter_id=chapter_id, since=started)
            )
            await asyncio.gather(
                *(
                    _client_loop(c, number=n, urls=urls, until=started + window_s, samples=samples)
                    for n, c in enumerate(sessions)
                )
            )
            elapsed = time.perf_counter() - started
            client_cpu_s = time.process_time() - client_cpu_before
            processes = _marked_processes(marker)
            cpu_after = _cpu_seconds(processes)
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        finally:
            await asyncio.gather(*(c.aclose() for c in sessions))
    progress = _render_progress(database=database, chapter_id=chapter_id)
    return {
        **_latency_figures(samples, elapsed=elapsed),
        "warm_up_errors": sum(1 for *_, outcome in warm_up.requests if outcome != "ok"),
        "window_s": round(elapsed, 2),
        # Every process of the server at the window's end: itself, web processes, the job
        # worker, the channel layer's server, CPU pool workers, encoders.
        "server_processes": len(processes),
        # Cores the server's processes kept busy over the window, web and render alike (of
        # those alive at its end; the machine has `cpu_count`), and the bench's own clients.
        "server_cores_busy": round(
            sum(cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after) / elapsed, 2
        ),
        "clients_cores_busy": round(client_cpu_s / elapsed, 2),
        "render": {
            "scenes": seeded["render_scenes"],
            "takes_queued": sum(progress.values()),
            "scenes_done": progress[TakeStatus.DONE.value],
            "scenes_failed": progress[TakeStatus.FAILED.value],
            "still_rendering": _still_rendering(progress),
            "takes_by_status": dict(progress),
            # Seconds into the window when its last take settled (null: it outlasted it).
            "finished_s": None if watch.cancelled() else round(watch.result(), 1),
        },
    }


def _still_rendering(progress: Counter) -> int:
    settled = (TakeStatus.DONE, TakeStatus.FAILED, TakeStatus.CANCELLED)
    return sum(count for status, count in progress.items() if status not in settled)


async def _render_finished_after(*, database: Path, chapter_id: int, since: float) -> float:
    """Seconds after `since` when the chapter's takes have all settled (polled)."""
    while True:
        await asyncio.sleep(RENDER_POLL_S)
        progress = await asyncio.to_thread(
            _render_progress, database=database, chapter_id=chapter_id
        )
        if not _still_rendering(progress):
            return time.perf_counter() - since


def _latency_figures(samples: Samples, *, elapsed: float) -> dict:
    def ms(values: list[float], fraction: float) -> float:
        return round(percentile(values, fraction) * 1000, 1) if values else 0.0

    every = [seconds for _, seconds, _ in samples.requests]
    answered = [r for r in samples.requests if r[2] != "timeout"]
    return {
        "requests": len(answered),
        "requests_per_s": round(len(answered) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": ms(every, 0.50),
        "p95_ms": ms(every, 0.95),
        "p99_ms": ms(every, 0.99),
        "max_ms": round(max(every, default=0.0) * 1000, 1),
        "errors": sum(1 for *_, outcome in samples.requests if outcome == "error"),
        "timeouts": sum(1 for *_, outcome in samples.requests if outcome == "timeout"),
        "error_kinds": dict(samples.error_kinds),
        "per_page": {
            page: {
                "requests": len(times := [s for p, s, _ in samples.requests if p == page]),
                "p50_ms": ms(times, 0.50),
                "p95_ms": ms(times, 0.95),
            }
            for page in PAGES
        },
    }
