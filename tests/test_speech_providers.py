"""The remote speech adapters against the simulator: OpenAI's /audio/speech and ElevenLabs'
with-timestamps. Real audio back (decoded here), the emotion sent where the model takes it,
word timings in order and inside the audio, billed per character, faults handled."""

import base64
import datetime
import json
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync

from studio.models import Price, UsageRecord
from studio.providers import registry
from studio.providers.audio import decode_mono
from studio.providers.base import SpeechRequest, Usage, Voice
from studio.providers.errors import BadRequest, MalformedResponse
from studio.providers.ledger import DbLedger, MemoryLedger, cost_usd
from studio.providers.sim import speech as sim_speech
from studio.providers.sim.http import Response
from studio.providers.speech_elevenlabs import ElevenLabsConfig, ElevenLabsSpeech
from studio.providers.speech_openai import OpenAISpeech, SpeechConfig
from tests.providers_support import API_KEY, TIMEOUT_S, fast_guard, running_sim

ELEVEN_VOICE = "JBFqnCBsd6RMkjVDRZzb"
LINE = "You came back after all."


@pytest.fixture
async def sim():
    async with running_sim() as simulator:
        yield simulator


def speech_for(sim, *, ledger=None, adapter=OpenAISpeech, **config):
    fields = dict(
        name="openai",
        base_url=f"{sim.url}/v1",
        model="gpt-4o-mini-tts",
        api_key=API_KEY,
        timeout_s=TIMEOUT_S,
        retry_after_cap_s=0.05,
    )
    return adapter(
        SpeechConfig(**(fields | config)),
        guard=fast_guard(),
        recorder=ledger if ledger is not None else MemoryLedger(),
    )


def elevenlabs_for(sim, *, ledger=None, **config):
    fields = dict(
        name="elevenlabs",
        base_url=f"{sim.url}/elevenlabs",
        model="eleven_multilingual_v2",
        api_key=API_KEY,
        timeout_s=TIMEOUT_S,
        retry_after_cap_s=0.05,
    )
    return ElevenLabsSpeech(
        ElevenLabsConfig(**(fields | config)),
        guard=fast_guard(),
        recorder=ledger if ledger is not None else MemoryLedger(),
    )


def answer_with(sim, route: str, make) -> None:
    """Route `route` answers `await make(request, fault, **groups)` instead; the simulator's
    counting and faults still come first."""

    async def handler(_sim, request, fault, **groups):
        return await make(request, fault, **groups)

    sim.routes = [
        (method, pattern, name, handler if name == route else original)
        for method, pattern, name, original in sim.routes
    ]


def assert_words_fit(spoken) -> None:
    """Word timings in order, each inside the audio (within a frame of its end)."""
    assert spoken.words
    for word in spoken.words:
        assert 0 <= word.start_s <= word.end_s <= spoken.duration_s + 0.03
    starts = [w.start_s for w in spoken.words]
    assert starts == sorted(starts)


# --- OpenAI -----------------------------------------------------------------------------------


async def test_it_speaks_a_line_as_real_audio_that_grows_with_the_text(sim):
    ledger = MemoryLedger()
    voice = speech_for(sim, ledger=ledger)

    short = await voice.synthesize(SpeechRequest("Not now."))
    long = await voice.synthesize(
        SpeechRequest("You came back after all these years.", Voice(voice_id="nova", speed=1.2))
    )

    for spoken in (short, long):
        samples, rate = decode_mono(spoken.wav)
        assert len(samples) / rate == pytest.approx(spoken.duration_s, abs=0.01)
        assert not spoken.timed  # this API gives no timings: estimated from the text
        assert spoken.words[-1].end_s == pytest.approx(spoken.duration_s, abs=0.01)
        assert_words_fit(spoken)
    assert long.duration_s > 2 * short.duration_s
    # The simulator's tones: 70 ms a character, 80 ms between words, divided by the speed.
    assert short.duration_s == pytest.approx(7 * 0.07 + 0.08, abs=0.01)
    body = sim.speech_bodies[-1]
    assert body["voice"] == "nova" and body["speed"] == 1.2 and body["response_format"] == "wav"
    assert sim.speech_bodies[0]["voice"] == "alloy"  # the default voice
    entries = [e for e in ledger.entries if e.ok]
    assert [(e.kind, e.characters) for e in entries] == [("speech", 8), ("speech", 36)]
    assert sim.stats.requests["speech"] == 2


async def test_it_clamps_the_speed_to_what_the_api_takes(sim):
    voice = speech_for(sim)
    await voice.synthesize(SpeechRequest("Fast.", Voice(speed=9.0)))
    await voice.synthesize(SpeechRequest("Slow.", Voice(speed=0.1)))
    assert [b["speed"] for b in sim.speech_bodies] == [4.0, 0.25]


@pytest.mark.parametrize(
    ("model", "takes_it"),
    [("gpt-4o-mini-tts", True), ("tts-1", False), ("tts-1-hd", False), ("kokoro", True)],
)
async def test_the_emotion_goes_as_instructions_only_to_models_that_take_them(sim, model, takes_it):
    voice = speech_for(sim, model=model)
    await voice.synthesize(SpeechRequest("Get out.", emotion="angry"))
    await voice.synthesize(SpeechRequest("Get out."))

    with_emotion, without_emotion = sim.speech_bodies
    assert voice.capabilities.emotion is takes_it
    assert with_emotion.get("instructions") == ("Say it angry." if takes_it else None)
    assert "instructions" not in without_emotion


@pytest.mark.parametrize("response_format", ["mp3", "flac", "aac", "opus"])
async def test_it_decodes_whatever_container_the_server_answers_in(sim, response_format):
    class IgnoresWav(OpenAISpeech):
        """As some look-alike servers do: their own format, whatever was asked."""

        def body(self, request):
            return super().body(request) | {"response_format": response_format}

    as_wav = await speech_for(sim).synthesize(SpeechRequest(LINE))
    spoken = await speech_for(sim, adapter=IgnoresWav).synthesize(SpeechRequest(LINE))

    samples, rate = decode_mono(spoken.wav)
    assert spoken.wav[:4] == b"RIFF" and rate == spoken.sample_rate
    assert len(samples) / rate == pytest.approx(spoken.duration_s, abs=0.01)
    # AAC and MP3 pad a frame or two; the length still follows the text.
    assert spoken.duration_s == pytest.approx(as_wav.duration_s, abs=0.1)


async def test_a_5xx_or_a_429_is_tried_again_and_a_400_is_not(sim):
    ledger = MemoryLedger()
    voice = speech_for(sim, ledger=ledger)
    sim.queue_faults("speech", "5xx", "429")

    spoken = await voice.synthesize(SpeechRequest("Once more."))

    assert spoken.duration_s > 0.5
    assert sim.stats.requests["speech"] == 3
    assert [e.ok for e in ledger.entries] == [False, False, True]
    sim.queue_faults("speech", "status:400")
    with pytest.raises(BadRequest, match="simulated 400") as caught:
        await voice.synthesize(SpeechRequest("Never again."))
    assert caught.value.status == 400 and not caught.value.retryable
    assert sim.stats.requests["speech"] == 4


async def test_the_vendors_own_refusal_reaches_the_caller(sim):
    voice = speech_for(sim, model="tts-1")

    class SendsInstructionsAnyway(OpenAISpeech):
        def body(self, request):
            return super().body(request) | {"instructions": "Whisper."}

    stubborn = speech_for(sim, model="tts-1", adapter=SendsInstructionsAnyway)
    with pytest.raises(BadRequest, match="instructions are not supported"):
        await stubborn.synthesize(SpeechRequest("Hello."))
    assert (await voice.synthesize(SpeechRequest("Hello."))).duration_s > 0


def static(status: int, body: bytes, content_type: str):
    async def make(request, fault, **groups):
        return Response(status, body, {"content-type": content_type})

    return make


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        (b'{"id": "speech_1", "object": "audio"}', "application/json"),
        (b"", "audio/wav"),
        (b"RIFF\x00\x01garbage-that-is-no-wave" * 3, "audio/wav"),
    ],
    ids=["html", "json", "empty", "garbage"],
)
async def test_an_answer_that_is_not_audio_is_a_clear_error(sim, body, content_type):
    answer_with(sim, "speech", static(200, body, content_type))
    voice = speech_for(sim)

    with pytest.raises(MalformedResponse, match="not audio") as caught:
        await voice.synthesize(SpeechRequest("Hello?"))
    assert caught.value.retryable  # often a proxy's hiccup: the guard tried again
    assert sim.stats.requests["speech"] == 4


async def test_the_simulators_malformed_fault_is_a_clear_error(sim):
    voice = speech_for(sim)
    sim.queue_faults("speech", *["malformed"] * 4)
    with pytest.raises(MalformedResponse, match="not audio"):
        await voice.synthesize(SpeechRequest("Hello?"))


async def test_it_refuses_empty_and_overlong_text_without_calling(sim):
    voice = speech_for(sim)
    with pytest.raises(BadRequest, match="no text"):
        await voice.synthesize(SpeechRequest("  "))
    with pytest.raises(BadRequest, match="4096"):
        await voice.synthesize(SpeechRequest("a" * 5000))
    assert sim.stats.requests["speech"] == 0


async def test_the_openai_route_also_answers_under_its_speech_api_prefix(sim):
    spoken = await speech_for(sim, base_url=f"{sim.url}/openai").synthesize(SpeechRequest(LINE))
    assert spoken.duration_s > 1.5 and sim.stats.requests["speech"] == 1


# --- billing ----------------------------------------------------------------------------------


def test_speech_is_priced_per_million_characters():
    class FakePrice:
        input_per_mtok = cached_input_per_mtok = output_per_mtok = None
        per_second = per_request = None
        per_mchar = Decimal("15")

    assert cost_usd(price=FakePrice, usage=Usage(), characters=2000) == Decimal("0.03")


@pytest.mark.django_db
def test_each_spoken_line_is_recorded_with_its_characters_and_cost():
    for name, model in (("openai", "gpt-4o-mini-tts"), ("elevenlabs", "eleven_multilingual_v2")):
        Price.objects.create(
            provider=name,
            model=model,
            kind="speech",
            per_mchar=Decimal("30"),
            source="test",
            effective_date=datetime.date(2025, 1, 1),
        )

    async def scenario():
        async with running_sim() as sim:
            sim.queue_faults("speech", "5xx")
            await speech_for(sim, ledger=DbLedger()).synthesize(SpeechRequest(LINE))
            eleven = elevenlabs_for(sim, ledger=DbLedger())
            await eleven.synthesize(SpeechRequest(LINE, Voice(voice_id=ELEVEN_VOICE)))

    async_to_sync(scenario)()
    failed, openai, eleven = UsageRecord.objects.order_by("id")
    assert not failed.ok and failed.operation == "speech.synthesize" and failed.cost_usd == 0
    for record in (openai, eleven):
        assert record.ok and record.price.kind == "speech" and record.characters == len(LINE)
        assert record.cost_usd == Decimal(len(LINE)) * 30 / 1_000_000
    assert (openai.provider, eleven.provider) == ("openai", "elevenlabs")


# --- ElevenLabs -------------------------------------------------------------------------------


async def test_elevenlabs_words_come_from_its_character_timings(sim):
    ledger = MemoryLedger()
    voice = elevenlabs_for(sim, ledger=ledger)

    spoken = await voice.synthesize(SpeechRequest(LINE, Voice(voice_id=ELEVEN_VOICE)))

    samples, rate = decode_mono(spoken.wav)
    assert len(samples) / rate == pytest.approx(spoken.duration_s, abs=0.01)
    assert spoken.timed and [w.text for w in spoken.words] == LINE.split()
    assert_words_fit(spoken)
    # The simulator's tones: 70 ms a character, 80 ms between words.
    assert spoken.words[1].start_s == pytest.approx(3 * 0.07 + 0.08, abs=0.002)
    assert spoken.words[1].end_s == pytest.approx(7 * 0.07 + 0.08, abs=0.002)
    body = sim.speech_bodies[-1]
    assert body["voice_id"] == ELEVEN_VOICE and body["model_id"] == "eleven_multilingual_v2"
    assert body["text"] == LINE and body["voice_settings"] == {"speed": 1.0}
    assert body["query"] == {"output_format": "mp3_44100_128"}
    assert body["auth"] == ["xi-api-key"]  # and no Authorization header beside it
    assert [(e.kind, e.characters) for e in ledger.entries] == [("speech", len(LINE))]
    assert sim.stats.requests["speech_elevenlabs"] == 1


async def test_elevenlabs_speech_grows_with_the_text_and_follows_the_speed(sim):
    voice = elevenlabs_for(sim)
    short = await voice.synthesize(SpeechRequest("No.", Voice(voice_id=ELEVEN_VOICE)))
    long = await voice.synthesize(SpeechRequest(LINE, Voice(voice_id=ELEVEN_VOICE)))
    fast = await voice.synthesize(SpeechRequest(LINE, Voice(voice_id=ELEVEN_VOICE, speed=3.0)))

    assert long.duration_s > 3 * short.duration_s
    assert sim.speech_bodies[-1]["voice_settings"]["speed"] == 1.2  # ElevenLabs' top speed
    assert fast.words[-1].end_s == pytest.approx(long.words[-1].end_s / 1.2, abs=0.01)


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
async def test_elevenlabs_base_url_may_end_in_v1_without_doubling_it(sim, suffix):
    voice = elevenlabs_for(sim, base_url=f"{sim.url}/elevenlabs{suffix}")
    spoken = await voice.synthesize(SpeechRequest("Hello there.", Voice(voice_id=ELEVEN_VOICE)))
    assert spoken.timed and sim.stats.requests["speech_elevenlabs"] == 1


async def test_elevenlabs_needs_a_voice_id(sim):
    voice = elevenlabs_for(sim)
    with pytest.raises(BadRequest, match="set the character's voice to an ElevenLabs voice id"):
        await voice.synthesize(SpeechRequest("Hello.", Voice(voice_id="  ")))
    assert sim.stats.requests["speech_elevenlabs"] == 0


async def test_elevenlabs_refusals_carry_its_message_and_outages_are_retried(sim):
    voice = elevenlabs_for(sim)
    with pytest.raises(BadRequest, match="voice_id unknown-1 was not found") as caught:
        await voice.synthesize(SpeechRequest("Hello.", Voice(voice_id="unknown-1")))
    assert caught.value.status == 404 and caught.value.code == "voice_not_found"
    assert sim.stats.requests["speech_elevenlabs"] == 1  # not tried again

    sim.queue_faults("speech_elevenlabs", "5xx", "429")
    spoken = await voice.synthesize(SpeechRequest("Hello.", Voice(voice_id=ELEVEN_VOICE)))
    assert spoken.timed and sim.stats.requests["speech_elevenlabs"] == 4


def eleven_answer_changed(sim, change):
    """The simulator's real answer, changed by `change(data)` before it is sent."""

    async def make(request, fault, **groups):
        response = await sim_speech.elevenlabs_speech(sim, request, fault, **groups)
        data = json.loads(response.body)
        change(data)
        return Response.of_json(data)

    return make


def cut_base64_mid_character(data):
    data["audio_base64"] = data["audio_base64"][:37]


def cut_base64_at_half(data):
    # Still valid base64 and half an MP3: the alignment then runs past the audio's end.
    half = len(data["audio_base64"]) // 2 // 4 * 4
    data["audio_base64"] = data["audio_base64"][:half]


def drop(key):
    return lambda data: data.pop(key)


def garble_times(data):
    data["alignment"]["character_end_times_seconds"][2] = "soon"


def shorten_times(data):
    data["alignment"]["character_start_times_seconds"].pop()


def audio_not_mp3(data):
    data["audio_base64"] = base64.b64encode(b"<html>quota page</html>").decode()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (cut_base64_mid_character, "not base64"),
        (cut_base64_at_half, "past the end of the audio"),
        (drop("audio_base64"), "no audio_base64"),
        (audio_not_mp3, "not audio"),
        (drop("alignment"), "no alignment"),
        (garble_times, "not numbers"),
        (shorten_times, "do not line up"),
    ],
    ids=["cut-base64", "half-audio", "no-audio", "not-mp3", "no-alignment", "garbled", "short"],
)
async def test_elevenlabs_answers_that_cannot_be_read_are_malformed(sim, change, reason):
    answer_with(sim, "speech_elevenlabs", eleven_answer_changed(sim, change))
    voice = elevenlabs_for(sim)

    with pytest.raises(MalformedResponse, match=reason):
        await voice.synthesize(SpeechRequest(LINE, Voice(voice_id=ELEVEN_VOICE)))


async def test_elevenlabs_malformed_fault_and_html_are_malformed(sim):
    voice = elevenlabs_for(sim)
    sim.queue_faults("speech_elevenlabs", *["malformed"] * 4)
    with pytest.raises(MalformedResponse, match="not a JSON object"):
        await voice.synthesize(SpeechRequest("Hello.", Voice(voice_id=ELEVEN_VOICE)))

    answer_with(sim, "speech_elevenlabs", static(200, b"<html>oops</html>", "text/html"))
    with pytest.raises(MalformedResponse, match="not a JSON object"):
        await voice.synthesize(SpeechRequest("Hello.", Voice(voice_id=ELEVEN_VOICE)))


def test_elevenlabs_alignment_that_does_not_line_up_is_malformed():
    def malformed(why):
        return MalformedResponse(why, provider="elevenlabs")

    bad = {
        "characters": ["a", "b"],
        "character_start_times_seconds": [0.0],
        "character_end_times_seconds": [0.1, 0.2],
    }
    with pytest.raises(MalformedResponse, match="line up"):
        ElevenLabsSpeech._words(bad, malformed)
    backwards = {
        "characters": list("ab cd"),
        "character_start_times_seconds": [0.5, 0.6, 0.7, 0.1, 0.2],
        "character_end_times_seconds": [0.6, 0.7, 0.8, 0.2, 0.3],
    }
    with pytest.raises(MalformedResponse, match="back in time"):
        ElevenLabsSpeech._words(backwards, malformed)
    inside_out = {
        "characters": list("ab"),
        "character_start_times_seconds": [0.0, 0.3],
        "character_end_times_seconds": [0.1, 0.2],
    }
    with pytest.raises(MalformedResponse, match="ends before it starts"):
        ElevenLabsSpeech._words(inside_out, malformed)
    only_spaces = {
        "characters": [" ", " "],
        "character_start_times_seconds": [0.0, 0.1],
        "character_end_times_seconds": [0.1, 0.2],
    }
    with pytest.raises(MalformedResponse, match="no words"):
        ElevenLabsSpeech._words(only_spaces, malformed)


# --- registry ---------------------------------------------------------------------------------


def test_the_registry_builds_the_configured_speech_service(settings):
    from studio.providers.speech_espeak import EspeakSpeech

    registry.forget()
    try:
        assert isinstance(registry.speech(), EspeakSpeech)  # no base URL: the offline voice
        settings.PROVIDER_SPEECH = {
            **settings.PROVIDER_SPEECH,
            "api": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "gpt-4o-mini-tts",
            "api_key": API_KEY,
        }
        built = registry.speech()
        assert isinstance(built, OpenAISpeech) and built.model == "gpt-4o-mini-tts"
        assert (
            built.kind == "speech" and built.label == "OpenAI-compatible speech (gpt-4o-mini-tts)"
        )
        assert built.url("audio/speech") == "http://127.0.0.1:9/v1/audio/speech"
        assert registry.speech() is built  # one instance while the settings hold

        settings.PROVIDER_SPEECH = {
            **settings.PROVIDER_SPEECH,
            "api": "elevenlabs",
            "base_url": "https://api.elevenlabs.io/v1",
            "model": "eleven_multilingual_v2",
        }
        eleven = registry.speech()
        assert isinstance(eleven, ElevenLabsSpeech) and eleven.name == "elevenlabs"
        assert eleven.capabilities.word_timings and eleven.kind == "speech"
        url = eleven.url(f"v1/text-to-speech/{ELEVEN_VOICE}/with-timestamps")
        assert url.startswith("https://api.elevenlabs.io/v1/text-to-speech/")
        headers = eleven.headers(url)
        assert headers["xi-api-key"] == API_KEY and "Authorization" not in headers
        assert settings.PROVIDER_SPEECH["base_url"].endswith("/v1")  # the settings untouched
    finally:
        registry.forget()
