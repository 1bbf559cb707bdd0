"""Speech in the simulator: OpenAI's `POST /audio/speech` (WAV) and ElevenLabs'
`/v1/text-to-speech/{voice}/with-timestamps` (MP3 in base64 with character timings),
answering real audio whose length follows the text (a tone per word, 70 ms a character, 80 ms
between words), so tests decode what the studio would hear. The bodies received are kept
(`speech_bodies`) for tests that check what was sent."""

from __future__ import annotations

import numpy as np

from studio.providers.audio import wav_bytes
from studio.providers.sim.http import Request, Response, error_response
from studio.providers.sim.state import SimState

RATE = 24_000
PER_CHARACTER_S = 0.07
WORD_GAP_S = 0.08


def spoken_tones(text: str, *, speed: float = 1.0) -> np.ndarray:
    """A tone per word (pitch from the word), silence between them."""
    pieces = []
    for index, word in enumerate(text.split()):
        seconds = max(len(word), 1) * PER_CHARACTER_S / speed
        t = np.arange(int(seconds * RATE)) / RATE
        frequency = 180 + (sum(map(ord, word)) % 12) * 20
        envelope = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)
        if index:
            pieces.append(np.zeros(int(WORD_GAP_S / speed * RATE), np.float32))
        pieces.append((0.4 * envelope * np.sin(2 * np.pi * frequency * t)).astype(np.float32))
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


async def openai_speech(sim: SimState, request: Request, fault: str) -> Response:
    try:
        body = request.json()
    except ValueError:
        return error_response(400, "the body is not JSON")
    if not isinstance(body, dict) or not str(body.get("input") or "").strip():
        return error_response(400, "input is required")
    if not body.get("voice"):
        return error_response(400, "voice is required")
    try:
        speed = float(body.get("speed", 1.0))
    except (TypeError, ValueError):
        speed = 0.0
    if not 0.25 <= speed <= 4.0:
        return error_response(400, "speed must be between 0.25 and 4.0")
    if len(body["input"]) > 4096:
        return error_response(400, "input is longer than 4096 characters")
    sim.speech_bodies.append(body)
    audio = wav_bytes(spoken_tones(body["input"], speed=speed), RATE)
    return Response(200, audio, {"content-type": "audio/wav"})


def _mp3(samples: np.ndarray) -> bytes:
    """MP3, as ElevenLabs answers by default."""
    import io

    import av

    out = io.BytesIO()
    with av.open(out, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=RATE, layout="mono")
        for offset in range(0, len(samples), 1152):
            chunk = samples[offset : offset + 1152].reshape(1, -1)
            pcm = (np.clip(chunk, -1, 1) * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(pcm), format="s16", layout="mono"
            )
            frame.sample_rate, frame.pts = RATE, offset
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def _alignment(text: str, *, speed: float) -> dict:
    """Each character's start and end, matching `spoken_tones`: a word's characters share its
    tone evenly, the spaces between words are the gaps."""
    characters, starts, ends, at = [], [], [], 0.0
    for index, word in enumerate(text.split()):
        if index:
            characters.append(" ")
            starts.append(round(at, 3))
            at += WORD_GAP_S / speed
            ends.append(round(at, 3))
        step = PER_CHARACTER_S / speed
        for char in word:
            characters.append(char)
            starts.append(round(at, 3))
            at += step
            ends.append(round(at, 3))
    return {
        "characters": characters,
        "character_start_times_seconds": starts,
        "character_end_times_seconds": ends,
    }


async def elevenlabs_speech(sim: SimState, request: Request, fault: str, voice_id: str):
    import base64

    try:
        body = request.json()
    except ValueError:
        return error_response(400, "the body is not JSON")
    text = str(body.get("text") or "").strip() if isinstance(body, dict) else ""
    if not text:
        return Response.of_json({"detail": {"status": "invalid", "message": "text"}}, 422)
    speed = float((body.get("voice_settings") or {}).get("speed", 1.0))
    sim.speech_bodies.append({**body, "voice_id": voice_id, "query": dict(request.query)})
    text = " ".join(text.split())
    audio = _mp3(spoken_tones(text, speed=speed))
    return Response.of_json(
        {
            "audio_base64": base64.b64encode(audio).decode(),
            "alignment": _alignment(text, speed=speed),
            "normalized_alignment": _alignment(text, speed=speed),
        }
    )
