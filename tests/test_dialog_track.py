"""Characters speak: the offline voice, cached line audio, and the dialog track of a take,
asserted on decoded audio (PyAV)."""

import html
import itertools

import av
import numpy as np
import pytest
from asgiref.sync import sync_to_async

from characters.models import Character
from dramas import speech
from dramas.dialog_audio import TRACK_RATE, SpokenLine, needed_seconds, place
from dramas.models import LineAudio, SpeechOwner, Take, TakeStatus
from dramas.pipeline_db import video_request
from dramas.takes import take_enqueue
from studio.providers import registry
from studio.providers.animatic import plan
from studio.providers.audio import decode_mono, wav_samples
from studio.providers.base import SpeechRequest, Voice
from studio.providers.errors import BadRequest
from studio.providers.ledger import MemoryLedger
from studio.providers.speech_espeak import EspeakSpeech
from tests.factories import create_line
from tests.render_support import (
    offline_video,
    running,
    seed_prices,
    take_page,
    two_person_drama,
    wait_for,
)

FPS = 24


def decoded(wav: bytes) -> tuple[np.ndarray, int]:
    return decode_mono(wav)


# --- the offline voice ---------------------------------------------------------------------


async def test_the_offline_voice_speaks_with_real_word_timings():
    voice = EspeakSpeech(recorder=MemoryLedger())
    short = await voice.synthesize(SpeechRequest("Not now."))
    text = "I waited all night for you, and you never came."
    long = await voice.synthesize(SpeechRequest(text, Voice(voice_id="f3")))

    for spoken in (short, long):
        samples, rate = decoded(spoken.wav)
        assert rate == spoken.sample_rate == 22050
        assert len(samples) / rate == pytest.approx(spoken.duration_s, abs=0.01)
        assert np.abs(samples).max() > 0.1  # sound, not silence
        starts = [w.start_s for w in spoken.words]
        assert starts == sorted(starts) and spoken.words[-1].end_s <= spoken.duration_s
        assert spoken.timed
    assert long.duration_s > 2 * short.duration_s
    assert [w.text for w in long.words][:3] == ["I", "waited", "all"]
    entry = voice.recorder.entries[-1]
    assert (entry.kind, entry.characters, entry.provider) == ("speech", len(text), "local")


async def test_the_offline_voice_repeats_itself_and_speaks_mandarin():
    voice = EspeakSpeech(recorder=MemoryLedger())
    first = await voice.synthesize(SpeechRequest("你好，我等了你一夜。", Voice(language="cmn")))
    again = await voice.synthesize(SpeechRequest("你好，我等了你一夜。", Voice(language="cmn")))

    # espeak-ng's output varies a little from one call to the next (seen: 11 ms in 2.2 s, at
    # the end); the words fall at the same times to a few ms.
    assert again.duration_s == pytest.approx(first.duration_s, abs=0.025)
    assert [w.text for w in again.words] == [w.text for w in first.words]
    assert [w.start_s for w in again.words] == pytest.approx(
        [w.start_s for w in first.words], abs=0.005
    )
    assert first.duration_s > 1.0 and len(first.words) >= 3


async def test_speed_and_pitch_change_the_voice():
    voice = EspeakSpeech(recorder=MemoryLedger())
    text = "Every line is spoken in its character's voice."
    normal = await voice.synthesize(SpeechRequest(text))
    fast = await voice.synthesize(SpeechRequest(text, Voice(speed=1.6)))
    high = await voice.synthesize(SpeechRequest(text, Voice(pitch=8)))

    assert fast.duration_s < 0.8 * normal.duration_s
    assert high.wav != normal.wav


async def test_the_offline_voice_refuses_an_unknown_voice_and_empty_text():
    voice = EspeakSpeech(recorder=MemoryLedger())
    with pytest.raises(BadRequest, match="no voice"):
        await voice.synthesize(SpeechRequest("Hello.", Voice(language="xx-nowhere")))
    with pytest.raises(BadRequest, match="no text"):
        await voice.synthesize(SpeechRequest("   "))


# --- placing lines -------------------------------------------------------------------------


def lines(*durations_and_speakers) -> list[SpokenLine]:
    return [
        SpokenLine(index, speaker, f"line {index}", duration, f"key{index}")
        for index, (duration, speaker) in enumerate(durations_and_speakers)
    ]


def test_lines_are_placed_in_order_with_natural_gaps():
    spoken = lines((1.0, "A"), (0.8, "A"), (1.2, "B"))
    track = place(spoken, start_s=0.5, scene_s=10)

    assert [e["start_s"] for e in track] == [0.8, 2.05, 3.3]
    assert [round(e["end_s"] - e["start_s"], 3) for e in track] == [1.0, 0.8, 1.2]
    assert needed_seconds(spoken, start_s=0.5) == pytest.approx(0.5 + 0.3 + 3.0 + 0.25 + 0.45 + 0.5)


def test_a_short_scene_shortens_the_pauses_never_the_speech():
    spoken = lines((1.0, "A"), (1.0, "B"), (1.0, "A"))
    track = place(spoken, start_s=0, scene_s=3.4)

    assert [round(e["end_s"] - e["start_s"], 3) for e in track] == [1.0, 1.0, 1.0]
    assert all(b["start_s"] - a["end_s"] >= 0.099 for a, b in itertools.pairwise(track))
    assert track[0]["start_s"] >= 0.099


# --- the cache -----------------------------------------------------------------------------


class CountingVoice(EspeakSpeech):
    calls = 0

    async def synthesize(self, request):
        type(self).calls += 1
        return await super().synthesize(request)


@pytest.mark.django_db(transaction=True)
async def test_an_unchanged_line_is_never_synthesised_twice(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    voice = CountingVoice(recorder=MemoryLedger())
    CountingVoice.calls = 0
    first, made = await speech.line_audio(
        text="You came back.", voice=Voice(voice_id="m3"), emotion="", speech=voice
    )
    again, made_again = await speech.line_audio(
        text="  You came  back. ", voice=Voice(voice_id="m3"), emotion="", speech=voice
    )
    other, _ = await speech.line_audio(
        text="You came back.", voice=Voice(voice_id="f2"), emotion="", speech=voice
    )

    assert (made, made_again) == (True, False)
    assert again.id == first.id and other.id != first.id
    assert CountingVoice.calls == 2
    samples, rate = wav_samples(first.audio.read())
    assert len(samples) / rate == pytest.approx(first.duration_s, abs=0.01)
    assert first.words and first.words[0][0] == "You"


# --- the take's dialog track ---------------------------------------------------------------


@pytest.fixture
def offline(settings, tmp_path, transactional_db):
    offline_video(settings, tmp_path)
    seed_prices()
    registry.forget()
    yield
    registry.forget()


def dialog_scene(seconds: float = 6.0):
    drama, _chapter, cast = two_person_drama(seconds=seconds)
    scene = cast["first"]
    scene.characters.add(cast["ada"])
    create_line(scene=scene, speaker=cast["marcus"], line="You came back after all.")
    create_line(scene=scene, speaker=cast["ada"], line="I never left.", emotion="quiet")
    cast["ada"].voice_id = "f3"
    cast["ada"].save()
    return drama, scene


def audio_of(take: Take) -> tuple[np.ndarray, int, float]:
    with av.open(take.video.path) as container:
        assert container.streams.audio, "the take has no audio stream"
        stream = container.streams.audio[0]
        assert (stream.codec_context.name, stream.rate, stream.channels) == ("aac", 48000, 2)
        video = container.streams.video[0]
        video_s = float(video.duration * video.time_base)
    with open(take.video.path, "rb") as handle:
        samples, rate = decode_mono(handle.read())
    return samples, rate, video_s


def rms(samples: np.ndarray, rate: int, start: float, end: float) -> float:
    piece = samples[int(start * rate) : int(end * rate)]
    return float(np.sqrt(np.mean(piece**2))) if len(piece) else 0.0


async def render(drama, scene) -> Take:
    [take] = await sync_to_async(take_enqueue)(drama=drama, scenes=[scene])

    async def finished():
        row = await Take.objects.aget(id=take.id)
        return not row.active and row

    async with running():
        return await wait_for(finished, timeout=90)


async def test_every_take_carries_its_dialog_in_time(offline):
    drama, scene = await sync_to_async(dialog_scene)()

    take = await render(drama, scene)

    assert take.status == TakeStatus.DONE, (take.error, take.note)
    assert take.speech_owner == SpeechOwner.STUDIO
    track = take.dialog_track
    texts = [e["text"] for e in track]
    assert texts[-2:] == ["You came back after all.", "I never left."]  # after the scene's own
    samples, rate, video_s = audio_of(take)
    assert rate == TRACK_RATE and len(samples) / rate >= video_s - 0.05
    assert len(samples) / rate >= track[-1]["end_s"]
    for entry in track:  # speech where each line is placed, silence in the pause between them
        assert rms(samples, rate, entry["start_s"] + 0.05, entry["end_s"] - 0.05) > 0.02
    for before, after in itertools.pairwise(track):
        assert rms(samples, rate, before["end_s"] + 0.05, after["start_s"] - 0.05) < 0.005
    assert rms(samples, rate, 0, track[0]["start_s"] - 0.05) < 0.005

    # The animatic's subtitles: each on screen exactly while its line is heard (within 40 ms).
    request = await sync_to_async(video_request)(take_id=take.id)
    shots, at, shown = plan(request, fps=FPS, title_card=True), 0, []
    for shot in shots:
        if shot.kind == "shot" and shot.subtitle and shot.text in {e["text"] for e in track}:
            shown.append((shot.text, at / FPS, (at + shot.frames) / FPS))
        at += shot.frames
    assert [text for text, *_ in shown] == [e["text"] for e in track]
    for (_text, start, end), entry in zip(shown, track, strict=True):
        assert start == pytest.approx(entry["start_s"], abs=0.04)
        assert end == pytest.approx(entry["end_s"], abs=0.04)


async def test_a_second_take_speaks_nothing_again(offline):
    drama, scene = await sync_to_async(dialog_scene)()
    first = await render(drama, scene)
    lines_before = await LineAudio.objects.acount()

    second = await render(drama, scene)

    assert second.status == TakeStatus.DONE and second.id != first.id
    assert await LineAudio.objects.acount() == lines_before == 3
    assert second.dialog_track == first.dialog_track
    from studio.models import UsageRecord

    spoken = UsageRecord.objects.filter(operation="speech.synthesize")
    assert await spoken.filter(take_id=first.id).acount() == 3
    assert await spoken.filter(take_id=second.id).acount() == 0  # nothing paid twice


async def test_a_scene_too_short_for_its_dialog_says_so(offline):
    drama, scene = await sync_to_async(dialog_scene)(seconds=2.0)

    take = await render(drama, scene)

    assert take.status == TakeStatus.DONE, (take.error, take.note)
    samples, rate, video_s = audio_of(take)
    assert video_s == pytest.approx(2.0, abs=0.05)
    assert len(samples) / rate == pytest.approx(video_s, abs=0.05)  # cut at the video's end
    # The take says which lines are cut or not heard, and what to do about it.
    heard = [entry["heard"] for entry in take.dialog_track]
    assert heard[0] == "whole" and set(heard[1:]) <= {"cut", "unheard"} and len(heard) == 3
    page = await sync_to_async(take_page)(drama, take)
    assert "The dialog is longer than this take: 2 lines cut or not heard" in page


async def test_a_video_service_with_its_own_audio_owns_the_speech(offline, monkeypatch):
    from dataclasses import replace

    drama, scene = await sync_to_async(dialog_scene)()
    video = registry.video()
    monkeypatch.setattr(video, "capabilities", replace(video.capabilities, native_audio=True))

    take = await render(drama, scene)

    assert take.status == TakeStatus.DONE
    assert take.speech_owner == SpeechOwner.VIDEO and take.dialog_track == []
    assert await LineAudio.objects.acount() == 0


@pytest.mark.django_db
def test_the_voice_preview_plays_a_line_in_the_characters_voice(client, settings, tmp_path):
    from django.urls import reverse

    from tests.factories import create_character, create_drama, create_user

    settings.MEDIA_ROOT = tmp_path
    registry.forget()
    owner = create_user()
    drama = create_drama(owner=owner)
    character = create_character(drama=drama, name="Ada")
    url = reverse("character_voice_preview", args=[drama.id, character.id])

    client.force_login(create_user(username="outsider"))
    assert client.get(url).status_code == 404
    client.force_login(owner)
    response = client.get(url)

    assert response.status_code == 200 and response["Content-Type"] == "audio/wav"
    samples, rate = decode_mono(b"".join(response.streaming_content))
    assert len(samples) / rate > 1.0
    page = client.get(reverse("character_detail", args=[drama.id, character.id]))
    assert url in page.content.decode()


async def test_a_remote_speech_service_voices_the_take(offline, settings):
    from tests.providers_support import running_sim

    drama, scene = await sync_to_async(dialog_scene)()
    # Ada's voice is one of the service's own; Marcus's is the offline "m3", which is not.
    cast = Character.objects.filter(drama=drama)
    await cast.filter(name="Ada").aupdate(voice_provider="openai", voice_id="nova")
    await cast.filter(name="Marcus").aupdate(voice_id="m3")
    async with running_sim() as sim:
        settings.PROVIDER_SPEECH = {
            **settings.PROVIDER_SPEECH,
            "api": "openai",
            "base_url": f"{sim.url}/v1",
            "provider": "openai",
            "model": "gpt-4o-mini-tts",
        }
        registry.forget()
        take = await render(drama, scene)

        assert take.status == TakeStatus.DONE, (take.error, take.note)
        assert sim.stats.requests["speech"] == 3
        assert {body["voice"] for body in sim.speech_bodies} == {"alloy", "nova"}
    rows = [row async for row in LineAudio.objects.all()]
    assert {(row.provider, row.model) for row in rows} == {("openai", "gpt-4o-mini-tts")}
    samples, rate, _video_s = audio_of(take)
    for entry in take.dialog_track:
        assert rms(samples, rate, entry["start_s"] + 0.05, entry["end_s"] - 0.05) > 0.02
    voices = {entry["speaker"]: entry["voice"] for entry in take.dialog_track}
    assert voices["Ada"].endswith("· nova") and voices["Marcus"].endswith("· default voice")
    [note] = {entry["voice_note"] for entry in take.dialog_track if entry["speaker"] == "Marcus"}
    assert "Marcus" in note and "m3" in note
    page = await sync_to_async(take_page)(drama, take)
    assert "· nova" in page and html.escape(note) in page


async def test_the_take_page_shows_who_speaks_and_when(offline):
    drama, scene = await sync_to_async(dialog_scene)()
    take = await render(drama, scene)

    page = await sync_to_async(take_page)(drama, take)

    assert "Spoken by the studio's dialog track (3 lines)" in page
    first = take.dialog_track[0]
    assert f"{first['start_s']:.2f}-{first['end_s']:.2f} s" in page
    assert "I never left." in page


@pytest.mark.django_db
def test_a_voice_out_of_range_is_refused_and_nothing_is_saved(client):
    from django.urls import reverse

    from characters.models import Character
    from tests.factories import create_character, create_drama, create_user

    owner = create_user()
    drama = create_drama(owner=owner)
    character = create_character(drama=drama, name="Ada")
    client.force_login(owner)
    url = reverse("character_edit", args=[drama.id, character.id])

    response = client.post(url, {"name": "Ada", "voice_speed": "5", "voice_pitch": "-30"})

    assert response.status_code == 422
    page = response.content.decode()
    assert "less than or equal to 2.0" in page and "greater than or equal to -12" in page
    saved = Character.objects.get(id=character.id)
    assert (saved.voice_speed, saved.voice_pitch) == (1.0, 0.0)

    response = client.post(url, {"name": "Ada", "voice_id": "f2", "voice_speed": "1.3"})
    saved.refresh_from_db()
    assert response.status_code == 302
    assert (saved.voice_id, saved.voice_speed, saved.voice_pitch) == ("f2", 1.3, 0.0)
