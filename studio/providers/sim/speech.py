"""Speech in the simulator: OpenAI's `POST /audio/speech` and ElevenLabs'
`POST /v1/text-to-speech/{voice}/with-timestamps`, answering real audio whose length follows
the text (a tone per word, 70 ms a character, 80 ms between words, all divided by the speed),
so tests decode what the studio would hear.

- OpenAI (route `speech`, under `/v1` and `/openai`): `{model, input, voice, speed,
  response_format, instructions?}` -> the audio bytes in the requested format: wav (default),
  mp3, flac, aac (ADTS), opus (Ogg) or pcm (raw 16-bit little-endian at 24 kHz, as OpenAI's).
  Errors in OpenAI's `{"error": {"message", "type"}}`.
- ElevenLabs (route `speech_elevenlabs`, under `/elevenlabs/v1`): `{text, model_id,
  voice_settings: {speed}}` -> `{audio_base64 (MP3, this PyAV has libmp3lame), alignment,
  normalized_alignment}`, the character times matching the tones exactly. A voice id starting
  with `unknown` is not found (404), as ElevenLabs answers an id it does not know. Errors in
  ElevenLabs' `{"detail": {"status", "message"}}`.

- ElevenLabs' instant voice cloning (route `voice_add_elevenlabs`): `POST
  /elevenlabs/v1/voices/add`, multipart `name` and `files` -> `{voice_id,
  requires_verification: false}`. Every file must
  decode as audio (PyAV), else 400; a missing name or file is FastAPI's 422. The voices made are
  kept in `voices` (id -> name, files' names and seconds, auth header names);
  `DELETE /elevenlabs/v1/voices/{voice_id}` (route `voice_delete_elevenlabs`) removes one, 404
  for an id it never made.

Each counts in the simulator's stats under its route name and takes its faults like every
route. The bodies received are kept in `speech_bodies` (ElevenLabs' with `voice_id`, `query` and
`auth`: the names of the auth headers that came, never their values) for tests that check what
was sent.
"""

from __future__ import annotations

import base64
import hashlib
import io

import av
import numpy as np

from studio.providers.audio import NotAudio, decode_mono, wav_bytes
from studio.providers.sim.http import Request, Response, error_response
from studio.providers.sim.state import SimState

RATE = 24_000  # OpenAI's speech is 24 kHz
PER_CHARACTER_S = 0.07
WORD_GAP_S = 0.08
OPENAI_MAX_CHARACTERS = 4096
ELEVENLABS_MAX_CHARACTERS = 5000
ELEVENLABS_SPEED = (0.7, 1.2)
# response_format -> (container, encoder, content type); wav and pcm are written by hand.
ENCODED = {
    "mp3": ("mp3", "libmp3lame", "audio/mpeg"),
    "flac": ("flac", "flac", "audio/flac"),
    "aac": ("adts", "aac", "audio/aac"),
    "opus": ("ogg", "libopus", "audio/ogg"),
}
FORMATS = ("wav", "pcm", *ENCODED)
AUTH_HEADERS = ("xi-api-key", "authorization", "x-api-key")


def spoken_tones(text: str, *, speed: float = 1.0) -> np.ndarray:
    """A tone per word (pitch from the word), silence between them."""
    pieces = []
    for index, word in enumerate(text.split()):
        seconds = max(len(word), 1) * PER_CHARACTER_S / speed
        t = np.arange(int(seconds * RATE)) / RATE
        frequency = 180 + (sum(map(ord, word)) % 12) * 20
        envelope = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)  # no clicks at the edges
        if index:
            pieces.append(np.zeros(int(WORD_GAP_S / speed * RATE), np.float32))
        pieces.append((0.4 * envelope * np.sin(2 * np.pi * frequency * t)).astype(np.float32))
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def encoded(samples: np.ndarray, response_format: str) -> bytes:
    """The samples in one of OpenAI's response formats."""
    if response_format == "wav":
        return wav_bytes(samples, RATE)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    if response_format == "pcm":
        return pcm.tobytes()
    container_format, codec, _type = ENCODED[response_format]
    out = io.BytesIO()
    with av.open(out, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=RATE, layout="mono")
        stream.codec_context.open()  # opened early: AAC and Opus take fixed-size frames
        size = stream.codec_context.frame_size or 1152
        for offset in range(0, len(pcm), size):
            chunk = np.ascontiguousarray(pcm[offset : offset + size].reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, offset
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def _speed(value) -> float | None:
    try:
        return float(1.0 if value is None else value)
    except (TypeError, ValueError):
        return None


# --- OpenAI ------------------------------------------------------------------------------------


async def openai_speech(sim: SimState, request: Request, fault: str) -> Response:
    try:
        body = request.json()
    except ValueError:
        return error_response(400, "the body is not JSON")
    if not isinstance(body, dict) or not str(body.get("input") or "").strip():
        return error_response(400, "input is required")
    if not body.get("voice"):
        return error_response(400, "voice is required")
    speed = _speed(body.get("speed"))
    if speed is None or not 0.25 <= speed <= 4.0:
        return error_response(400, "speed must be between 0.25 and 4.0")
    text = str(body["input"])
    if len(text) > OPENAI_MAX_CHARACTERS:
        return error_response(400, f"input is longer than {OPENAI_MAX_CHARACTERS} characters")
    response_format = str(body.get("response_format") or "wav")
    if response_format not in FORMATS:
        return error_response(400, f"response_format must be one of {', '.join(FORMATS)}")
    if "instructions" in body and str(body.get("model", "")).startswith("tts-1"):
        # OpenAI's older models refuse instructions, as the real service does.
        return error_response(400, "instructions are not supported for this model")
    sim.speech_bodies.append(body)
    audio = encoded(spoken_tones(text, speed=speed), response_format)
    content_type = {"wav": "audio/wav", "pcm": "audio/pcm"}.get(response_format)
    return Response(200, audio, {"content-type": content_type or ENCODED[response_format][2]})


# --- ElevenLabs --------------------------------------------------------------------------------


def elevenlabs_error(status: int, code: str, message: str) -> Response:
    return Response.of_json({"detail": {"status": code, "message": message}}, status)


def alignment(text: str, *, speed: float) -> dict:
    """Each character's start and end, matching `spoken_tones`: a word's characters share its
    tone evenly, the spaces between words are the gaps."""
    characters, starts, ends, at = [], [], [], 0.0
    step = PER_CHARACTER_S / speed
    for index, word in enumerate(text.split()):
        if index:
            characters.append(" ")
            starts.append(round(at, 3))
            at += WORD_GAP_S / speed
            ends.append(round(at, 3))
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
    try:
        body = request.json()
    except ValueError:
        return elevenlabs_error(400, "invalid_json", "the body is not JSON")
    text = " ".join(str(body.get("text") or "").split()) if isinstance(body, dict) else ""
    if not text:
        return Response.of_json(
            {"detail": [{"loc": ["body", "text"], "msg": "Field required", "type": "missing"}]},
            422,
        )
    if voice_id.startswith("unknown"):
        return elevenlabs_error(
            404, "voice_not_found", f"A voice with the voice_id {voice_id} was not found."
        )
    low, high = ELEVENLABS_SPEED
    speed = _speed((body.get("voice_settings") or {}).get("speed"))
    if speed is None or not low <= speed <= high:
        return elevenlabs_error(
            400, "invalid_voice_settings", f"speed must be between {low} and {high}"
        )
    if len(text) > ELEVENLABS_MAX_CHARACTERS:
        return elevenlabs_error(
            400, "text_too_long", f"text is longer than {ELEVENLABS_MAX_CHARACTERS} characters"
        )
    sim.speech_bodies.append(
        {
            **body,
            "voice_id": voice_id,
            "query": dict(request.query),
            "auth": [name for name in AUTH_HEADERS if name in request.headers],
        }
    )
    audio = encoded(spoken_tones(text, speed=speed), "mp3")
    timings = alignment(text, speed=speed)
    return Response.of_json(
        {
            "audio_base64": base64.b64encode(audio).decode(),
            "alignment": timings,
            "normalized_alignment": timings,
        }
    )


def _missing(field: str) -> Response:
    return Response.of_json(
        {"detail": [{"loc": ["body", field], "msg": "Field required", "type": "missing"}]}, 422
    )


async def elevenlabs_voice_add(sim: SimState, request: Request, fault: str) -> Response:
    values, files = request.form()
    name = values.get("name", "").strip()
    if not name:
        return _missing("name")
    if not files:
        return _missing("files")
    received = []
    for field, (filename, content) in files.items():
        if field != "files":
            continue
        try:
            samples, rate = decode_mono(content)
        except NotAudio as error:
            return elevenlabs_error(
                400, "invalid_audio", f"The file {filename} is not audio we can read ({error})."
            )
        received.append({"filename": filename, "seconds": round(len(samples) / rate, 3)})
    if not received:
        return _missing("files")
    voice_id = "sim" + hashlib.sha1(f"{name}/{len(sim.voices)}".encode()).hexdigest()[:17]
    sim.voices[voice_id] = {
        "name": name,
        "description": values.get("description", ""),
        "files": received,
        "auth": [header for header in AUTH_HEADERS if header in request.headers],
    }
    return Response.of_json({"voice_id": voice_id, "requires_verification": False})


async def elevenlabs_voice_delete(sim: SimState, request: Request, fault: str, voice_id: str):
    if sim.voices.pop(voice_id, None) is None:
        return elevenlabs_error(
            404, "voice_not_found", f"A voice with the voice_id {voice_id} was not found."
        )
    return Response.of_json({"status": "ok"})
