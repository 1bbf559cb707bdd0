"""Speech on OpenAI's wire format against the simulator: real audio back, the emotion sent
where the model takes it, billed per character, faults handled."""

from decimal import Decimal

import pytest

from studio.providers import registry
from studio.providers.audio import decode_mono
from studio.providers.base import SpeechRequest, Voice
from studio.providers.errors import BadRequest, MalformedResponse
from studio.providers.ledger import MemoryLedger, cost_usd
from studio.providers.speech_openai import OpenAISpeech, SpeechConfig
from tests.providers_support import API_KEY, TIMEOUT_S, fast_guard, running_sim


@pytest.fixture
async def sim():
    async with running_sim() as simulator:
        yield simulator


def speech_for(sim, *, ledger=None, **config):
    fields = dict(
        name="openai",
        base_url=f"{sim.url}/v1",
        model="gpt-4o-mini-tts",
        api_key=API_KEY,
        timeout_s=TIMEOUT_S,
        retry_after_cap_s=0.05,
    )
    return OpenAISpeech(
        SpeechConfig(**(fields | config)),
        guard=fast_guard(),
        recorder=ledger if ledger is not None else MemoryLedger(),
    )


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
    assert long.duration_s > 2 * short.duration_s
    body = sim.speech_bodies[-1]
    assert body["voice"] == "nova" and body["speed"] == 1.2 and body["response_format"] == "wav"
    assert sim.speech_bodies[0]["voice"] == "alloy"  # the default voice
    entries = [e for e in ledger.entries if e.ok]
    assert [(e.kind, e.characters) for e in entries] == [("speech", 8), ("speech", 36)]


async def test_the_emotion_goes_as_instructions_only_to_models_that_take_them(sim):
    await speech_for(sim).synthesize(SpeechRequest("Get out.", emotion="angry"))
    await speech_for(sim, model="tts-1").synthesize(SpeechRequest("Get out.", emotion="angry"))

    with_instructions, without = sim.speech_bodies
    assert with_instructions["instructions"] == "Say it angry."
    assert "instructions" not in without


def test_speech_is_priced_per_million_characters():
    class Price:
        input_per_mtok = cached_input_per_mtok = output_per_mtok = None
        per_second = per_request = None
        per_mchar = Decimal("15")

    from studio.providers.base import Usage

    assert cost_usd(price=Price, usage=Usage(), characters=2000) == Decimal("0.03")


async def test_a_5xx_is_tried_again_and_a_400_is_not(sim):
    ledger = MemoryLedger()
    voice = speech_for(sim, ledger=ledger)
    sim.queue_faults("speech", "5xx")

    spoken = await voice.synthesize(SpeechRequest("Once more."))

    assert spoken.duration_s > 0.5
    assert sim.stats.requests["speech"] == 2
    sim.queue_faults("speech", "status:400")
    with pytest.raises(BadRequest):
        await voice.synthesize(SpeechRequest("Never again."))
    assert sim.stats.requests["speech"] == 3


@pytest.mark.parametrize("fault", ["malformed"])
async def test_an_answer_that_is_not_audio_is_a_clear_error(sim, fault):
    voice = speech_for(sim)
    sim.queue_faults("speech", *[fault] * 4)

    with pytest.raises(MalformedResponse):
        await voice.synthesize(SpeechRequest("Hello?"))


async def test_it_refuses_empty_and_overlong_text_without_calling(sim):
    voice = speech_for(sim)
    with pytest.raises(BadRequest, match="no text"):
        await voice.synthesize(SpeechRequest("  "))
    with pytest.raises(BadRequest, match="4096"):
        await voice.synthesize(SpeechRequest("a" * 5000))
    assert sim.stats.requests["speech"] == 0


def test_the_registry_builds_the_configured_speech_service(settings):
    from studio.providers.speech_espeak import EspeakSpeech

    registry.forget()
    assert isinstance(registry.speech(), EspeakSpeech)  # no base URL: the offline voice
    settings.PROVIDER_SPEECH = {
        **settings.PROVIDER_SPEECH,
        "api": "openai",
        "base_url": "http://127.0.0.1:9/v1",
    }
    registry.forget()
    try:
        built = registry.speech()
        assert isinstance(built, OpenAISpeech) and built.model == "gpt-4o-mini-tts"
    finally:
        registry.forget()


def elevenlabs_for(sim, *, ledger=None, **config):
    from studio.providers.speech_elevenlabs import ElevenLabsConfig, ElevenLabsSpeech

    fields = dict(
        name="elevenlabs",
        base_url=f"{sim.url}/elevenlabs/v1",
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


async def test_elevenlabs_words_come_from_its_character_timings(sim):
    ledger = MemoryLedger()
    voice = elevenlabs_for(sim, ledger=ledger)
    text = "You came back after all."

    spoken = await voice.synthesize(SpeechRequest(text, Voice(voice_id="JBFqnCBsd6RMkjVDRZzb")))

    samples, rate = decode_mono(spoken.wav)
    assert len(samples) / rate == pytest.approx(spoken.duration_s, abs=0.01)
    assert spoken.timed and [w.text for w in spoken.words] == text.split()
    # The simulator's tones: 70 ms a character, 80 ms between words.
    assert spoken.words[1].start_s == pytest.approx(3 * 0.07 + 0.08, abs=0.002)
    assert spoken.words[-1].end_s <= spoken.duration_s + 0.05
    body = sim.speech_bodies[-1]
    assert (
        body["voice_id"] == "JBFqnCBsd6RMkjVDRZzb" and body["model_id"] == "eleven_multilingual_v2"
    )
    assert body["query"] == {"output_format": "mp3_44100_128"}
    assert [(e.kind, e.characters) for e in ledger.entries] == [("speech", len(text))]


async def test_elevenlabs_needs_a_voice_id_and_refuses_a_garbled_answer(sim):
    voice = elevenlabs_for(sim)
    with pytest.raises(BadRequest, match="voice id"):
        await voice.synthesize(SpeechRequest("Hello."))
    assert sim.stats.requests["speech_elevenlabs"] == 0

    sim.queue_faults("speech_elevenlabs", *["malformed"] * 4)
    with pytest.raises(MalformedResponse):
        await voice.synthesize(SpeechRequest("Hello.", Voice(voice_id="abc")))


def test_elevenlabs_alignment_that_does_not_line_up_is_malformed():
    from studio.providers.speech_elevenlabs import ElevenLabsSpeech

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
