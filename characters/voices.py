"""A character's voice: which ids each speech service can have, and voice-sample uploads.

A voice sample is judged like a reference image: the bytes are read up to the limit and decoded
for real (PyAV, `studio.providers.audio.decode_mono`), never trusted by name or content type;
what is kept is a normalised copy (mono 16-bit WAV at 44.1 kHz, no metadata).
"""

import functools
import hashlib
import io
from dataclasses import dataclass

import av
import numpy as np

from characters.uploads import UploadRejected, read_limited
from studio.providers.audio import NotAudio, decode_mono, wav_bytes

MAX_SAMPLE_BYTES = 10 * 1024 * 1024
SAMPLE_SECONDS = (3.0, 60.0)  # long enough to clone from, short enough to upload and send
SAMPLE_RATE = 44_100
SILENT = 0.01  # of full scale: a recording whose loudest sample is below this holds no voice

OFFLINE = "espeak-ng"
SERVICE_LABELS = {
    OFFLINE: "the offline voice",
    "openai": "the OpenAI-compatible service",
    "elevenlabs": "ElevenLabs",
}


@functools.cache
def offline_variants() -> tuple[str, ...]:
    from studio.providers.speech_espeak import variants

    return variants()


def known_voices(api: str) -> tuple[str, ...]:
    """The voice ids a service is known to have ("" = any id may be one of its voices)."""
    if api == OFFLINE:
        return offline_variants()
    if api == "openai":
        from studio.providers.speech_openai import VOICES

        return VOICES
    return ()


def voice_id_problem(*, api: str, voice_id: str) -> str:
    """Why `voice_id` cannot be a voice of the speech service `api`, for the producer; "" when
    it can (an empty id is the service's default voice)."""
    voice_id = voice_id.strip()
    if not voice_id:
        return ""
    variants = offline_variants()
    if api == OFFLINE:
        if voice_id in variants:
            return ""
        numbered = [v for v in variants if v[:1] in "mf" and v[1:].isdigit()]
        named = [v for v in variants if v not in numbered and not v.startswith("klatt")]
        return (
            f"The offline voice has no variant “{voice_id}”. Use one of "
            f"{', '.join(sorted(numbered))}, klatt, or a named one such as "
            f"{', '.join(named[:6])} (names are case-sensitive)."
        )
    if voice_id in variants and voice_id not in known_voices(api):
        label = SERVICE_LABELS.get(api, api)
        return (
            f"“{voice_id}” is a variant of the offline voice, not a voice of {label}: choose "
            f"“Offline voice” as the voice service, or enter one of {label}'s voices."
        )
    return ""


@dataclass(frozen=True)
class VoiceSample:
    content: bytes  # mono 16-bit WAV at SAMPLE_RATE
    sha256: str  # of `content`: what the line cache key and the cloned voice refer to
    seconds: float


def voice_sample_from(upload) -> VoiceSample:
    """The upload as a voice sample, or UploadRejected saying why it cannot be one."""
    data = read_limited(upload, max_bytes=MAX_SAMPLE_BYTES)
    shortest, longest = SAMPLE_SECONDS
    limits = f"a voice sample is {shortest:.0f} to {longest:.0f} seconds of one person speaking"
    declared = _declared_seconds(data)
    if declared is not None and declared > 2 * longest:
        # Refused from the header, before minutes of audio are decoded; the decoded length
        # below is what counts for everything else.
        raise UploadRejected(f"The recording is {declared:.0f} s long; {limits}.")
    try:
        samples, rate = decode_mono(data, sample_rate=SAMPLE_RATE)
    except NotAudio as error:
        raise UploadRejected(
            f"This file could not be read as audio ({error}). Upload a WAV, MP3, M4A, FLAC or "
            "OGG recording."
        ) from None
    seconds = len(samples) / rate
    if not shortest <= seconds <= longest:
        raise UploadRejected(f"The recording is {seconds:.1f} s long; {limits}.")
    if float(np.max(np.abs(samples))) < SILENT:
        raise UploadRejected("The recording is silent: no voice can be cloned from it.")
    content = wav_bytes(samples, rate)
    return VoiceSample(
        content=content, sha256=hashlib.sha256(content).hexdigest(), seconds=round(seconds, 2)
    )


def _declared_seconds(data: bytes) -> float | None:
    """The length the container claims, when it claims one (it may lie: never trusted alone)."""
    try:
        with av.open(io.BytesIO(data)) as container:
            if container.duration:
                return container.duration / av.time_base
    except (av.error.FFmpegError, ValueError, IndexError):
        return None
    return None
