"""The dialog track of a take: placing spoken lines on the scene's timeline, mixing them to
48 kHz stereo and muxing them as AAC into the take's MP4. Pure CPU and Django-free, so the
mix and the mux run in the shared process pool (studio.cpu).
"""

from __future__ import annotations

import io
import itertools
import os
import wave
from dataclasses import dataclass

import av
import numpy as np

from studio.providers.audio import wav_samples

TRACK_RATE = 48_000
LEAD_IN_S = 0.3  # before the first line (after the title card of the offline animatic)
GAP_S = 0.25  # between two lines of the same speaker
TURN_GAP_S = 0.45  # when the speaker changes: the other one answers
MIN_GAP_S = 0.1  # what gaps shrink to when the scene is short
TAIL_S = 0.5  # after the last line
AAC_BITRATE = 160_000


@dataclass(frozen=True)
class SpokenLine:
    line_id: int
    speaker: str
    text: str
    duration_s: float
    audio_key: str
    words: tuple[tuple[str, float, float], ...] = ()
    voice: str = ""  # the service and voice heard, for the take page
    voice_note: str = ""  # why it is not the character's own voice ("" when it is)


def needed_seconds(lines: list[SpokenLine], *, start_s: float = 0.0) -> float:
    """How long a scene must be to hold these lines with natural gaps."""
    if not lines:
        return 0.0
    gaps = sum(_gap(a, b) for a, b in itertools.pairwise(lines))
    return start_s + LEAD_IN_S + sum(line.duration_s for line in lines) + gaps + TAIL_S


def _gap(before: SpokenLine, after: SpokenLine) -> float:
    return TURN_GAP_S if before.speaker != after.speaker else GAP_S


def place(lines: list[SpokenLine], *, start_s: float, scene_s: float) -> list[dict]:
    """Each line's start and end on the scene's timeline, in order, never overlapping. When
    the scene is shorter than `needed_seconds`, the gaps shrink (to MIN_GAP_S) before anything
    else; speech itself is never sped up or trimmed here (a line running past the scene's end
    is cut by the video's length, and the take says so)."""
    if not lines:
        return []
    natural = needed_seconds(lines, start_s=start_s)
    lead, tail = LEAD_IN_S, TAIL_S
    gaps = [_gap(a, b) for a, b in itertools.pairwise(lines)]
    if natural > scene_s:
        room = scene_s - start_s - sum(line.duration_s for line in lines)
        flexible = lead + tail + sum(gaps)
        floor = MIN_GAP_S * (len(gaps) + 2)
        scale = max(room - floor, 0.0) / max(flexible - floor, 1e-9)
        lead = MIN_GAP_S + (lead - MIN_GAP_S) * min(scale, 1.0)
        gaps = [MIN_GAP_S + (gap - MIN_GAP_S) * min(scale, 1.0) for gap in gaps]
    placed, at = [], start_s + lead
    for index, line in enumerate(lines):
        end = at + line.duration_s
        placed.append(
            {
                "line_id": line.line_id,
                "speaker": line.speaker,
                "text": line.text,
                "start_s": round(at, 3),
                "end_s": round(end, 3),
                "audio_key": line.audio_key,
                "words": [[w, round(at + s, 3), round(at + e, 3)] for w, s, e in line.words],
                "voice": line.voice,
                "voice_note": line.voice_note,
            }
        )
        at = end + (gaps[index] if index < len(gaps) else 0.0)
    return placed


def mix(track: list[dict], audio_paths: dict[str, str], *, duration_s: float) -> np.ndarray:
    """The placed lines as one stereo float32 track at TRACK_RATE, `duration_s` long."""
    total = max(round(duration_s * TRACK_RATE), 1)
    out = np.zeros(total, np.float32)
    for entry in track:
        with open(audio_paths[entry["audio_key"]], "rb") as handle:
            samples, rate = wav_samples(handle.read())
        if rate != TRACK_RATE:
            samples = _resample(samples, rate)
        start = round(entry["start_s"] * TRACK_RATE)
        if start >= total:
            continue
        piece = samples[: total - start]
        out[start : start + len(piece)] += piece
    peak = float(np.abs(out).max()) if len(out) else 0.0
    if peak > 0.99:  # overlapping lines (a very short scene): never clip
        out *= 0.99 / peak
    return np.stack([out, out])


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """Linear resampling to TRACK_RATE: speech sits far below both Nyquist limits."""
    count = round(len(samples) * TRACK_RATE / rate)
    positions = np.arange(count) * (rate / TRACK_RATE)
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)


def video_seconds(path: str) -> float:
    with av.open(path) as source:
        video = source.streams.video[0]
        if video.duration:
            return float(video.duration * video.time_base)
        return (source.duration or 0) / 1_000_000


def dialog_wav(video_path: str, track: list[dict], audio_paths: dict[str, str]) -> bytes:
    """The dialog track as the video's length of 16-bit stereo WAV at TRACK_RATE: the audio a
    lip-sync service is sent, aligned with the video from its first frame."""
    samples = mix(track, audio_paths, duration_s=video_seconds(video_path))
    pcm = (np.clip(samples.T, -1.0, 1.0) * 32767.0).round().astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as handle:
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(TRACK_RATE)
        handle.writeframes(pcm.tobytes())
    return out.getvalue()


def mux_dialog(video_path: str, track: list[dict], audio_paths: dict[str, str]) -> dict:
    """Replace the MP4's audio with the dialog track (AAC-LC 48 kHz stereo), copying the video
    stream as it is. Written to a .part file and renamed: a crash leaves the take's video whole.
    Returns the track's duration and the number of lines heard."""
    duration = video_seconds(video_path)
    samples = mix(track, audio_paths, duration_s=duration)
    part = f"{video_path}.part"
    with (
        av.open(video_path) as source,
        av.open(part, "w", format="mp4", options={"movflags": "+faststart"}) as target,
    ):
        in_video = source.streams.video[0]
        out_video = target.add_stream_from_template(in_video)
        audio = target.add_stream("aac", rate=TRACK_RATE, layout="stereo")
        audio.bit_rate = AAC_BITRATE
        for packet in source.demux(in_video):
            if packet.dts is None:
                continue
            packet.stream = out_video
            target.mux(packet)
        frame_size = 1024
        for offset in range(0, samples.shape[1], frame_size):
            chunk = np.ascontiguousarray(samples[:, offset : offset + frame_size])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate = TRACK_RATE
            frame.pts = offset
            for packet in audio.encode(frame):
                target.mux(packet)
        for packet in audio.encode(None):
            target.mux(packet)
    os.replace(part, video_path)
    heard = sum(1 for entry in track if entry["start_s"] < duration)
    return {"duration_s": round(duration, 3), "lines": len(track), "lines_heard": heard}


def with_heard(track: list[dict], duration_s: float) -> list[dict]:
    """The track with each line marked as the take plays it: "whole", "cut" (it runs past the
    end of the video) or "unheard" (it starts after the end)."""

    def heard(entry: dict) -> str:
        if entry["end_s"] <= duration_s + 0.01:
            return "whole"
        return "cut" if entry["start_s"] < duration_s else "unheard"

    return [{**entry, "heard": heard(entry)} for entry in track]
