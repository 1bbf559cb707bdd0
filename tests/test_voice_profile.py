"""A character's voice profile: the service its voice belongs to, and a voice sample to clone.

Which service speaks a character's lines (dramas.speech.voicing): the offline voice always, a
remote one only when it is the studio's; otherwise the studio's default voice and a note for the
producer. Voice samples are decoded for real and stored as a normalised WAV that follows its
row; ElevenLabs (the simulator) clones a sample once and the character keeps the voice."""

import dataclasses
import hashlib
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from characters import services as character_services
from characters import voices
from characters.models import Character
from dramas import speech
from studio.models import UsageRecord
from studio.providers import registry
from studio.providers.audio import decode_mono, wav_bytes, wav_samples
from studio.providers.errors import AuthError, BadRequest, ProviderConnectionError, ServerError
from studio.providers.ledger import MemoryLedger
from studio.providers.sim import speech as sim_speech
from studio.providers.sim.server import simulator_thread
from studio.providers.sim.state import SimConfig
from studio.providers.speech_elevenlabs import ElevenLabsConfig, ElevenLabsSpeech
from studio.providers.speech_espeak import EspeakSpeech
from studio.providers.speech_openai import OpenAISpeech
from tests.factories import create_character, create_drama, image_bytes
from tests.providers_support import API_KEY, TIMEOUT_S, fast_guard, running_sim

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


# --- Helpers -----------------------------------------------------------------------------------


def tone(seconds: float, *, rate: int = 22_050, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def tone_wav(seconds: float, *, rate: int = 22_050, amplitude: float = 0.3) -> bytes:
    return wav_bytes(tone(seconds, rate=rate, amplitude=amplitude), rate)


def tone_mp3(seconds: float) -> bytes:
    return sim_speech.encoded(tone(seconds, rate=sim_speech.RATE), "mp3")


def audio_upload(data: bytes, name: str = "voice.wav", content_type: str = "audio/wav"):
    return SimpleUploadedFile(name, data, content_type=content_type)


def stored_files(root) -> list[Path]:
    return sorted(path for path in Path(root).rglob("*") if path.is_file())


def sample_files(root) -> list[Path]:
    return sorted((Path(root) / "voice_samples").rglob("*.wav"))


def add_sample(character, seconds: float = 4.0) -> Character:
    sample = voices.voice_sample_from(audio_upload(tone_wav(seconds)))
    return character_services.character_update(character=character, voice_sample=sample)


def url(name: str, character) -> str:
    return reverse(name, args=[character.drama_id, character.id])


def use_speech(settings, **config) -> None:
    settings.PROVIDER_SPEECH = {**settings.PROVIDER_SPEECH, **config}
    registry.forget()


@pytest.fixture(autouse=True)
def fresh_registry():
    registry.forget()
    yield
    registry.forget()


@pytest.fixture
def elevenlabs(settings):
    """The studio speaks through ElevenLabs: the simulator, which wants the key."""
    with simulator_thread(SimConfig(api_key=API_KEY)) as sim:
        use_speech(
            settings,
            api="elevenlabs",
            base_url=f"{sim.url}/elevenlabs",
            provider="elevenlabs",
            model="eleven_multilingual_v2",
            api_key=API_KEY,
        )
        yield sim


@pytest.fixture
def openai_studio(settings):
    with simulator_thread(SimConfig()) as sim:
        use_speech(
            settings,
            api="openai",
            base_url=f"{sim.url}/v1",
            provider="openai",
            model="gpt-4o-mini-tts",
        )
        yield sim


def preview(client, character) -> tuple[np.ndarray, int]:
    response = client.get(url("character_voice_preview", character))
    assert response.status_code == 200, response.content
    return decode_mono(b"".join(response.streaming_content))


# --- Which service speaks ----------------------------------------------------------------------


def test_the_offline_voice_is_always_there_and_a_remote_one_only_when_configured(settings):
    offline = registry.speech()
    assert isinstance(offline, EspeakSpeech) and registry.speech_api() == "espeak-ng"
    assert registry.speech("espeak-ng") is offline
    assert registry.speech("openai") is None and registry.speech("elevenlabs") is None

    use_speech(settings, api="openai", base_url="http://127.0.0.1:9/v1", model="gpt-4o-mini-tts")
    remote = registry.speech()
    assert isinstance(remote, OpenAISpeech) and registry.speech_api() == "openai"
    assert registry.speech("openai") is remote
    assert registry.speech("elevenlabs") is None  # not this studio's SPEECH_API
    assert isinstance(registry.speech("espeak-ng"), EspeakSpeech)
    assert registry.speech() is remote  # asking for the offline voice keeps the remote one


def test_it_declares_which_services_clone_voices_and_which_need_one():
    eleven = ElevenLabsSpeech(
        ElevenLabsConfig(name="elevenlabs", base_url="http://127.0.0.1:9", model="m"),
        recorder=MemoryLedger(),
    )
    assert eleven.capabilities.clones_voices and eleven.capabilities.needs_voice
    offline = EspeakSpeech(recorder=MemoryLedger()).capabilities
    assert not offline.clones_voices and not offline.needs_voice


def test_an_offline_voice_speaks_as_chosen_whatever_service_the_studio_uses(openai_studio):
    ada = create_character(
        drama=create_drama(), name="Ada", voice_provider="espeak-ng", voice_id="f3"
    )

    service, voice = speech.voicing(ada)

    assert isinstance(service, EspeakSpeech) and voice.voice_id == "f3"
    assert speech.voicing_note(ada) == ""


def test_a_voice_of_a_service_the_studio_does_not_use_falls_back_with_a_note():
    ada = create_character(
        drama=create_drama(),
        name="Ada",
        voice_provider="openai",
        voice_id="nova",
        voice_speed=1.2,
    )

    service, voice = speech.voicing(ada)

    assert isinstance(service, EspeakSpeech)
    assert (voice.voice_id, voice.speed) == ("", 1.2)  # the default voice, at her pace
    note = speech.voicing_note(ada)
    assert "“nova” is for the OpenAI-compatible service" in note
    assert "not set up for" in note and "default voice" in note


def test_an_offline_variant_is_never_sent_to_a_remote_service(
    openai_studio, producer, producer_client, drama
):
    ada = create_character(drama=drama, name="Ada", voice_id="f3")  # chosen while offline

    samples, rate = preview(producer_client, ada)

    assert len(samples) / rate > 1.0
    assert openai_studio.speech_bodies[-1]["voice"] == "alloy"  # OpenAI's default, not "f3"
    note = speech.voicing_note(ada)
    assert "“f3” is a variant of the offline voice" in note
    page = producer_client.get(url("character_detail", ada)).content.decode()
    assert "is a variant of the offline voice" in page and 'id="voicing-note"' in page


def test_elevenlabs_without_a_voice_or_a_sample_says_it_cannot_speak(
    elevenlabs, producer_client, drama
):
    ada = create_character(drama=drama, name="Ada")

    assert "no default voice" in speech.voicing_note(ada)
    response = producer_client.get(url("character_voice_preview", ada))
    assert response.status_code == 502
    assert "ElevenLabs needs a voice" in response.content.decode()
    assert elevenlabs.stats.requests["speech_elevenlabs"] == 0  # refused before any call


def test_the_narrator_speaks_with_the_studios_service():
    service, voice = speech.voicing(None)
    assert isinstance(service, EspeakSpeech) and voice == speech.NARRATOR_VOICE
    assert speech.voicing_note(None) == ""


# --- The form ----------------------------------------------------------------------------------


def create_url(drama) -> str:
    return reverse("character_create", args=[drama.id])


def test_the_form_refuses_a_variant_the_offline_voice_does_not_have(producer_client, drama):
    response = producer_client.post(
        create_url(drama), {"name": "Ada", "voice_provider": "espeak-ng", "voice_id": "m9"}
    )

    assert response.status_code == 422
    page = response.content.decode()
    assert "The offline voice has no variant “m9”" in page and "m1, m2" in page
    assert not Character.objects.exists()

    response = producer_client.post(
        create_url(drama), {"name": "Ada", "voice_provider": "espeak-ng", "voice_id": "f3"}
    )
    assert response.status_code == 302
    saved = Character.objects.get()
    assert (saved.voice_provider, saved.voice_id) == ("espeak-ng", "f3")


def test_the_form_refuses_an_offline_variant_for_a_remote_service(producer_client, drama):
    response = producer_client.post(
        create_url(drama), {"name": "Ada", "voice_provider": "openai", "voice_id": "m3"}
    )

    assert response.status_code == 422
    assert "is a variant of the offline voice, not a voice of the OpenAI" in (
        response.content.decode()
    )
    assert not Character.objects.exists()
    # A voice the OpenAI-compatible service may have is kept, configured or not.
    response = producer_client.post(
        create_url(drama), {"name": "Ada", "voice_provider": "openai", "voice_id": "af_bella"}
    )
    assert response.status_code == 302


def test_the_form_checks_a_voice_for_the_studios_service_against_it(producer_client, drama):
    response = producer_client.post(create_url(drama), {"name": "Ada", "voice_id": "nova"})

    assert response.status_code == 422  # the studio speaks offline: "nova" is no variant
    assert "no variant “nova”" in response.content.decode()


# --- Voice samples -----------------------------------------------------------------------------


def test_a_voice_sample_is_stored_as_a_normalised_wav(producer_client, drama, media_root):
    mp3 = tone_mp3(4.0)

    response = producer_client.post(
        create_url(drama),
        {"name": "Ada", "voice_sample": audio_upload(mp3, "ada.mp3", "audio/mpeg")},
    )

    assert response.status_code == 302
    ada = Character.objects.get()
    [stored] = sample_files(media_root)
    content = stored.read_bytes()
    samples, rate = wav_samples(content)  # mono 16-bit PCM WAV
    assert rate == voices.SAMPLE_RATE
    assert len(samples) / rate == pytest.approx(4.0, abs=0.1)
    assert float(np.max(np.abs(samples))) == pytest.approx(0.3, abs=0.03)
    assert ada.voice_sample_sha256 == hashlib.sha256(content).hexdigest()
    assert ada.voice_sample_s == pytest.approx(4.0, abs=0.1)
    assert ada.voice_sample.name == f"voice_samples/{ada.id}/{ada.voice_sample_sha256[:16]}.wav"
    page = producer_client.get(url("character_detail", ada)).content.decode()
    assert 'id="voice-sample"' in page and "Voice sample: 4.0 s" in page


@pytest.mark.parametrize(
    ("make", "name", "reason"),
    [
        (lambda: tone_wav(1.0), "short.wav", "1.0 s long; a voice sample is 3 to 60 seconds"),
        (lambda: tone_wav(61.0, rate=8000), "long.wav", "61.0 s long"),
        (lambda: tone_wav(5.0, amplitude=0.0), "silence.wav", "The recording is silent"),
        (lambda: image_bytes(format="PNG"), "voice.wav", "could not be read as audio"),
        (lambda: b"RIFF\x00\x00\x00\x00WAVEjunk" * 10, "broken.wav", "could not be read as audio"),
        (lambda: b"", "empty.wav", "The submitted file is empty"),
        (lambda: b"\0" * (10 * 1024 * 1024 + 1), "huge.wav", "the limit is 10.0 MB"),
    ],
)
def test_a_sample_that_cannot_be_a_voice_is_refused_and_nothing_is_stored(
    producer_client, drama, media_root, make, name, reason
):
    response = producer_client.post(
        create_url(drama), {"name": "Ada", "voice_sample": audio_upload(make(), name)}
    )

    assert response.status_code == 422
    assert reason in response.content.decode()
    assert not Character.objects.exists()
    assert stored_files(media_root) == []


def test_an_edit_with_a_bad_sample_keeps_the_stored_one(producer_client, drama, media_root):
    ada = add_sample(create_character(drama=drama, name="Ada"))
    before = sample_files(media_root)

    response = producer_client.post(
        url("character_edit", ada),
        {"name": "Ada", "voice_sample": audio_upload(tone_wav(1.0))},
        headers=HTMX,
    )

    assert response.status_code == 422 and "a voice sample is 3 to 60" in response.content.decode()
    ada.refresh_from_db()
    assert sample_files(media_root) == before and ada.voice_sample_s == pytest.approx(4.0)


def test_the_edit_form_offers_to_replace_or_remove_the_sample_without_linking_it(
    producer_client, drama
):
    ada = add_sample(create_character(drama=drama, name="Ada"))

    page = producer_client.get(url("character_edit", ada), headers=HTMX).content.decode()

    assert 'enctype="multipart/form-data"' in page and 'hx-encoding="multipart/form-data"' in page
    assert "A voice sample is stored" in page and 'name="voice_sample-clear"' in page
    assert "voice_samples/" not in page  # media is served only through checked views
    assert '<option value="espeak-ng">Offline voice (espeak-ng)</option>' in page


def test_a_replaced_or_removed_sample_takes_its_file_with_it_once_saved(
    producer_client, drama, media_root, django_capture_on_commit_callbacks
):
    ada = add_sample(create_character(drama=drama, name="Ada"))
    [first] = sample_files(media_root)

    with django_capture_on_commit_callbacks(execute=True):
        response = producer_client.post(
            url("character_edit", ada), {"name": "Ada", "voice_sample": audio_upload(tone_wav(6))}
        )

    assert response.status_code == 302
    ada.refresh_from_db()
    [second] = sample_files(media_root)
    assert second != first and ada.voice_sample_s == pytest.approx(6.0)

    with django_capture_on_commit_callbacks(execute=True):
        response = producer_client.post(
            url("character_edit", ada), {"name": "Ada", "voice_sample-clear": "on"}
        )

    assert response.status_code == 302
    ada.refresh_from_db()
    assert not ada.voice_sample and ada.voice_sample_sha256 == "" and ada.voice_sample_s is None
    assert sample_files(media_root) == []


def test_a_deleted_character_takes_its_voice_sample_with_it(
    producer_client, drama, media_root, django_capture_on_commit_callbacks
):
    ada = add_sample(create_character(drama=drama, name="Ada"))
    mei = add_sample(create_character(drama=drama, name="Mei"), seconds=5.0)
    assert len(sample_files(media_root)) == 2

    with django_capture_on_commit_callbacks(execute=True):
        producer_client.post(url("character_delete", ada))

    assert sample_files(media_root) == [Path(mei.voice_sample.path)]


def test_a_sample_is_not_stored_when_the_character_cannot_be(drama, media_root):
    create_character(drama=drama, name="Ada")
    sample = voices.voice_sample_from(audio_upload(tone_wav(4)))

    with pytest.raises(Exception, match="already has a character"):
        character_services.character_create(drama=drama, name="ada", voice_sample=sample)

    assert sample_files(media_root) == []


# --- Cloning with ElevenLabs -------------------------------------------------------------------


def test_elevenlabs_clones_the_sample_once_and_the_character_keeps_the_voice(
    elevenlabs, producer_client, drama
):
    ada = add_sample(create_character(drama=drama, name="Ada"), seconds=5.0)
    assert speech.voicing_note(ada) == ""  # nothing wrong: the voice is made on first use
    page = producer_client.get(url("character_detail", ada)).content.decode()
    assert "clones it into this character's voice on the first preview or line" in page
    stale = Character.objects.get(pk=ada.pk)  # as another scene of the take read it

    samples, rate = preview(producer_client, ada)

    assert len(samples) / rate > 1.0
    [(voice_id, made)] = elevenlabs.voices.items()
    assert made["name"] == "Ada · Neon Vows" and made["auth"] == ["xi-api-key"]
    assert [f["seconds"] for f in made["files"]] == [pytest.approx(5.0, abs=0.05)]
    ada.refresh_from_db()
    assert (ada.voice_id, ada.voice_provider) == (voice_id, "elevenlabs")
    assert ada.voice_cloned_from == ada.voice_sample_sha256
    assert elevenlabs.speech_bodies[-1]["voice_id"] == voice_id
    booked = UsageRecord.objects.get(operation="speech.clone_voice")
    assert (booked.provider, booked.ok, booked.drama_id, booked.take_id) == (
        "elevenlabs",
        True,
        drama.id,
        None,
    )
    assert booked.characters == 0 and booked.cost_usd == 0  # ElevenLabs bills what is spoken

    _service, voice = speech.voicing(stale)
    preview(producer_client, ada)

    assert voice.voice_id == stale.voice_id == voice_id
    assert elevenlabs.stats.requests["voice_add_elevenlabs"] == 1
    assert elevenlabs.stats.requests["speech_elevenlabs"] == 1  # the preview line is cached
    page = producer_client.get(url("character_detail", ada)).content.decode()
    assert "cloned as this voice" in page


@pytest.mark.django_db(transaction=True)
async def test_a_voice_is_cloned_from_the_render_loop_as_the_speech_step_asks(settings):
    """The speech step and the voicing jobs call `voicing` through sync_to_async."""
    async with running_sim(api_key=API_KEY) as sim:
        use_speech(
            settings,
            api="elevenlabs",
            base_url=f"{sim.url}/elevenlabs",
            provider="elevenlabs",
            model="eleven_multilingual_v2",
            api_key=API_KEY,
        )
        drama = await sync_to_async(create_drama)()
        ada = await sync_to_async(add_sample)(
            await sync_to_async(create_character)(drama=drama, name="Ada")
        )

        service, voice = await sync_to_async(speech.voicing)(ada)
        row, made = await speech.line_audio(
            text="You came back.", voice=voice, emotion="", speech=service
        )

        assert list(sim.voices) == [voice.voice_id] and made and row.duration_s > 0.5
        assert sim.speech_bodies[-1]["voice_id"] == voice.voice_id
        assert await UsageRecord.objects.filter(
            operation="speech.clone_voice", drama_id=drama.id, ok=True
        ).aexists()


def test_a_new_sample_is_cloned_again_and_the_lines_are_keyed_by_it(elevenlabs, drama):
    ada = add_sample(create_character(drama=drama, name="Ada"), seconds=4.0)
    _service, first = speech.voicing(ada)
    first_key = speech.line_key(
        text="Hi.", voice=first, emotion="", provider="elevenlabs", model="m"
    )
    with ada.voice_sample.open("rb") as handle:
        assert first.reference_audio == handle.read()

    ada = add_sample(Character.objects.get(pk=ada.pk), seconds=7.0)
    _service, second = speech.voicing(ada)

    assert len(elevenlabs.voices) == 2 and second.voice_id != first.voice_id
    assert second.voice_id in elevenlabs.voices
    assert elevenlabs.voices[second.voice_id]["files"][0]["seconds"] == pytest.approx(7, abs=0.05)
    assert hashlib.sha256(second.reference_audio).hexdigest() == ada.voice_sample_sha256
    second_key = speech.line_key(
        text="Hi.", voice=second, emotion="", provider="elevenlabs", model="m"
    )
    assert second_key != first_key
    # The same profile with another recording is another line.
    other = speech.line_key(
        text="Hi.",
        voice=dataclasses.replace(first, reference_audio=b"another recording"),
        emotion="",
        provider="elevenlabs",
        model="m",
    )
    assert other != first_key


def test_a_voice_chosen_by_hand_is_never_replaced_by_a_clone(elevenlabs, drama):
    ada = add_sample(
        create_character(drama=drama, name="Ada", voice_provider="elevenlabs", voice_id="JBFq")
    )

    service, voice = speech.voicing(ada)

    assert isinstance(service, ElevenLabsSpeech) and voice.voice_id == "JBFq"
    assert voice.reference_audio is None  # the sample is not what this voice is made of
    assert elevenlabs.voices == {} and elevenlabs.stats.requests["voice_add_elevenlabs"] == 0


def test_the_offline_studio_tells_that_a_sample_needs_a_cloning_service(drama):
    ada = add_sample(create_character(drama=drama, name="Ada"))

    service, voice = speech.voicing(ada)

    assert isinstance(service, EspeakSpeech) and voice.voice_id == ""
    assert "voice sample is used by services that clone voices" in speech.voicing_note(ada)


@pytest.mark.django_db(transaction=True)
def test_a_clone_stored_first_by_another_worker_wins_and_ours_is_removed(elevenlabs):
    ada = add_sample(create_character(drama=create_drama(), name="Ada"))
    original = dict((name, handler) for _m, _p, name, handler in elevenlabs.routes)

    async def meanwhile(sim, request, fault):
        # Another worker stores its clone while ours is being made.
        await sync_to_async(Character.objects.filter(pk=ada.pk).update, thread_sensitive=False)(
            voice_id="theirs", voice_provider="elevenlabs", voice_cloned_from="x"
        )
        return await original["voice_add_elevenlabs"](sim, request, fault)

    elevenlabs.routes = [
        (method, pattern, name, meanwhile if name == "voice_add_elevenlabs" else handler)
        for method, pattern, name, handler in elevenlabs.routes
    ]

    _service, voice = speech.voicing(ada)

    assert voice.voice_id == "theirs" and ada.voice_id == "theirs"
    assert elevenlabs.stats.requests["voice_add_elevenlabs"] == 1
    assert elevenlabs.stats.requests["voice_delete_elevenlabs"] == 1
    assert elevenlabs.voices == {}  # ours is gone from the account


def elevenlabs_for(sim, **config):
    fields = dict(
        name="elevenlabs",
        base_url=f"{sim.url}/elevenlabs",
        model="eleven_multilingual_v2",
        api_key=API_KEY,
        timeout_s=TIMEOUT_S,
        retry_after_cap_s=0.05,
    )
    return ElevenLabsSpeech(
        ElevenLabsConfig(**(fields | config)), guard=fast_guard(), recorder=MemoryLedger()
    )


async def test_the_simulator_refuses_a_recording_that_is_not_audio():
    async with running_sim() as sim:
        voice = elevenlabs_for(sim)
        with pytest.raises(BadRequest, match="is not audio we can read"):
            await voice.clone_voice(name="Ada", sample=b"not a recording")
        made = await voice.clone_voice(name="Ada", sample=tone_wav(3.5))

        assert list(sim.voices) == [made]
        assert sim.voices[made]["files"] == [{"filename": "sample.wav", "seconds": 3.5}]
        await voice.delete_voice(made)
        assert sim.voices == {}
        with pytest.raises(BadRequest, match="was not found"):
            await voice.delete_voice(made)
        entries = voice.recorder.entries
        assert [(e.operation, e.ok) for e in entries] == [
            ("speech.clone_voice", False),
            ("speech.clone_voice", True),
            ("speech.delete_voice", True),
            ("speech.delete_voice", False),
        ]


async def test_a_failed_clone_is_tried_once_so_no_second_voice_is_made():
    async with running_sim() as sim:
        voice = elevenlabs_for(sim)
        sim.queue_faults("voice_add_elevenlabs", "5xx")
        with pytest.raises(ServerError):
            await voice.clone_voice(name="Ada", sample=tone_wav(3.5))
        sim.queue_faults("voice_add_elevenlabs", "lost_response")
        with pytest.raises(ProviderConnectionError):  # the voice was made, the answer lost
            await voice.clone_voice(name="Ada", sample=tone_wav(3.5))

        assert sim.stats.requests["voice_add_elevenlabs"] == 2
        assert len(sim.voices) == 1  # the lost answer's voice, and no second one


async def test_the_simulator_wants_a_name_and_a_file_to_clone():
    async with running_sim() as sim, httpx.AsyncClient() as client:
        url = f"{sim.url}/elevenlabs/v1/voices/add"
        no_name = await client.post(url, files={"files": ("a.wav", tone_wav(3.5))})
        no_file = await client.post(url, files={"name": (None, "Ada")})

        assert no_name.status_code == no_file.status_code == 422
        assert no_name.json()["detail"][0]["loc"] == ["body", "name"]
        assert no_file.json()["detail"][0]["loc"] == ["body", "files"]
        assert sim.voices == {}


# --- The simulator's key check for ElevenLabs --------------------------------------------------


async def test_the_simulator_refuses_a_wrong_or_missing_elevenlabs_key():
    from studio.providers.base import SpeechRequest, Voice

    async with running_sim(api_key=API_KEY) as sim:
        line = SpeechRequest("You came back.", Voice(voice_id="JBFqnCBsd6RMkjVDRZzb"))
        spoken = await elevenlabs_for(sim).synthesize(line)
        assert spoken.duration_s > 0.5 and sim.speech_bodies[-1]["auth"] == ["xi-api-key"]

        for key in ("sk-wrong", ""):
            with pytest.raises(AuthError, match="Invalid API key"):
                await elevenlabs_for(sim, api_key=key).synthesize(line)
            with pytest.raises(AuthError):
                await elevenlabs_for(sim, api_key=key).clone_voice(name="A", sample=tone_wav(4))
        async with httpx.AsyncClient() as client:
            # ElevenLabs reads only its own header: the right key as a Bearer is no key.
            bearer = await client.post(
                f"{sim.url}/elevenlabs/v1/text-to-speech/JBFq/with-timestamps",
                json={"text": "Hi."},
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
        assert bearer.status_code == 401
        assert bearer.json() == {
            "detail": {"status": "invalid_api_key", "message": "Invalid API key"}
        }
        assert sim.stats.statuses["speech_elevenlabs"]["401"] == 3
        assert sim.stats.statuses["voice_add_elevenlabs"]["401"] == 2
        assert len(sim.speech_bodies) == 1 and sim.voices == {}


# --- The demo ----------------------------------------------------------------------------------


def test_the_demo_cast_speaks_through_the_studios_service_and_says_when_it_is_not_theirs(
    settings,
):
    """The demo's voices are offline ones, for the studio's own service: offline they are
    heard as chosen; with a remote service that service speaks them, and each character says
    that their voice is not one of its voices."""
    call_command("seed_demo", stdout=io.StringIO())
    cast = list(Character.objects.filter(drama__title="Midnight Broadcast"))
    assert {(c.voice_provider, c.voice_id) for c in cast} == {("", "m3"), ("", "f3")}
    for character in cast:
        service, voice = speech.voicing(character)
        assert isinstance(service, EspeakSpeech) and voice.voice_id == character.voice_id
        assert speech.voicing_note(character) == ""

    use_speech(settings, api="openai", base_url="http://127.0.0.1:9/v1", model="gpt-4o-mini-tts")
    for character in cast:
        service, voice = speech.voicing(character)
        assert service.name != "local" and voice.voice_id == ""
        assert character.name in speech.voicing_note(character)


def test_a_cloned_voice_is_spoken_in_the_offline_studio_by_its_default_voice(drama):
    """A clone made while the studio used ElevenLabs, after it went offline again."""
    ada = add_sample(create_character(drama=drama, name="Ada"))
    Character.objects.filter(pk=ada.pk).update(
        voice_id="sim123", voice_provider="elevenlabs", voice_cloned_from=ada.voice_sample_sha256
    )
    ada.refresh_from_db()

    service, voice = speech.voicing(ada)

    assert isinstance(service, EspeakSpeech) and voice.voice_id == ""
    assert "“sim123” is for ElevenLabs" in speech.voicing_note(ada)
