"""Audio in and out for the speech role: any container a service returns, decoded with PyAV
to mono float samples; mono 16-bit PCM WAV out. Pure CPU and Django-free.
"""

from __future__ import annotations

import io
import re
import wave

import av
import numpy as np

from studio.providers.base import Speech, WordTiming

MAX_SECONDS = 600.0  # longer than any spoken line: a reply past this is not one


class NotAudio(ValueError):
    """The bytes are not audio PyAV can decode (or decode to nothing)."""


def decode_mono(data: bytes, *, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Float32 samples in [-1, 1], mono, at `sample_rate` (the stream's own when None)."""
    if not data:
        raise NotAudio("the audio is empty")
    chunks: list[np.ndarray] = []
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise NotAudio("the file has no audio stream")
            stream = container.streams.audio[0]
            rate = sample_rate or stream.rate or stream.codec_context.sample_rate
            if not rate:
                raise NotAudio("the audio stream has no sample rate")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                if sum(len(c) for c in chunks) > MAX_SECONDS * rate:
                    raise NotAudio(f"the audio is longer than {MAX_SECONDS:.0f} s")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except NotAudio:
        raise
    except (av.error.FFmpegError, ValueError, IndexError) as error:
        raise NotAudio(f"the audio could not be decoded ({error})") from error
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if not len(samples):
        raise NotAudio("the audio holds no samples")
    return np.clip(samples, -1.0, 1.0), int(rate)


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """Mono 16-bit PCM WAV."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm.tobytes())
    return out.getvalue()


def wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    """A mono 16-bit WAV (as `wav_bytes` writes) back to float samples."""
    with wave.open(io.BytesIO(data), "rb") as handle:
        if handle.getsampwidth() != 2 or handle.getnchannels() != 1:
            raise NotAudio("expected mono 16-bit PCM WAV")
        frames = handle.readframes(handle.getnframes())
        rate = handle.getframerate()
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32767.0, rate


def spoken_text(text: str, *, limit: int, provider: str) -> str:
    """The line as a speech service gets it (whitespace tidied), or a clear refusal before
    any call: nothing to say, or more than the service takes at once."""
    from studio.providers.errors import BadRequest

    text = " ".join(text.split())
    if not text:
        raise BadRequest("there is no text to speak", provider=provider)
    if len(text) > limit:
        raise BadRequest(f"a line is at most {limit} characters for {provider}", provider=provider)
    return text


WORD = re.compile(r"\S+")


def estimated_words(text: str, duration_s: float) -> tuple[WordTiming, ...]:
    """Word timings spread over the line by length, for services that return none."""
    words = WORD.findall(text)
    total = sum(len(w) + 1 for w in words)
    if not words or duration_s <= 0:
        return ()
    timings, at = [], 0.0
    for word in words:
        span = duration_s * (len(word) + 1) / total
        timings.append(WordTiming(word, round(at, 3), round(at + span, 3)))
        at += span
    return tuple(timings)


def speech_from_audio(
    data: bytes,
    *,
    text: str,
    words: tuple[WordTiming, ...] | None = None,
    request_id: str = "",
) -> Speech:
    """Any decodable reply as a Speech: re-encoded as WAV at its own rate; word timings as
    given, or estimated from the text when the service gave none."""
    samples, rate = decode_mono(data)
    duration = len(samples) / rate
    timed = bool(words)
    return Speech(
        wav=wav_bytes(samples, rate),
        sample_rate=rate,
        duration_s=round(duration, 3),
        words=tuple(words) if words else estimated_words(text, duration),
        timed=timed,
        request_id=request_id,
    )
