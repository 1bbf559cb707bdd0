import asyncio
import io

import av
import numpy as np
import pytest
from PIL import Image

from studio.providers.animatic import RenderOptions, camera_move, plan, render_animatic
from studio.providers.base import CastMember, DialogCue, JobHandle, JobState, VideoRequest
from studio.providers.frames import face_crop_box
from studio.providers.ledger import MemoryLedger
from studio.providers.local_animatic import LocalAnimatic
from tests.factories import FACES_DIR
from tests.first_frame_support import difference, frame_at, keyframe, picture


def solid(colour) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 400), colour).save(out, format="PNG")
    return out.getvalue()


def scene(**fields) -> VideoRequest:
    values = dict(
        prompt="Ada confronts Marcus on the rooftop.",
        duration_s=2.0,
        aspect="9:16",
        title="Scene 1: Rooftop",
        camera="slow push-in",
        location="Rooftop",
        time_of_day="night",
        mood="tense",
        cast=(
            CastMember("Ada", image_path=str(FACES_DIR / "grace_hopper.jpg")),
            CastMember(
                "Marcus", image_path=str(FACES_DIR / "obama.jpg"), face_box=(90, 40, 260, 230)
            ),
        ),
        dialog=(DialogCue("Ada", "You came back."), DialogCue("Marcus", "I never left.")),
    )
    return VideoRequest(**(values | fields))


def probe(path) -> dict:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "size": (stream.width, stream.height),
            "frames": frames,
            "duration": float(stream.duration * stream.time_base),
            "fps": float(stream.average_rate),
        }


@pytest.mark.parametrize(
    ("aspect", "size", "camera"),
    [
        ("9:16", (720, 1280), "slow push-in, close-up"),
        ("16:9", (1280, 720), "pan left across the room"),
        ("1:1", (720, 720), "static wide"),
    ],
)
def test_it_renders_a_playable_h264_mp4(tmp_path, aspect, size, camera):
    path = tmp_path / "scene.mp4"
    progress = []
    result = render_animatic(
        scene(aspect=aspect, camera=camera, duration_s=1.5), str(path), progress=progress.append
    )
    assert probe(path) == {
        "codec": "h264",
        "pix_fmt": "yuv420p",
        "size": size,
        "frames": 36,
        "duration": pytest.approx(1.5),
        "fps": 24.0,
    }
    assert (result.width, result.height, result.frames) == (*size, 36)
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: playable while downloading
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert not (tmp_path / "scene.mp4.part").exists()


def centre_colour(frame: Image.Image) -> np.ndarray:
    width, height = frame.size
    box = frame.crop((width // 3, height // 4, 2 * width // 3, height // 2))
    return np.asarray(box, dtype=float).mean(axis=(0, 1))


def test_it_cuts_to_each_speaker_and_opens_on_a_title_card(tmp_path):
    red, blue = (220, 30, 30), (30, 30, 220)
    request = scene(
        duration_s=3.0,
        camera="static",
        cast=(CastMember("Red", image=solid(red)), CastMember("Blue", image=solid(blue))),
        dialog=(
            DialogCue("Red", "First line, a long one."),
            DialogCue("Blue", "Second line here."),
        ),
    )
    path = tmp_path / "cuts.mp4"
    render_animatic(request, str(path))
    with av.open(str(path)) as container:
        frames = [frame.to_image() for frame in container.decode(video=0)]
    shots = plan(request, fps=24, title_card=True)
    assert [s.kind for s in shots] == ["title", "shot", "shot"]
    title_end = shots[0].frames
    red_mid = title_end + shots[1].frames // 2
    blue_mid = title_end + shots[1].frames + shots[2].frames // 2
    assert centre_colour(frames[red_mid])[0] > 150 > centre_colour(frames[red_mid])[2]
    assert centre_colour(frames[blue_mid])[2] > 150 > centre_colour(frames[blue_mid])[0]
    # The title card is a dimmed backdrop, darker than the shots.
    assert centre_colour(frames[2]).max() < centre_colour(frames[red_mid]).max()


def test_it_opens_on_the_whole_group_when_someone_present_is_silent():
    silent = scene(duration_s=4.0, dialog=(DialogCue("Marcus", "I never left."),))
    shots = plan(silent, fps=24, title_card=True)
    assert [(s.kind, s.speaker) for s in shots] == [
        ("title", ""),
        ("shot", ""),  # the group plate: Ada is on screen though she says nothing
        ("shot", "Marcus"),
    ]
    assert shots[1].frames >= 24  # long enough to be sampled (2 frames a second)
    # Everyone speaks: no group shot, the lines have the time.
    assert [s.speaker for s in plan(scene(duration_s=4.0), fps=24, title_card=True)] == [
        "",
        "Ada",
        "Marcus",
    ]


def test_it_plans_exactly_the_frames_of_the_duration():
    for seconds in (1.0, 2.5, 7.3, 60.0):
        for dialog in ((), scene().dialog, tuple(DialogCue("", f"line {i}") for i in range(90))):
            shots = plan(scene(duration_s=seconds, dialog=dialog), fps=24, title_card=True)
            assert sum(s.frames for s in shots) == round(seconds * 24)
            assert all(s.frames >= 1 for s in shots)


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        ("slow push-in, close-up", ("push_in", "close")),
        ("Dolly in", ("push_in", "medium")),
        ("pull back to reveal", ("pull_out", "medium")),
        ("pan left across the room", ("pan_left", "medium")),
        ("handheld tracking shot", ("pan_right", "medium")),
        ("tilt down from the skyline", ("tilt_down", "medium")),
        ("close-up", ("push_in", "close")),
        ("static wide", ("static", "medium")),
        ("", ("static", "medium")),
    ],
)
def test_it_reads_camera_directions(camera, expected):
    assert camera_move(camera) == expected


def test_it_centres_crops_on_the_face_box_or_the_upper_middle():
    box = (400, 100, 500, 220)
    left, top, right, bottom = face_crop_box((1000, 1500), aspect=9 / 16, box=box)
    assert left < 400 and right > 500 and top < 100 and bottom > 220
    assert (right - left) / (bottom - top) == pytest.approx(9 / 16, abs=0.01)
    assert abs((left + right) / 2 - 450) < 2
    tight = face_crop_box((1000, 1500), aspect=9 / 16, box=box, framing="close")
    assert tight[3] - tight[1] < bottom - top
    # No box: the largest crop that fits, centred left-right, in the upper middle.
    left, top, right, bottom = face_crop_box((1000, 1000), aspect=9 / 16)
    assert (left + right) / 2 == pytest.approx(500, abs=1) and bottom - top == 1000
    # A face at the corner: the crop stays inside the picture.
    crop = face_crop_box((600, 800), aspect=1.0, box=(0, 0, 80, 80))
    assert crop[0] >= 0 and crop[1] >= 0 and crop[2] <= 600 and crop[3] <= 800


def test_it_renders_without_any_cast_or_dialog(tmp_path):
    path = tmp_path / "card.mp4"
    render_animatic(scene(cast=(), dialog=(), duration_s=1.0, camera="pan right"), str(path))
    assert probe(path)["frames"] == 24


def test_it_stops_when_asked_and_leaves_nothing(tmp_path):
    from studio.providers.animatic import RenderCancelled

    path = tmp_path / "x.mp4"
    with pytest.raises(RenderCancelled):
        render_animatic(scene(duration_s=4), str(path), should_cancel=lambda: True)
    assert list(tmp_path.iterdir()) == []


async def test_it_renders_in_the_process_pool_on_the_job_protocol(tmp_path):
    ledger = MemoryLedger()
    animatic = LocalAnimatic(
        output_dir=tmp_path, options=RenderOptions(preset="ultrafast"), recorder=ledger
    )
    request = scene(duration_s=1.0, aspect="1:1")
    handle = await animatic.submit(request, "take-9")
    assert await animatic.submit(request, "take-9") == handle  # one key, one render
    progress = []
    path = await animatic.render(request, idempotency_key="take-9", progress=progress.append)
    assert (await animatic.poll(handle)).state is JobState.SUCCEEDED
    data = await animatic.fetch(handle)
    assert data == path.read_bytes() and probe(path)["size"] == (720, 720)
    assert progress[-1] == 1.0
    [entry] = ledger.entries
    assert (entry.operation, entry.units, entry.ok) == ("video.generate", 1.0, True)
    # A new process (no task in memory) still finds the finished file.
    again = LocalAnimatic(output_dir=tmp_path, recorder=ledger)
    assert (await again.poll(handle)).state is JobState.SUCCEEDED


async def test_it_cancels_a_running_render_and_says_when_one_was_lost(tmp_path):
    animatic = LocalAnimatic(output_dir=tmp_path, recorder=MemoryLedger())
    handle = await animatic.submit(scene(duration_s=20), "take-1")
    while (await animatic.poll(handle)).progress == 0:
        await asyncio.sleep(0.05)
    assert await animatic.cancel(handle)
    while not (status := await animatic.poll(handle)).state.finished:
        await asyncio.sleep(0.05)
    assert status.state is JobState.CANCELLED
    # Nobody renders "a1b2" in this process and no file exists: lost in a restart.
    lost = await LocalAnimatic(output_dir=tmp_path).poll(JobHandle(provider="local", id="a1b2"))
    assert lost.state is JobState.FAILED and lost.retryable


def test_the_first_shot_after_the_title_card_is_the_keyframe(tmp_path):
    options = RenderOptions(fps=12, preset="ultrafast")
    request = scene(first_frame=keyframe((1024, 1024)))
    shots = plan(request, fps=options.fps, title_card=True)
    assert shots[0].kind == "title"
    opening = (shots[0].frames + 1) / options.fps  # just after the title card
    second = (shots[0].frames + shots[1].frames + 1) / options.fps
    render_animatic(request, str(tmp_path / "keyed.mp4"), options=options)
    render_animatic(scene(), str(tmp_path / "plain.mp4"), options=options)
    keyed = (tmp_path / "keyed.mp4").read_bytes()
    plain = (tmp_path / "plain.mp4").read_bytes()

    # The keyframe fills the frame (cover-cropped to 9:16) as it was made: a composed keyframe
    # carries the night's tint already, a second one would darken the opening shot.
    expected = picture(keyframe())
    assert difference(frame_at(keyed, opening), expected) < 15
    assert difference(frame_at(plain, opening), expected) > 40
    # The shots after it are the animatic's own: the second speaker's face, as without one.
    assert difference(frame_at(keyed, second), frame_at(plain, second)) < 3
    assert difference(frame_at(keyed, 0.0), frame_at(plain, 0.0)) < 3  # the same title card


def test_the_offline_animatic_takes_a_first_frame():
    assert LocalAnimatic.capabilities.first_frame
