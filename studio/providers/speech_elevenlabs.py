"""Speech on ElevenLabs' wire format, with the character timings subtitles need.

`POST {base}/v1/text-to-speech/{voice_id}/with-timestamps?output_format=mp3_44100_128` with
`{text, model_id, voice_settings: {speed}}` and the key in `xi-api-key`; the answer is
`{audio_base64, alignment: {characters, character_start_times_seconds,
character_end_times_seconds}}`. Characters are grouped into words on whitespace: a word starts
at its first character's start and ends at its last one's end (`timed=True`). SPEECH_BASE_URL
is the API root (`https://api.elevenlabs.io`); a trailing `/v1` is dropped, so both spellings
work and the path is never doubled. ElevenLabs voices are ids, so a character needs one: an
empty voice is refused before any call. Errors come as `{"detail": {"status", "message"}}` (or
FastAPI's `{"detail": [{"msg"}]}` on a 422): the vendor's message is kept in the error.

Instant voice cloning makes such an id from a recording: `POST {base}/v1/voices/add`, multipart
`name` + `files` (the recording), answered `{"voice_id", "requires_verification"}`; `DELETE
{base}/v1/voices/{voice_id}` removes one. Both go through the guard and the ledger like speech.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import itertools
from dataclasses import dataclass

from studio.providers.audio import NotAudio, speech_from_audio, spoken_text
from studio.providers.base import Speech, SpeechCapabilities, SpeechRequest, WordTiming
from studio.providers.errors import (
    BadRequest,
    MalformedResponse,
)
from studio.providers.transport import HttpConfig, HttpProvider, Outcome, request_id_of

OUTPUT_FORMAT = "mp3_44100_128"
MAX_CHARACTERS = 5000
SPEED_RANGE = (0.7, 1.2)  # what ElevenLabs' voice_settings.speed accepts
MAX_VOICE_NAME = 100
CLONE_DESCRIPTION = "Cloned by Drama Studio from a character's voice sample."


@dataclass
class ElevenLabsConfig(HttpConfig):
    auth: str = "xi-api-key"


class ElevenLabsSpeech(HttpProvider):
    kind = "speech"

    def __init__(self, config: ElevenLabsConfig, **kwargs) -> None:
        # A copy: the caller's config (the registry's) keeps the URL it was given.
        config = dataclasses.replace(
            config, base_url=config.base_url.rstrip("/").removesuffix("/v1")
        )
        super().__init__(config, **kwargs)
        self.label = f"ElevenLabs ({config.model})"
        self.capabilities = SpeechCapabilities(
            emotion=False,
            word_timings=True,
            clones_voices=True,
            needs_voice=True,
            max_characters=MAX_CHARACTERS,
        )

    def headers(self, url: str, *, idempotency_key: str = "") -> dict[str, str]:
        headers = super().headers(url, idempotency_key=idempotency_key)
        if "Authorization" in headers:  # transport's default; ElevenLabs reads xi-api-key
            headers["xi-api-key"] = headers.pop("Authorization").removeprefix("Bearer ")
        return headers

    def vendor_message(self, body) -> tuple[str, str]:
        """ElevenLabs puts its message under `detail`, not OpenAI's `error`."""
        detail = body.get("detail") if isinstance(body, dict) else None
        if detail is None:
            return super().vendor_message(body)
        if isinstance(detail, dict):
            return str(detail.get("message") or ""), str(detail.get("status") or "")
        if isinstance(detail, list):  # a 422 from request validation
            return "; ".join(str(d.get("msg") or d) for d in detail if isinstance(d, dict)), ""
        return str(detail), ""

    async def synthesize(self, request: SpeechRequest) -> Speech:
        text = spoken_text(request.text, limit=MAX_CHARACTERS, provider=self.name)
        voice_id = request.voice.voice_id.strip()
        if not voice_id:
            raise BadRequest(
                "ElevenLabs needs a voice: set the character's voice to an ElevenLabs voice id",
                provider=self.name,
            )
        low, high = SPEED_RANGE
        body = {
            "text": text,
            "model_id": self.model,
            "voice_settings": {"speed": min(max(request.voice.speed, low), high)},
        }
        url = self.url(f"v1/text-to-speech/{voice_id}/with-timestamps")

        async def attempt() -> Outcome:
            response = await self.send(
                "POST",
                url,
                params={"output_format": OUTPUT_FORMAT},
                json=body,
                headers=self.headers(url),
            )
            answer = self.json_of(response)
            request_id = request_id_of(response)
            spoken = self._speech(answer, text=text, request_id=request_id)
            return Outcome(value=spoken, characters=len(text), request_id=request_id)

        return await self.call(operation="speech.synthesize", attempt=attempt)

    async def clone_voice(self, *, name: str, sample: bytes, filename: str = "sample.wav") -> str:
        """A new voice made from the recording (instant voice cloning); returns its id."""
        url = self.url("v1/voices/add")
        fields = {"name": name[:MAX_VOICE_NAME], "description": CLONE_DESCRIPTION}

        async def attempt() -> Outcome:
            response = await self.send(
                "POST",
                url,
                data=fields,
                files=[("files", (filename, sample, "audio/wav"))],
                headers=self.headers(url),
            )
            answer = self.json_of(response)
            request_id = request_id_of(response)
            voice_id = answer.get("voice_id")
            if not isinstance(voice_id, str) or not voice_id.strip():
                raise MalformedResponse(
                    "the answer has no voice_id", provider=self.name, request_id=request_id
                )
            return Outcome(value=voice_id.strip(), request_id=request_id)

        # One try: an add whose answer was lost may have made the voice already, and trying
        # again would make a second one.
        return await self.call(operation="speech.clone_voice", attempt=attempt, retry=False)

    async def delete_voice(self, voice_id: str) -> None:
        url = self.url(f"v1/voices/{voice_id}")

        async def attempt() -> Outcome:
            response = await self.send("DELETE", url, headers=self.headers(url))
            return Outcome(value=None, request_id=request_id_of(response))

        await self.call(operation="speech.delete_voice", attempt=attempt)

    def _speech(self, answer: dict, *, text: str, request_id: str) -> Speech:
        def malformed(why: str) -> MalformedResponse:
            return MalformedResponse(why, provider=self.name, request_id=request_id)

        encoded = answer.get("audio_base64")
        if not encoded:
            raise malformed("the answer has no audio_base64")
        try:
            audio = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise malformed("audio_base64 is not base64") from None
        words = self._words(answer.get("alignment"), malformed)
        try:
            spoken = speech_from_audio(audio, text=text, words=words, request_id=request_id)
        except NotAudio as error:
            raise malformed(f"the answer's audio is not audio ({error})") from None
        if words and words[-1].end_s > spoken.duration_s + 0.25:
            raise malformed("the alignment runs past the end of the audio")
        return spoken

    @staticmethod
    def _words(alignment, malformed) -> tuple[WordTiming, ...]:
        if not isinstance(alignment, dict):
            raise malformed("the answer has no alignment")
        characters = alignment.get("characters")
        starts = alignment.get("character_start_times_seconds")
        ends = alignment.get("character_end_times_seconds")
        if not (
            isinstance(characters, list)
            and isinstance(starts, list)
            and isinstance(ends, list)
            and len(characters) == len(starts) == len(ends)
            and characters
        ):
            raise malformed("the alignment's characters and times do not line up")
        try:
            times = [
                (str(c), float(s), float(e))
                for c, s, e in zip(characters, starts, ends, strict=True)
            ]
        except (TypeError, ValueError):
            raise malformed("the alignment has times that are not numbers") from None
        if any(not (0 <= start <= end) for _c, start, end in times):
            raise malformed(
                "the alignment has a character time that is negative or ends before it starts"
            )
        words, current = [], []
        for char, start, end in [*times, (" ", 0.0, 0.0)]:
            if char.isspace():
                if current:
                    words.append(
                        WordTiming(
                            "".join(c for c, _s, _e in current), current[0][1], current[-1][2]
                        )
                    )
                current = []
            else:
                current.append((char, start, end))
        if not words:
            raise malformed("the alignment has no words")
        if any(b.start_s < a.start_s for a, b in itertools.pairwise(words)):
            raise malformed("the alignment's words go back in time")
        return tuple(words)
