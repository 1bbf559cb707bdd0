"""ComfyUI's websocket (`GET /ws?clientId=`): one queued prompt's progress, pushed as it runs.

ComfyUI sends a prompt's events only to the sockets of the client_id it was queued with, and
only while they are connected: nothing is replayed. So a socket's news is complete only from
the moment it connected, and the adapter takes one HTTP look (`/history`, `/queue`) after
that before it trusts the socket alone; it looks again every RECHECK_S even then (a silent
socket, a prompt deleted from the queue by hand), and whenever the socket reports the end
(history is the authority on outputs and errors). A socket that cannot connect or drops
leaves the adapter on HTTP polling, as if it never existed, and is tried again after
RETRY_S. Shapes: ../shared/research/comfyui_api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

logger = logging.getLogger(__name__)

RECHECK_S = 30.0  # a live socket still gets an HTTP look this often
IDLE_S = 120.0  # a socket nobody asked about for this long closes
RETRY_S = 10.0  # after a failed connect or a drop, wait this long before connecting again
OPEN_TIMEOUT_S = 5.0
MAX_MESSAGE_BYTES = 2**22  # binary previews can be large; a prompt's events are small
ENDINGS = ("execution_success", "execution_error", "execution_interrupted")


def socket_url(base_url: str, client_id: str) -> str:
    scheme, _, rest = base_url.rstrip("/").partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?clientId={client_id}"


@dataclass
class PromptProgress:
    """What the events said about one prompt: nodes done, the node running and its steps."""

    prompt_id: str
    nodes_total: int = 0
    started: bool = False
    ended: str = ""  # one of ENDINGS, or "done" for the end-of-prompt marker alone
    finished: set = field(default_factory=set)
    current: str | None = None
    value: float = 0.0
    maximum: float = 1.0

    def fraction(self) -> float:
        """Share of the graph done, the running node counted by its steps; below 1 until
        the history says the prompt succeeded."""
        if not self.started or self.nodes_total <= 0:
            return 0.0
        done = len(self.finished - {self.current})
        step = self.value / self.maximum if self.current and self.maximum > 0 else 0.0
        return max(0.0, min(0.99, (done + step) / self.nodes_total))

    def vendor_status(self) -> str:
        if self.current and self.maximum > 1:
            return f"running step {self.value:g}/{self.maximum:g}"
        return "running"

    def take(self, kind: str, data: dict) -> bool:
        """Apply one event; True when it changes the prompt's state (started or ended)."""
        if data.get("prompt_id") not in (None, self.prompt_id):
            return False
        if kind == "execution_start":
            self.started = True
            return True
        if kind in ENDINGS:
            self.ended = kind
            return True
        if kind == "execution_cached":
            self.finished.update(str(node) for node in data.get("nodes") or [])
        elif kind == "executing":
            node = data.get("node")
            if node is None:
                self.ended = self.ended or "done"
                return True
            self._run(str(node))
        elif kind == "progress":
            self._run(str(data.get("node") or self.current or ""), data)
        elif kind == "progress_state":
            for node_id, state in (data.get("nodes") or {}).items():
                if not isinstance(state, dict):
                    continue
                if state.get("state") == "finished":
                    self.finished.add(str(node_id))
                else:
                    self._run(str(node_id), state)
        elif kind == "executed" and data.get("node") is not None:
            self.finished.add(str(data["node"]))
        return False

    def _run(self, node_id: str, steps: dict | None = None) -> None:
        if not node_id:
            return
        self.started = True
        if node_id != self.current:
            if self.current:
                self.finished.add(self.current)
            self.current, self.value, self.maximum = node_id, 0.0, 1.0
        if steps is not None:
            value, maximum = steps.get("value"), steps.get("max")
            if isinstance(value, int | float) and isinstance(maximum, int | float) and maximum > 0:
                self.value, self.maximum = float(value), float(maximum)


class PromptSocket:
    """The websocket of one prompt's client_id, read by a task on the loop that opened it."""

    def __init__(self, url: str, progress: PromptProgress, headers: dict[str, str]) -> None:
        self.url = url
        self.progress = progress
        self.headers = headers
        self.loop = asyncio.get_running_loop()
        self.live = False
        self.checked_at: float | None = None  # last HTTP look taken while the socket was live
        self.vendor_status = ""  # what that look said (the queue position, while queued)
        self.failed_at: float | None = None
        self.used_at = time.monotonic()
        self.changes = 0  # state changes (start, end) seen; the poller remembers how many it read
        self.read_changes = 0
        self.news = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.start()

    def start(self) -> None:
        self.failed_at = None
        self.task = self.loop.create_task(self._run(), name=f"comfyui-ws-{self.progress.prompt_id}")

    def usable(self) -> bool:
        return self.loop is asyncio.get_running_loop() and not self.loop.is_closed()

    def touch(self) -> None:
        """Called on every poll: keeps the socket open, and reconnects one that dropped."""
        now = time.monotonic()
        self.used_at = now
        idle = self.task is None or self.task.done()
        retry = self.failed_at is None or now - self.failed_at >= RETRY_S
        if idle and retry and not self.progress.ended:
            self.start()

    def trusted(self) -> bool:
        """The socket alone may answer this poll: live since an HTTP look, not long ago, and
        no end reported (the end is confirmed over HTTP)."""
        recent = self.checked_at is not None and time.monotonic() - self.checked_at < RECHECK_S
        return self.live and recent and not self.progress.ended

    def checked(self, *, live_before: bool, vendor_status: str) -> None:
        """An HTTP look just answered: if the socket was live all along, nothing it missed."""
        if live_before and self.live:
            self.checked_at = time.monotonic()
            self.vendor_status = vendor_status
        self.read_changes = self.changes

    async def wait_for_news(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking early when the prompt starts or ends."""
        deadline = time.monotonic() + seconds
        while self.changes == self.read_changes:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.news.clear()
            if not self.live:
                await asyncio.sleep(left)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.news.wait(), left)

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            async with connect(
                self.url,
                additional_headers=self.headers,
                open_timeout=OPEN_TIMEOUT_S,
                max_size=MAX_MESSAGE_BYTES,
            ) as ws:
                self.live = True
                self.news.set()
                while not self.progress.ended:
                    try:
                        message = await asyncio.wait_for(ws.recv(), IDLE_S / 4)
                    except TimeoutError:
                        if time.monotonic() - self.used_at > IDLE_S:
                            return
                        continue
                    self._read(message)
        except (OSError, WebSocketException, TimeoutError) as error:
            self.failed_at = time.monotonic()
            logger.debug("ComfyUI socket %s: %s", self.url, error)
        except Exception:
            # Never the render's end: polling over HTTP carries on without the socket.
            self.failed_at = time.monotonic()
            logger.warning("ComfyUI socket %s failed unexpectedly", self.url, exc_info=True)
        finally:
            self.live = False
            self.checked_at = None  # what a reconnected socket missed, only HTTP can tell
            self.news.set()

    def _read(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            return  # a binary preview image
        try:
            event = json.loads(message)
        except ValueError:
            logger.debug("ComfyUI socket %s sent a frame that is not JSON", self.url)
            return
        if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
            return
        if self.progress.take(str(event.get("type") or ""), event["data"]):
            self.changes += 1
            self.news.set()
