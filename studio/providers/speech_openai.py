"""Speech on OpenAI's wire format: `POST {base}/audio/speech`.

Body `{model, input, voice, response_format: "wav", speed}`, plus `instructions` (how to say
the line: the dialog's emotion) for models that take them (gpt-4o-mini-tts; not tts-1 and
tts-1-hd). The answer is the audio itself. OpenAI, Kokoro-FastAPI, SiliconFlow and many
proxies serve this shape; whatever container they answer in is decoded with PyAV and kept as
mono WAV. The API gives no word timings: they are estimated from the text (`timed=False`).
Billed per character of input.
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.providers.audio import NotAudio, speech_from_audio, spoken_text
from studio.providers.base import Speech, SpeechCapabilities, SpeechRequest
from studio.providers.errors import MalformedResponse
from studio.providers.transport import HttpConfig, HttpProvider, Outcome, request_id_of

DEFAULT_VOICE = "alloy"
VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
NO_INSTRUCTIONS = ("tts-1", "tts-1-hd")  # OpenAI's older models refuse `instructions`
MAX_CHARACTERS = 4096
SPEED_RANGE = (0.25, 4.0)


@dataclass
class SpeechConfig(HttpConfig):
    pass


class OpenAISpeech(HttpProvider):
    kind = "speech"

    def __init__(self, config: SpeechConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.label = f"OpenAI-compatible speech ({config.model})"
        self.capabilities = SpeechCapabilities(
            emotion=config.model not in NO_INSTRUCTIONS,
            word_timings=False,
            max_characters=MAX_CHARACTERS,
            voices=VOICES,
        )

    def body(self, request: SpeechRequest) -> dict:
        low, high = SPEED_RANGE
        body = {
            "model": self.model,
            "input": request.text,
            "voice": request.voice.voice_id or DEFAULT_VOICE,
            "response_format": "wav",
            "speed": min(max(request.voice.speed, low), high),
        }
        if request.emotion and self.capabilities.emotion:
            body["instructions"] = f"Say it {request.emotion.strip()}."
        return body

    async def synthesize(self, request: SpeechRequest) -> Speech:
        text = spoken_text(request.text, limit=MAX_CHARACTERS, provider=self.name)
        request = SpeechRequest(text=text, voice=request.voice, emotion=request.emotion)
        url = self.url("audio/speech")

        async def attempt() -> Outcome:
            headers = {**self.headers(url), "Accept": "audio/*"}
            response = await self.send("POST", url, json=self.body(request), headers=headers)
            request_id = request_id_of(response)
            try:
                spoken = speech_from_audio(response.content, text=text, request_id=request_id)
            except NotAudio as error:
                raise MalformedResponse(
                    f"the answer is not audio ({error}; {self.clean(response.text[:80])!r})",
                    provider=self.name,
                    status=response.status_code,
                    request_id=request_id,
                ) from None
            return Outcome(value=spoken, characters=len(text), request_id=request_id)

        return await self.call(operation="speech.synthesize", attempt=attempt)
