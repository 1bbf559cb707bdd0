"""The simulator's state, shared by its handlers: the configuration and fault rates (`SimConfig`,
`RouteFaults`), the counters (`Stats`), and `SimState` with the fault and reply queues, the jobs
and the prompts seen."""

from __future__ import annotations

import random
from collections import Counter, defaultdict, deque
from dataclasses import asdict, dataclass, field, fields

FAULTS = (
    "5xx",
    "429",
    "quota",
    "hang",
    "malformed",
    "drop",
    "lost_response",
    "stream_error",
    "cut_stream",
    "no_done",
    "slow_stream",
    "fail",
    "reject",
    # Image routes: an answer whose image is not a picture, or that holds no image at all.
    "not_image",
    "no_image",
)


@dataclass
class RouteFaults:
    """Rates (0..1) of each fault on a route; checked in this order, one draw each."""

    error_5xx: float = 0.0
    rate_429: float = 0.0
    quota: float = 0.0
    hang: float = 0.0
    malformed: float = 0.0
    drop: float = 0.0
    stream_error: float = 0.0
    cut_stream: float = 0.0
    slow_stream: float = 0.0
    fail: float = 0.0
    reject: float = 0.0

    def pick(self, rng: random.Random) -> str:
        for name, fault in (
            ("error_5xx", "5xx"),
            ("rate_429", "429"),
            ("quota", "quota"),
            ("hang", "hang"),
            ("malformed", "malformed"),
            ("drop", "drop"),
            ("stream_error", "stream_error"),
            ("cut_stream", "cut_stream"),
            ("slow_stream", "slow_stream"),
            ("fail", "fail"),
            ("reject", "reject"),
        ):
            rate = getattr(self, name)
            if rate and rng.random() < rate:
                return fault
        return "ok"


@dataclass
class SimConfig:
    seed: int = 0
    latency_ms: float = 0.0
    latency_sigma: float = 0.0  # lognormal spread around latency_ms; 0 = fixed
    retry_after_s: float = 1.0
    hang_s: float = 30.0
    slow_stream_s: float = 0.3  # pause between stream pieces on a slow stream
    keepalive: bool = True  # ": keep-alive" comments and blank lines inside streams
    usage_style: str = "openai"  # or "deepseek" (prompt_cache_hit_tokens)
    api_key: str = field(default="", repr=False)  # when set, requests must carry it
    job_s: float = 0.5  # a video or lip-sync job's time from queued to done
    # Lip-sync outputs behind a redirect to another host name (as storage links are).
    redirect_outputs: bool = False
    drift_rate: float = 0.0  # share of videos that show the drift face
    drift_face: str = ""  # image path; default: the bundled stranger portrait
    # Share of videos started from a keyframe (image-to-video) that still drift: the clip
    # animates the picture it was given, so by default its face stays the keyframe's.
    first_frame_drift_rate: float = 0.0
    video_max_side: int = 640
    video_fps: int = 12
    # Reuse the clip of an identical request (same length, size, face, prompt): a benchmark
    # then measures the studio, not the simulator's own rendering on the same cores.
    cache_clips: bool = False
    faults: dict[str, RouteFaults] = field(default_factory=dict)  # route or "*" -> rates

    def faults_for(self, route: str) -> RouteFaults:
        return self.faults.get(route) or self.faults.get("*") or RouteFaults()

    def update(self, values: dict) -> None:
        names = {f.name for f in fields(self)}
        for key, value in values.items():
            if key == "faults":
                self.faults = {r: RouteFaults(**rates) for r, rates in value.items()}
            elif key in names:
                setattr(self, key, value)


class Stats:
    def __init__(self) -> None:
        self.requests: Counter = Counter()
        self.statuses: dict[str, Counter] = defaultdict(Counter)
        self.submissions: Counter = Counter()  # POSTs per idempotency key
        self.jobs_per_key: Counter = Counter()  # jobs actually created per key
        self.arrivals: dict[str, deque] = defaultdict(lambda: deque(maxlen=50_000))
        self.keyed_downloads = 0  # output downloads that carried an API key

    def as_dict(self, *, arrivals: bool) -> dict:
        data = {
            "requests": dict(self.requests),
            "statuses": {route: dict(c) for route, c in self.statuses.items()},
            "submissions": dict(self.submissions),
            "jobs_per_key": dict(self.jobs_per_key),
            "keyed_downloads": self.keyed_downloads,
        }
        if arrivals:
            data["arrivals"] = {route: list(times) for route, times in self.arrivals.items()}
        return data


class SimState:
    """What the handlers read and change; the server (server.Simulator) adds the HTTP side."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.stats = Stats()
        self.rng = random.Random(self.config.seed)
        self.script: dict[str, deque] = defaultdict(deque)
        self.clips: dict[tuple, bytes] = {}  # cache_clips: request -> rendered clip
        self.jobs: dict[str, dict] = {}
        self.jobs_by_key: dict[tuple[str, str], str] = {}
        self.seen_prompts: set[str] = set()
        self.speech_bodies: list[dict] = []  # what the speech route received, in order
        self.voices: dict[str, dict] = {}  # voices cloned through ElevenLabs' voices/add
        # Stills made by the image routes, by id: what was sent (model, size, references,
        # seed) and whether the picture drifted; keyed like jobs in jobs_by_key ("image", key).
        self.images: dict[str, dict] = {}
        # Scripted chat answers, one per request, before the default answers (see queue_replies).
        self.replies: deque[dict] = deque()
        self.url = ""  # set by the server once it listens; job outputs link to it

    def queue_faults(self, route: str, *faults: str) -> None:
        """The next requests on `route` get these faults, in order ("ok" for none)."""
        for fault in faults:
            if fault != "ok" and fault not in FAULTS and not fault.startswith("status:"):
                raise ValueError(f"unknown fault {fault!r}")
            self.script[route].append(fault)

    def queue_replies(self, *replies: str | dict) -> None:
        """The next chat requests answer with these bodies, in order: a string is the content
        (finish reason "stop"); a dict may set `content` and `finish_reason` (e.g. "length", a
        reply cut at max_tokens). Faults still apply on top."""
        for reply in replies:
            value = {"content": reply} if isinstance(reply, str) else dict(reply)
            if not isinstance(value.get("content", ""), str):
                raise ValueError("a reply's content must be text")
            self.replies.append(
                {
                    "content": value.get("content", ""),
                    "finish_reason": value.get("finish_reason") or "stop",
                }
            )

    def reset(self) -> None:
        self.stats = Stats()
        self.script.clear()
        self.replies.clear()
        self.jobs.clear()
        self.clips.clear()
        self.jobs_by_key.clear()
        self.seen_prompts.clear()
        self.speech_bodies.clear()
        self.voices.clear()
        self.images.clear()
        self.rng = random.Random(self.config.seed)

    def snapshot(self, *, arrivals: bool = False) -> dict:
        return {**self.stats.as_dict(arrivals=arrivals), "config": _config_dict(self.config)}


def _config_dict(config: SimConfig) -> dict:
    data = asdict(config)
    data["api_key"] = "set" if config.api_key else ""
    return data
