"""What the studio may ask of a generation service: protocols and plain dataclasses.

Nothing here knows about dramas or characters. A caller turns its own records into these
dataclasses, calls a provider, and stores the results. Job handles are plain JSON so a worker
can save one before polling and resume after a restart without paying for a second submission.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

# --- Chat --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Token counts of one call. `input_tokens` includes `cached_tokens`."""

    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class ChatResult:
    text: str
    usage: Usage
    model: str
    request_id: str = ""
    finish_reason: str = ""
    # What a producer reads next to the result, e.g. "offline draft".
    label: str = ""


@dataclass(frozen=True)
class ChatChunk:
    """A piece of a streamed answer; the last one carries `usage` and `finish_reason`."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str = ""


Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


@runtime_checkable
class ChatProvider(Protocol):
    """`json_output`: True asks for JSON; a dict is a JSON schema the answer must follow,
    sent as such where the server supports it (the provider's json mode says)."""

    name: str
    model: str
    label: str

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        json_output: bool | dict = False,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ChatResult: ...

    def stream(
        self,
        messages: Sequence[Message],
        *,
        json_output: bool | dict = False,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> AsyncIterator[ChatChunk]: ...


# --- Jobs (video, lip sync) --------------------------------------------------------------------


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobHandle:
    """Enough to poll, fetch or cancel a remote job later, from any process."""

    provider: str
    id: str
    model: str = ""
    kind: str = "video"
    # Adapter-specific plain values (e.g. the billed seconds, an output URL, a local path).
    data: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | dict) -> JobHandle:
        values = json.loads(text) if isinstance(text, str) else dict(text)
        return cls(**values)


@dataclass(frozen=True)
class JobStatus:
    state: JobState
    progress: float = 0.0  # 0..1
    error: str = ""
    retryable: bool = False
    poll_after_s: float = 1.0
    vendor_status: str = ""


@dataclass(frozen=True)
class Capabilities:
    max_reference_images: int = 1
    # Durations the service accepts; None means any value between min and max.
    durations_s: tuple[float, ...] | None = None
    min_duration_s: float = 1.0
    max_duration_s: float = 60.0
    aspects: tuple[str, ...] = ("9:16", "16:9", "1:1")
    can_cancel: bool = True
    lipsync: bool = False
    # The service renders the soundtrack (dialog, ambience) with the picture.
    native_audio: bool = False
    # The model takes a start image: a request's first_frame (the chosen keyframe) opens the clip.
    first_frame: bool = False

    def fit_duration(self, seconds: float) -> float:
        """The accepted duration closest to `seconds`, preferring the next longer one."""
        if not self.durations_s:
            return min(max(seconds, self.min_duration_s), self.max_duration_s)
        longer = [d for d in sorted(self.durations_s) if d >= seconds]
        return longer[0] if longer else max(self.durations_s)


ASPECT_SIZES: dict[str, tuple[int, int]] = {
    "9:16": (720, 1280),
    "16:9": (1280, 720),
    "1:1": (720, 720),
}


def frame_size(aspect: str) -> tuple[int, int]:
    """(width, height) for an aspect ratio; unknown ratios fall back to vertical 720p."""
    return ASPECT_SIZES.get(aspect, ASPECT_SIZES["9:16"])


@dataclass(frozen=True)
class CastMember:
    """A person in the shot: a reference image (bytes or a path) and, if known, its face box."""

    name: str
    image: bytes | None = field(default=None, repr=False)
    image_path: str | None = None
    face_box: tuple[int, int, int, int] | None = None  # left, top, right, bottom in pixels

    def image_bytes(self) -> bytes | None:
        if self.image is not None:
            return self.image
        if self.image_path:
            with open(self.image_path, "rb") as handle:
                return handle.read()
        return None


@dataclass(frozen=True)
class DialogCue:
    speaker: str  # "" for the narrator
    line: str
    emotion: str = ""
    # Where the line is heard in the clip (the studio's dialog track), when it is known.
    start_s: float | None = None
    end_s: float | None = None


@dataclass(frozen=True)
class VideoRequest:
    """One scene to turn into a clip."""

    prompt: str
    duration_s: float = 5.0
    aspect: str = "9:16"
    title: str = ""
    camera: str = ""
    location: str = ""
    time_of_day: str = ""
    mood: str = ""
    cast: tuple[CastMember, ...] = ()
    dialog: tuple[DialogCue, ...] = ()
    seed: int | None = None
    # The scene's chosen keyframe (PNG or JPEG bytes): the clip starts from this picture
    # (image-to-video), and the references are still sent where the model takes both.
    first_frame: bytes | None = field(default=None, repr=False)

    def prompt_text(self) -> str:
        """The text prompt a remote video model reads: action, camera, then dialog."""
        parts = [self.prompt.strip()]
        setting = ", ".join(part for part in (self.location, self.time_of_day) if part)
        if setting:
            parts.append(f"Setting: {setting}.")
        if self.mood:
            parts.append(f"Mood: {self.mood}.")
        if self.camera:
            parts.append(f"Camera: {self.camera}.")
        for cue in self.dialog:
            parts.append(f'{cue.speaker or "Narrator"}: "{cue.line}"')
        return "\n".join(part for part in parts if part)


@dataclass(frozen=True)
class LipSyncRequest:
    """A clip and the speech to sync it to: bytes to upload, or URLs the vendor can fetch."""

    video: bytes | None = field(default=None, repr=False)
    audio: bytes | None = field(default=None, repr=False)
    video_url: str = ""
    audio_url: str = ""
    sync_mode: str = "cut_off"


# --- Images (storyboard keyframes) -------------------------------------------------------------


@dataclass(frozen=True)
class ImageRequest:
    """One still of a scene: its first frame, to be scored before any video is paid for."""

    prompt: str
    aspect: str = "9:16"
    time_of_day: str = ""
    camera: str = ""
    cast: tuple[CastMember, ...] = ()
    seed: int | None = None
    # Which candidate of the scene's set this is (0, 1, 2, ...): services get another seed;
    # the offline composer another framing.
    variant: int = 0


@dataclass(frozen=True)
class GeneratedImage:
    """A still as the service made it: encoded bytes (PNG, JPEG or WebP) that decode, and
    their size in pixels."""

    data: bytes = field(repr=False)
    width: int
    height: int
    media_type: str = "image/png"
    request_id: str = ""
    revised_prompt: str = ""


@dataclass(frozen=True)
class ImageCapabilities:
    # The size the service makes for each aspect it offers.
    sizes: dict[str, tuple[int, int]] = field(
        default_factory=lambda: {"9:16": (720, 1280), "16:9": (1280, 720), "1:1": (1024, 1024)}
    )
    max_reference_images: int = 1
    unit: str = "image"  # what a call is billed by (a per-request price: per image)

    def size_for(self, aspect: str) -> tuple[int, int]:
        return self.sizes.get(aspect) or next(iter(self.sizes.values()))


@runtime_checkable
class ImageProvider(Protocol):
    name: str
    model: str
    label: str
    capabilities: ImageCapabilities

    async def generate(self, request: ImageRequest, *, idempotency_key: str) -> GeneratedImage:
        """One still, booked in the usage ledger (kind "image", one request per image)."""
        ...


# --- Speech ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Voice:
    """How a character sounds. Services use what they support and ignore the rest."""

    voice_id: str = ""  # the service's voice name or id; "" for its default voice
    speed: float = 1.0  # 0.5-2.0; 1 is the voice's own pace
    pitch: float = 0.0  # semitones, -12 to 12
    language: str = "en"  # BCP 47: en, en-us, cmn, yue, es, ...
    reference_audio: bytes | None = field(default=None, repr=False)  # for voice-cloning services


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    voice: Voice = Voice()
    emotion: str = ""  # how the line is said ("angry", "whispering"): sent where it is taken


@dataclass(frozen=True)
class WordTiming:
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Speech:
    """One spoken line: mono 16-bit PCM WAV, its length, and when each word is heard (from
    the service's own timings where it gives them, else estimated and `timed=False`)."""

    wav: bytes = field(repr=False)
    sample_rate: int
    duration_s: float
    words: tuple[WordTiming, ...] = ()
    timed: bool = True
    request_id: str = ""


@dataclass(frozen=True)
class SpeechCapabilities:
    emotion: bool = False  # takes an emotion or instructions with the text
    word_timings: bool = False  # returns when each word is spoken
    cloning: bool = False  # takes a reference recording as the voice, with every request
    # Makes a stored voice from a recording once (`clone_voice(name=, sample=, filename=)` ->
    # its voice id; `delete_voice(voice_id)`): ElevenLabs' instant voice cloning.
    clones_voices: bool = False
    needs_voice: bool = False  # has no default voice of its own: an empty voice id is refused
    max_characters: int = 4096  # the longest text one call takes
    voices: tuple[str, ...] = ()  # known voice ids, for the voice picker ("" = free text)


@runtime_checkable
class SpeechProvider(Protocol):
    name: str
    model: str
    label: str
    capabilities: SpeechCapabilities

    async def synthesize(self, request: SpeechRequest) -> Speech: ...


ProgressCallback = Callable[[float], None]


@runtime_checkable
class JobProvider(Protocol):
    name: str
    model: str
    capabilities: Capabilities

    async def submit(self, request, idempotency_key: str) -> JobHandle: ...

    async def poll(self, handle: JobHandle) -> JobStatus: ...

    async def fetch(self, handle: JobHandle) -> bytes: ...

    async def cancel(self, handle: JobHandle) -> bool: ...

    def estimated_usage(self, seconds: float) -> tuple[Usage, float]:
        """What a clip of about `seconds` is billed as, in the vendor's unit: tokens (the
        Usage) and/or seconds (the float); a per-request price bills the request itself."""
        ...


async def wait_for_news(provider, handle: JobHandle, seconds: float) -> None:
    """The pause before the next poll; a provider that pushes news of its jobs (ComfyUI's
    websocket) cuts it short with its own `wait_for_news`."""
    wait = getattr(provider, "wait_for_news", None)
    if wait is None:
        await asyncio.sleep(seconds)
    else:
        await wait(handle, seconds)
