"""The episode master, subtitle files and covers (dramas/delivery/master.py, captions.py,
covers.py), asserted by decoding what they write."""

import itertools
import math
import re

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw

from dramas.delivery.captions import (
    caption_layer,
    safe_area,
    wrap_caption,
    write_srt,
    write_vtt,
)
from dramas.delivery.covers import write_covers
from dramas.delivery.master import (
    Caption,
    Clip,
    MasterError,
    MasterSpec,
    limit,
    loudness_of_samples,
    master_episode,
    measure_loudness,
)
from studio.providers.frames import font

SMALL = MasterSpec(width=360, height=640, fps=30)
RATE = 48_000
RED, BLUE, GREEN = (220, 30, 30), (30, 30, 220), (30, 200, 30)


# --- source clips made with PyAV --------------------------------------------------------------


def make_clip(
    path,
    *,
    seconds: float = 1.0,
    fps: int = 24,
    size: tuple[int, int] = (180, 320),
    colour: tuple[int, int, int] = RED,
    grey=None,
    sound: str | None = None,
    level: float = 0.1,
    frequency: float = 440.0,
    seed: int = 1,
) -> str:
    """An H.264 clip of a solid colour (or, with `grey`, frame i at luma grey(i)), with a tone or
    speech-like noise (noise bursts at syllable rate) as AAC 48 kHz stereo, or no audio."""
    width, height = size
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream(
            "libx264", rate=fps, options={"preset": "ultrafast", "crf": "10"}
        )
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=RATE, layout="stereo") if sound else None
        for index in range(round(seconds * fps)):
            if grey is not None:
                picture = np.full((height * 3 // 2, width), 128, np.uint8)
                picture[:height] = grey(index)
                frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
            else:
                frame = av.VideoFrame.from_ndarray(
                    np.full((height, width, 3), colour, np.uint8), format="rgb24"
                )
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio is not None:
            samples = signal(sound, seconds=seconds, level=level, frequency=frequency, seed=seed)
            stereo = np.stack([samples, samples])
            for offset in range(0, stereo.shape[1], 1024):
                chunk = np.ascontiguousarray(stereo[:, offset : offset + 1024])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = RATE, offset
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)
    return str(path)


def signal(kind: str, *, seconds: float, level: float, frequency: float, seed: int) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    if kind == "tone":
        return (level * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    if kind == "clicks":  # a 10 ms burst every whole second and a half: 0.5 s, 1.5 s, ...
        return (
            level * np.sin(2 * np.pi * 1000 * t) * ((t % 1.0 >= 0.5) & (t % 1.0 < 0.51))
        ).astype(np.float32)
    noise = np.random.default_rng(seed).standard_normal(len(t))
    voiced = np.convolve(noise, np.ones(6) / 6, mode="same")  # darker, like a voice
    return (level * voiced * np.sin(2 * np.pi * 2.5 * t) ** 2).astype(np.float32)


# --- decoding what the master wrote -----------------------------------------------------------


def probe(path) -> dict:
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames = list(container.decode(video))
        pts = [frame.pts for frame in frames]
        return {
            "codec": video.codec_context.name,
            "profile": video.codec_context.profile,
            "pix_fmt": video.codec_context.pix_fmt,
            "size": (video.width, video.height),
            "fps": video.average_rate,
            "frames": len(frames),
            "steps": {b - a for a, b in itertools.pairwise(pts)},
            "keyframes": [index for index, frame in enumerate(frames) if frame.key_frame],
            "audio": (
                audio.codec_context.name,
                audio.codec_context.profile,
                audio.rate,
                audio.codec_context.channels,
            ),
        }


def lumas(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [
            frame.to_ndarray()[: frame.height].astype(np.int16)
            for frame in container.decode(video=0)
        ]


def rgb_means(path) -> list[np.ndarray]:
    """Each frame's mean colour in its central quarter."""
    means = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24").astype(np.float64)
            h, w = rgb.shape[:2]
            means.append(rgb[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean(axis=(0, 1)))
    return means


def decoded_audio(path) -> np.ndarray:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray() for frame in container.decode(stream)]
    return np.concatenate(chunks, axis=1)


def window_db(samples: np.ndarray, start_s: float, end_s: float) -> float:
    part = samples[:, round(start_s * RATE) : round(end_s * RATE)]
    rms = float(np.sqrt(np.mean(part.astype(np.float64) ** 2)))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def master(tmp_path, clips, *, captions=(), spec=SMALL, progress=None):
    burned, clean = tmp_path / "episode.mp4", tmp_path / "episode_clean.mp4"
    result = master_episode(
        clips=list(clips),
        captions=list(captions),
        spec=spec,
        burned_path=str(burned),
        clean_path=str(clean),
        progress=progress,
    )
    return result, burned, clean


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    return {
        "red_tone": make_clip(folder / "red.mp4", seconds=1.5, colour=RED, sound="tone"),
        "blue_speech": make_clip(
            folder / "blue.mp4", seconds=1.5, colour=BLUE, sound="speech", level=0.3
        ),
        "green_silent": make_clip(folder / "green.mp4", seconds=1.0, colour=GREEN),
        "blue_tone": make_clip(
            folder / "blue_tone.mp4", seconds=1.5, colour=BLUE, sound="tone", frequency=660
        ),
        "grey": make_clip(folder / "grey.mp4", seconds=2.0, colour=(128, 128, 128)),
        "wide": make_clip(folder / "wide.mp4", seconds=1.0, size=(320, 180), colour=RED),
    }


# --- the delivery format ----------------------------------------------------------------------


def test_it_masters_both_files_in_the_delivery_format(tmp_path, sources):
    clips = [
        Clip(sources["red_tone"], 0.2, 1.2),
        Clip(sources["blue_speech"], 0.1, 1.1),
        Clip(sources["green_silent"], 0.0, 0.8),
    ]
    seen = []
    result, burned, clean = master(tmp_path, clips, progress=seen.append)
    frames = round((1.0 + 1.0 + 0.8) * 30)
    for path in (burned, clean):
        found = probe(path)
        assert found["codec"] == "h264" and found["profile"] == "High"
        assert found["pix_fmt"] == "yuv420p" and found["size"] == (360, 640)
        assert found["fps"] == 30 and abs(found["frames"] - frames) <= 1
        assert len(found["steps"]) == 1  # constant frame rate: every frame lasts the same
        assert max(np.diff([*found["keyframes"], found["frames"]])) <= 15  # a GOP <= fps / 2
        assert found["audio"] == ("aac", "LC", 48000, 2)
        data = path.read_bytes()
        assert data.index(b"moov") < data.index(b"mdat")  # +faststart
        samples = decoded_audio(path)
        assert samples.shape[1] >= frames / 30 * RATE - 1024  # sound over the whole length
    assert (result.frames, result.width, result.height, result.fps) == (frames, 360, 640, 30)
    assert result.duration_s == pytest.approx(frames / 30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode.mp4", "episode_clean.mp4"]
    assert seen == sorted(seen) and seen[0] == 0.0 and seen[-1] == 1.0


def test_it_has_sound_where_clips_have_it_and_silence_where_not(tmp_path, sources):
    clips = [
        Clip(sources["red_tone"], 0.0, 1.0),
        Clip(sources["green_silent"], 0.0, 1.0),
        Clip(sources["blue_tone"], 0.0, 1.0),
    ]
    _, burned, _ = master(tmp_path, clips)
    samples = decoded_audio(burned)
    for start in np.arange(0.05, 0.95, 0.05):  # the tones, every 50 ms: no hole
        assert window_db(samples, start, start + 0.05) > -30
        assert window_db(samples, start + 2, start + 2.05) > -30
    assert window_db(samples, 1.05, 1.95) < -60  # the clip without audio stays silent


def test_a_source_frame_shows_until_the_next_ones_time(tmp_path):
    """24 fps in, 30 fps out, trimmed deep in a 3 s source (a seek): each output frame is the
    source frame presented at its time, and none before the in point."""
    source = make_clip(tmp_path / "ramp.mp4", seconds=3.0, grey=lambda i: 16 + 3 * i)
    out = tmp_path / "out"
    out.mkdir()
    result, burned, _ = master(out, [Clip(source, 1.7, 2.3)])
    assert result.frames == 18
    for index, luma in enumerate(lumas(burned)):
        shown = math.floor((1.7 + index / 30) * 24 + 1e-6)
        assert abs(luma.mean() - (16 + 3 * shown)) < 1.4, index


def test_the_sound_stays_in_sync_through_trims_and_seeks(tmp_path):
    source = make_clip(tmp_path / "clicks.mp4", seconds=3.0, sound="clicks", level=0.5)
    out = tmp_path / "out"
    out.mkdir()
    _, burned, _ = master(out, [Clip(source, 0.2, 1.0), Clip(source, 2.1, 2.9)])
    loud = np.flatnonzero(np.abs(decoded_audio(burned)[0]) > 0.01)
    onsets = loud[np.diff(loud, prepend=-RATE) > RATE // 20]  # after 50 ms of quiet
    # The clicks at 0.5 s and 2.5 s of the source: 0.3 s into the first clip, 0.4 s into the
    # second (which starts at 0.8 s, after a seek).
    assert onsets / RATE == pytest.approx([0.3, 1.2], abs=0.001)


def test_a_different_aspect_is_fitted_with_black_bars(tmp_path, sources):
    _, burned, _ = master(tmp_path, [Clip(sources["wide"], 0.0, 0.5)])
    with av.open(str(burned)) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    picture_h = round(180 * 360 / 320)  # 202: the full width, centred
    top = (640 - picture_h) // 2
    assert rgb[: top - 4].max() < 12 and rgb[top + picture_h + 4 :].max() < 12
    middle = rgb[320, 20:340].mean(axis=0)
    assert np.abs(middle - RED).max() < 20


# --- transitions ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dissolve", "fade"])
def test_a_transition_keeps_the_length_and_mixes_at_the_cut(tmp_path, sources, kind):
    clips = [
        Clip(sources["red_tone"], 0.0, 1.0, kind, 0.4),
        Clip(sources["blue_tone"], 0.3, 1.3),  # sound before its in point, for the dissolve
    ]
    result, burned, clean = master(tmp_path, clips)
    colours = rgb_means(clean)
    assert result.frames == len(colours) == 60
    assert np.abs(colours[20] - RED).max() < 12  # before the window (0.8 s .. 1.2 s)
    assert np.abs(colours[40] - BLUE).max() < 12  # after it
    if kind == "dissolve":
        half = (np.array(RED) + np.array(BLUE)) / 2
        assert np.abs(colours[30] - half).max() < 14  # both, equally, at the cut
    else:
        assert colours[30].max() < 12  # black at the cut
        assert 80 < colours[27][0] < 140 and colours[27][2] < 40  # red half faded (t=0.9)
        assert 80 < colours[33][2] < 140 and colours[33][0] < 40  # blue half back (t=1.1)
    samples = decoded_audio(burned)
    steady = window_db(samples, 0.2, 0.7)
    if kind == "dissolve":  # equal power: the level holds through the crossfade
        for start in np.arange(0.75, 1.2, 0.025):  # 50 ms: the two tones' beat averages out
            assert abs(window_db(samples, start, start + 0.05) - steady) < 1.0
    else:  # a dip to silence at the cut
        assert window_db(samples, 0.99, 1.01) < steady - 20
        assert abs(window_db(samples, 1.3, 1.7) - steady) < 1.0


def ramp_up(index: int) -> int:
    return 16 + 3 * index


def ramp_down(index: int) -> int:
    return 230 - 3 * index


@pytest.mark.parametrize(
    ("a_source_s", "a_trim", "b_trim"),
    [
        (2.0, (0.5, 1.0), (0.5, 1.5)),  # both have handles: A plays on, B starts early
        (1.0, (0.5, 1.0), (0.0, 1.0)),  # neither: A holds its last frame, B its first
    ],
)
def test_a_dissolve_plays_into_the_handles_or_holds(tmp_path, a_source_s, a_trim, b_trim):
    a = make_clip(tmp_path / "a.mp4", seconds=a_source_s, grey=ramp_up)
    b = make_clip(tmp_path / "b.mp4", seconds=2.0, grey=ramp_down)
    out = tmp_path / "out"
    out.mkdir()
    result, _, clean = master(out, [Clip(a, *a_trim, "dissolve", 0.4), Clip(b, *b_trim)])
    assert result.frames == 45

    def shown(source_s: float, frames: int) -> int:
        return min(max(math.floor(source_s * 24 + 1e-6), 0), frames - 1)

    for index, luma in enumerate(lumas(clean)):
        t = index / 30
        grey_a = ramp_up(shown(a_trim[0] + t, round(a_source_s * 24)))
        grey_b = ramp_down(shown(b_trim[0] + t - 0.5, 48))
        weight = min(max((t - 0.3) / 0.4, 0.0), 1.0)
        expected = (1 - weight) * grey_a + weight * grey_b
        assert abs(luma.mean() - expected) < 2.0, (index, luma.mean(), expected)


# --- loudness ---------------------------------------------------------------------------------


def test_the_meter_reads_the_ebu_reference_tone():
    """EBU Tech 3341 case 1: a stereo 1 kHz sine at -23 dBFS reads -23.0 LUFS (+-0.1)."""
    t = np.arange(20 * RATE) / RATE
    tone = (10 ** (-23 / 20) * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    lufs, peak = loudness_of_samples(np.stack([tone, tone]))
    assert lufs == pytest.approx(-23.0, abs=0.1)
    assert peak == pytest.approx(-23.0, abs=0.1)
    assert loudness_of_samples(np.zeros((2, RATE), np.float32)) == (None, -math.inf)


def test_the_limiter_holds_the_ceiling_without_clipping():
    rng = np.random.default_rng(3)
    samples = (0.2 * rng.standard_normal((2, RATE))).astype(np.float32)
    samples[:, 20_000:20_010] = 1.6  # a burst far over
    limited, cut_db = limit(samples, gain=1.0, ceiling=0.5)
    assert np.abs(limited).max() <= 0.5 + 1e-6
    assert cut_db == pytest.approx(20 * math.log10(1.6 / 0.5), abs=0.05)
    # Away from the peaks the signal is untouched; near them the gain ramps, never jumps.
    quiet = np.abs(samples).max(axis=0) < 0.45
    far = np.convolve(~quiet, np.ones(2001), mode="same") == 0
    assert np.array_equal(limited[:, far], samples[:, far])
    gain = limited[0, 19_000:21_000] / samples[0, 19_000:21_000]
    assert np.abs(np.diff(gain)).max() < 0.01


@pytest.mark.parametrize(("target", "level"), [(-14.0, 0.05), (-23.0, 0.6)])
def test_it_reaches_the_loudness_target_under_the_true_peak(tmp_path, target, level):
    quiet = make_clip(tmp_path / "a.mp4", seconds=2.0, sound="speech", level=level, seed=2)
    loud = make_clip(tmp_path / "b.mp4", seconds=2.0, sound="speech", level=level * 2.5, seed=5)
    out = tmp_path / "out"
    out.mkdir()
    spec = MasterSpec(width=360, height=640, fps=30, loudness_lufs=target, true_peak_dbtp=-1.0)
    result, burned, clean = master(out, [Clip(quiet, 0, 2.0), Clip(loud, 0, 2.0)], spec=spec)
    for path in (burned, clean):
        lufs, peak = measure_loudness(str(path))
        assert lufs == pytest.approx(target, abs=0.5)
        assert peak <= -1.0
        assert result.loudness_lufs == pytest.approx(lufs, abs=0.05)
        assert result.true_peak_dbtp == pytest.approx(peak, abs=0.05)
    # The gain is what the mix needed, whatever the limiter had to take off the peaks.
    assert result.gain_db == pytest.approx(target - result.input_loudness_lufs, abs=1.0)
    assert (result.limited_db > 0) == (target == -14.0)  # the quiet, peaky mix needed it


def test_a_silent_episode_stays_silent_and_says_so(tmp_path, sources):
    result, burned, _ = master(tmp_path, [Clip(sources["green_silent"], 0, 1.0)])
    assert result.loudness_lufs is None and result.input_loudness_lufs is None
    assert result.true_peak_dbtp is None and result.gain_db == 0
    samples = decoded_audio(burned)
    assert samples.shape[1] >= RATE - 1024 and np.abs(samples).max() == 0
    assert measure_loudness(str(burned)) == (None, -math.inf)


# --- captions ---------------------------------------------------------------------------------


def caption_box(text: str, width: int, height: int) -> tuple[int, int, int, int]:
    return caption_layer(text, width=width, height=height).getchannel("A").getbbox()


def test_captions_are_burned_only_into_the_burned_master_on_their_frames(tmp_path, sources):
    text = "You came back for the tapes."
    captions = [Caption(0.5, 1.25, text, "Ada"), Caption(1.4, 1.4, "zero length", "")]
    _, burned, clean = master(tmp_path, [Clip(sources["grey"], 0, 2.0)], captions=captions)
    left, top, right, bottom = caption_box(text, 360, 640)
    inside = np.zeros((640, 360), bool)
    inside[top:bottom, left:right] = True
    # Frame n (at n/30 s) shows the caption when 0.5 <= n/30 < 1.25: frames 15 to 37.
    for index, (with_text, without) in enumerate(zip(lumas(burned), lumas(clean), strict=True)):
        difference = np.abs(with_text - without)
        if 15 <= index <= 37:
            assert difference[inside].mean() > 20, index
        else:
            assert difference[inside].mean() < 1.5, index
        assert difference[~inside].mean() < 0.5, index


def test_the_caption_sits_in_the_safe_area_in_at_most_three_lines():
    long_line = " ".join(["We", "need", "to", "talk", "about", "what", "happened"] * 5)
    for width, height in [(1080, 1920), (360, 640)]:
        left, top, right, bottom = caption_box(long_line, width, height)
        safe = safe_area(width, height)
        assert safe[0] <= left and safe[1] <= top and right <= safe[2] and bottom <= safe[3]
        line_h = round(width * 0.046) * 1.25
        assert bottom - top < 4 * line_h  # three lines at most (shrunk, then shortened)
    assert safe_area(1080, 1920) == (108, 250, 900, 1460)
    face = font(50, bold=True)
    lines = wrap_caption(long_line, face, 700)
    assert len(lines) > 3  # so the layer had to shrink or shorten it
    assert all(face.getlength(line) <= 700 for line in lines)


def test_mandarin_wraps_between_characters_and_keeps_every_one():
    text = "我们必须谈谈那天晚上发生的事情，你不能再逃避了。" * 2
    face = font(50, bold=True)
    lines = wrap_caption(text, face, 400)
    assert len(lines) > 1 and "".join(lines) == text
    assert all(face.getlength(line) <= 400 for line in lines)
    assert not any(line.startswith(("，", "。")) for line in lines)


# --- subtitle files ---------------------------------------------------------------------------

CUE = re.compile(
    r"(\d+)\n(\d\d):(\d\d):(\d\d)[,.](\d{3}) --> (\d\d):(\d\d):(\d\d)[,.](\d{3})\n(.+?)\n(?:\n|$)",
    re.S,
)


def parse_cues(text: str) -> list[tuple[int, float, float, str]]:
    cues = []
    for match in CUE.finditer(text):
        number, *clock, body = match.groups()
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, clock)
        cues.append(
            (
                int(number),
                h1 * 3600 + m1 * 60 + s1 + ms1 / 1000,
                h2 * 3600 + m2 * 60 + s2 + ms2 / 1000,
                body,
            )
        )
    return cues


def test_srt_and_vtt_carry_the_cues_in_order(tmp_path):
    captions = [
        Caption(3723.004, 3724.5, "Late, very late.", "Marcus"),
        Caption(1.25, 2.0, "你好，世界", "Ada"),
        Caption(2.5, 2.5, "zero length", ""),
        Caption(3.0, 4.0, "   ", "Ada"),
        Caption(2.25, 3.0, "Tom & Jerry <3 -->", ""),
    ]
    write_srt(captions, str(tmp_path / "e.srt"))
    write_vtt(captions, str(tmp_path / "e.vtt"))
    srt = (tmp_path / "e.srt").read_bytes().decode("utf-8")
    vtt = (tmp_path / "e.vtt").read_bytes().decode("utf-8")
    assert srt.startswith("1\n00:00:01,250 --> 00:00:02,000\n你好，世界\n\n2\n")
    assert "01:02:03,004 --> 01:02:04,500" in srt
    assert parse_cues(srt) == [
        (1, 1.25, 2.0, "你好，世界"),
        (2, 2.25, 3.0, "Tom & Jerry <3 -->"),
        (3, 3723.004, 3724.5, "Late, very late."),
    ]
    assert vtt.startswith("WEBVTT\n\n1\n00:00:01.250 --> 00:00:02.000\n<v Ada>你好，世界</v>\n")
    assert parse_cues(vtt.removeprefix("WEBVTT\n\n")) == [
        (1, 1.25, 2.0, "<v Ada>你好，世界</v>"),
        (2, 2.25, 3.0, "Tom &amp; Jerry &lt;3 --&gt;"),
        (3, 3723.004, 3724.5, "<v Marcus>Late, very late.</v>"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.srt", "e.vtt"]


# --- covers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(640, 360), (3000, 4000)])
def test_covers_are_centre_cropped_never_stretched(tmp_path, size):
    frame = Image.new("RGB", size, (240, 240, 240))
    side = min(size) // 3
    centre = (size[0] // 2, size[1] // 2)
    ImageDraw.Draw(frame).rectangle(
        (
            centre[0] - side // 2,
            centre[1] - side // 2,
            centre[0] + side // 2,
            centre[1] + side // 2,
        ),
        fill=(10, 10, 10),
    )
    frame.save(tmp_path / "frame.png")
    out = tmp_path / "covers"
    out.mkdir()
    written = write_covers(frame_path=str(tmp_path / "frame.png"), out_dir=str(out))
    assert sorted(written) == ["cover.jpg", "cover_3x4.jpg"]
    for name, expected in [("cover.jpg", (1080, 1920)), ("cover_3x4.jpg", (1080, 1440))]:
        with Image.open(written[name]) as cover:
            assert cover.format == "JPEG" and cover.size == expected
            dark = np.asarray(cover.convert("L")) < 128
        rows, cols = np.nonzero(dark)
        square_h, square_w = rows.max() - rows.min(), cols.max() - cols.min()
        assert abs(square_h - square_w) <= 3  # a square stays square
        assert abs((rows.max() + rows.min()) / 2 - expected[1] / 2) <= 3  # centred
    assert sorted(p.name for p in out.iterdir()) == ["cover.jpg", "cover_3x4.jpg"]


def test_a_cover_from_a_missing_or_broken_frame_is_refused(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a picture")
    for path in (tmp_path / "missing.jpg", tmp_path / "broken.jpg"):
        with pytest.raises(MasterError):
            write_covers(frame_path=str(path), out_dir=str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.jpg"]


# --- refusals ---------------------------------------------------------------------------------


def test_bad_inputs_are_refused_and_leave_no_file(tmp_path, sources):
    (tmp_path / "text.mp4").write_text("not a video")
    truncated = tmp_path / "truncated.mp4"
    with open(sources["red_tone"], "rb") as whole:
        truncated.write_bytes(whole.read()[:3000])
    audio_only = tmp_path / "audio.m4a"
    with av.open(str(audio_only), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=RATE, layout="stereo")
        frame = av.AudioFrame.from_ndarray(
            np.zeros((2, 1024), np.float32), format="fltp", layout="stereo"
        )
        frame.sample_rate, frame.pts = RATE, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    out = tmp_path / "out"
    out.mkdir()
    good = sources["red_tone"]
    cases = {
        "does not exist": [Clip(str(tmp_path / "missing.mp4"), 0, 1)],
        "is not after the in point": [Clip(good, 1.0, 1.0)],
        "is before the start": [Clip(good, -0.5, 1.0)],
        "not a video": [Clip(str(tmp_path / "text.mp4"), 0, 1)],
        "truncated": [Clip(str(truncated), 0, 1)],
        "no video stream": [Clip(str(audio_only), 0, 0.02)],
        "past the end": [Clip(good, 0.2, 5.0)],
        "unknown transition": [Clip(good, 0, 1, "wipe", 0.5), Clip(good, 0, 1)],
        "negative transition": [Clip(good, 0, 1, "fade", -1), Clip(good, 0, 1)],
        "no clips": [],
    }
    messages = {}
    for case, clips in cases.items():
        with pytest.raises(MasterError) as refused:
            master(out, clips)
        messages[case] = str(refused.value)
        assert list(out.iterdir()) == [], case
    assert "does not exist" in messages["does not exist"]
    assert "not after the in point" in messages["is not after the in point"]
    assert "past the end" in messages["past the end"]
    assert "no video stream" in messages["no video stream"]
    assert "not a video" in messages["not a video"] and "not a video" in messages["truncated"]
    for spec, reason in [
        (MasterSpec(width=361, height=640), "even"),
        (MasterSpec(width=360, height=640, x264_preset="warp"), "preset"),
        (MasterSpec(width=360, height=640, loudness_lufs=3.0), "no delivery target"),
    ]:
        with pytest.raises(MasterError, match=reason):
            master(out, [Clip(good, 0, 1)], spec=spec)
    assert list(out.iterdir()) == []


def test_a_failure_midway_leaves_nothing_under_either_name(tmp_path, sources):
    def fail_halfway(fraction: float) -> None:
        if fraction > 0.5:
            raise RuntimeError("the worker was told to stop")

    with pytest.raises(RuntimeError):
        master(tmp_path, [Clip(sources["grey"], 0, 2.0)], progress=fail_halfway)
    assert list(tmp_path.iterdir()) == []


# --- the real size ----------------------------------------------------------------------------


def test_it_masters_a_1080x1920_episode(tmp_path, sources):
    clips = [Clip(sources["red_tone"], 0.0, 1.0, "dissolve", 0.3), Clip(sources["wide"], 0, 1.0)]
    text = "我们必须谈谈。 We need to talk."
    result, burned, clean = master(
        tmp_path, clips, captions=[Caption(0.2, 1.8, text, "Ada")], spec=MasterSpec()
    )
    for path in (burned, clean):
        found = probe(path)
        assert found["size"] == (1080, 1920) and found["profile"] == "High"
        assert found["frames"] == 60 and found["fps"] == 30 and len(found["steps"]) == 1
        lufs, peak = measure_loudness(str(path))
        assert lufs == pytest.approx(-14.0, abs=0.5) and peak <= -1.0
    left, top, right, bottom = caption_box(text, 1080, 1920)
    with_text, without = lumas(burned)[45], lumas(clean)[45]
    assert np.abs(with_text - without)[top:bottom, left:right].mean() > 20
    assert np.abs(with_text - without)[:top].mean() < 0.5
    assert without[:600].max() < 20  # the 16:9 clip sits between black bars
    assert result.width == 1080 and result.height == 1920
