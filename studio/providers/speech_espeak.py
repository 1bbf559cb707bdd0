"""The offline voice: espeak-ng from the `espeakng-loader` wheel, through ctypes.

A robotic draft voice, but repeatable (the same words at the same times; a line's last
samples vary by a few from call to call), in 100+ languages (Mandarin `cmn` and Cantonese `yue`
included), from pip alone: the wheel ships libespeak-ng 1.52 and its data. espeak-ng reports
when each word starts (WORD events, in ms of audio), so subtitles follow the real speech.

The library keeps global state (one voice, one callback), so synthesis runs in the shared CPU
pool (`studio.cpu`): one process speaks one line at a time, and the event loop never waits on
it. A character's voice maps onto espeak-ng as language + variant (`en-us+f3`: `Voice.language`
and `Voice.voice_id`, a variant from `espeak-ng-data/voices/!v`), speed onto words per minute
(175 at 1.0) and pitch onto its 0-100 base pitch (50, about 4 per semitone). Emotion is not
something espeak-ng can say: it is ignored.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import time
from pathlib import Path

import numpy as np

from studio.cpu import run_cpu
from studio.providers.audio import spoken_text, wav_bytes
from studio.providers.base import Speech, SpeechCapabilities, SpeechRequest, WordTiming
from studio.providers.errors import BadRequest
from studio.providers.ledger import DbLedger, Recorder, UsageEntry

MODEL = "espeak-ng"
WORDS_PER_MINUTE = 175
MAX_CHARACTERS = 2000
# espeak_AUDIO_OUTPUT, espeak_POSITION_TYPE, flags, parameters and event types (speak_lib.h).
AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
CHARS_UTF8 = 1
ENDPAUSE = 0x1000
INITIALIZE_DONT_EXIT = 0x8000
PARAM_RATE, PARAM_PITCH = 1, 3
EVENT_LIST_TERMINATED, EVENT_WORD = 0, 1
SILENCE = 0.01  # of full scale: below this a word's tail is silence
PUNCTUATION = " \t\n,.;:!?\"'()，。；：！？、“”「」…"


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of this synthesis
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class _Engine:
    """The library in this process, initialised once."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.data_path = espeakng_loader.get_data_path()
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        rate = self.lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise RuntimeError(f"espeak-ng did not start (data at {self.data_path})")
        self.sample_rate = rate
        self.lock = threading.Lock()
        self._samples: list[np.ndarray] = []
        self._events: list[tuple[int, int, int]] = []  # (character position, length, ms)
        self._callback = _CALLBACK(self._receive)  # kept referenced: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _receive(self, wav, count, events) -> int:
        if count > 0:
            self._samples.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        index = 0
        while events[index].type != EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == EVENT_WORD:
                self._events.append((event.text_position, event.length, event.audio_position))
            index += 1
        return 0  # go on

    def speak(self, text: str, *, voice: str, rate: int, pitch: int):
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(PARAM_RATE, rate, 0)
            self.lib.espeak_SetParameter(PARAM_PITCH, pitch, 0)
            self._samples, self._events = [], []
            encoded = text.encode("utf-8")
            status = self.lib.espeak_Synth(
                encoded, len(encoded) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8 | ENDPAUSE, None, None
            )
            if status != 0:
                raise RuntimeError(f"espeak-ng failed to speak (error {status})")
            samples = np.concatenate(self._samples) if self._samples else np.zeros(0, np.int16)
            return samples, list(self._events)


@functools.cache
def _engine() -> _Engine:
    return _Engine()


def voice_name(*, language: str, variant: str) -> str:
    language = (language or "en").strip().lower().replace("_", "-")
    variant = variant.strip()
    return f"{language}+{variant}" if variant else language


def variants() -> tuple[str, ...]:
    """The voice variants the wheel ships (m1-m8, f1-f5, klatt, and named ones)."""
    import espeakng_loader

    folder = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    return tuple(sorted(p.name for p in folder.iterdir() if p.is_file()))


def espeak_settings(*, speed: float, pitch: float) -> tuple[int, int]:
    """A voice's speed and pitch (semitones) as espeak-ng's words per minute and 0-100 base
    pitch (its command line takes the same: `-s`, `-p`)."""
    rate = round(min(max(WORDS_PER_MINUTE * speed, 80), 450))
    return rate, round(min(max(50 + 4 * pitch, 0), 100))


def speak(text: str, language: str, variant: str, speed: float, pitch: float) -> dict:
    """Synthesise one line (run in the pool): mono 16-bit WAV and word timings in seconds."""
    engine = _engine()
    rate, base_pitch = espeak_settings(speed=speed, pitch=pitch)
    samples, events = engine.speak(
        text, voice=voice_name(language=language, variant=variant), rate=rate, pitch=base_pitch
    )
    sample_rate = engine.sample_rate
    audio = samples.astype(np.float32) / 32768.0
    words = _word_timings(text, events, audio, sample_rate)
    return {
        "wav": wav_bytes(audio, sample_rate),
        "sample_rate": sample_rate,
        "duration_s": round(len(audio) / sample_rate, 3),
        "words": words,
    }


def _word_timings(
    text: str, events: list[tuple[int, int, int]], audio: np.ndarray, sample_rate: int
) -> list[tuple[str, float, float]]:
    """Each WORD event's word (the text up to the next one's: Chinese has no spaces, and the
    event's own length counts one character there) and start; it ends where the next one
    starts, or where the sound stops."""
    loud = np.flatnonzero(np.abs(audio) > SILENCE)
    sound_end = float(loud[-1] + 1) / sample_rate if len(loud) else 0.0
    starts = sorted({event for event in events if event[0] > 0})
    timings = []
    for index, (position, length, ms) in enumerate(starts):
        following = starts[index + 1][0] - 1 if index + 1 < len(starts) else len(text)
        word = text[position - 1 : max(following, position - 1 + length)].strip(PUNCTUATION)
        start = ms / 1000
        end = starts[index + 1][2] / 1000 if index + 1 < len(starts) else max(sound_end, start)
        if word:
            timings.append((word, round(start, 3), round(end, 3)))
    return timings


class EspeakSpeech:
    """The offline speech provider (registry.speech() without SPEECH_BASE_URL)."""

    name = "local"
    model = MODEL
    label = "offline draft voice (espeak-ng)"
    kind = "speech"

    def __init__(self, *, recorder: Recorder | None = None) -> None:
        self.recorder = recorder if recorder is not None else DbLedger()
        self.capabilities = SpeechCapabilities(
            emotion=False, word_timings=True, max_characters=MAX_CHARACTERS, voices=variants()
        )

    async def synthesize(self, request: SpeechRequest) -> Speech:
        text = spoken_text(request.text, limit=MAX_CHARACTERS, provider="the offline voice")
        voice = request.voice
        started = time.perf_counter()
        try:
            result = await run_cpu(
                speak, text, voice.language, voice.voice_id, voice.speed, voice.pitch
            )
        except ValueError as error:
            raise BadRequest(str(error), provider=self.name) from error
        await self.recorder.record(
            UsageEntry(
                provider=self.name,
                model=self.model,
                kind=self.kind,
                operation="speech.synthesize",
                characters=len(text),
                latency_ms=int((time.perf_counter() - started) * 1000),
            )
        )
        return Speech(
            wav=result["wav"],
            sample_rate=result["sample_rate"],
            duration_s=result["duration_s"],
            words=tuple(WordTiming(*word) for word in result["words"]),
            timed=True,
        )
