"""Editor timelines (dramas/delivery/timelines.py): every file read back through its own
OpenTimelineIO adapter, and the XML parsed for the frame size editors will open it at."""

import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from xml.etree import ElementTree

import av
import numpy as np
import opentimelineio as otio
import pytest

from dramas.delivery.timelines import (
    EDL_FILE,
    FCP7_XML_FILE,
    FCPXML_FILE,
    OTIO_FILE,
    TimelineClip,
    read_back,
    write_timelines,
)

# Both adapters test an XML element's truth (Python 3.12 deprecates it); nothing of ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Testing an element's truth value:DeprecationWarning"
)

FPS = 30
VENV_BIN = Path(sys.executable).parent


def write_take(path: Path, *, seconds: float, fps: int = FPS) -> None:
    """A small real take: H.264 video with an AAC stereo dialog track."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 180, 320, "yuv420p"
        audio = container.add_stream("aac", rate=48000, layout="stereo")
        for index in range(round(seconds * fps)):
            pixels = np.full((320, 180, 3), index * 7 % 255, dtype=np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        samples = np.zeros((2, 1024), dtype=np.float32)
        for index in range(round(seconds * 48000 / 1024)):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, index * 1024
            for packet in audio.encode(frame):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                container.mux(packet)


def media_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0)) / FPS


# 30 fps: record 0-42, 42-87, 87-117; a 12-frame dissolve (6 + 6) at frame 42 and a 15-frame
# fade (7 + 8) at frame 87, each with the media's handles on both sides.
TRIMS = [
    ("Scene 1 · take 2", "media/01_take2.mp4", 2.0, 0.2, 1.6, "dissolve", 0.4),
    ("Scene 2 · 雨の夜 take 1", "media/02_take5.mp4", 2.0, 0.3, 1.8, "fade", 0.5),
    ('Mei\'s "last" <line>', "media/03_take9.mp4", 1.5, 0.5, 1.5, "cut", 0.0),
]
MARKERS = [(0.5, "Hook"), (3.0, "Twist · 反转")]


def episode_clips(trims=TRIMS) -> list[TimelineClip]:
    return [
        TimelineClip(
            name=name,
            media_path=media,
            media_duration_s=media_s,
            in_s=in_s,
            out_s=out_s,
            transition=transition,
            transition_s=transition_s,
            metadata={"scene_id": number, "take_id": number * 10, "score": 0.5 + number / 10},
        )
        for number, (name, media, media_s, in_s, out_s, transition, transition_s) in enumerate(
            trims, start=1
        )
    ]


@pytest.fixture
def vertical(tmp_path, monkeypatch) -> dict[str, str]:
    """A 1080x1920 episode's timelines beside real take media. Written from inside the
    package folder, so the FCPXML adapter finds the media and reaches for ffprobe (absent)."""
    for _, media, media_s, *_ in TRIMS:
        write_take(tmp_path / media, seconds=media_s)
    monkeypatch.chdir(tmp_path)
    return write_timelines(
        name="Rain Street · 第1集",
        clips=episode_clips(),
        fps=FPS,
        width=1080,
        height=1920,
        out_dir=str(tmp_path),
        markers=MARKERS,
    )


def clip_spans(track) -> list[tuple[str, int, int, int, int]]:
    """(name, source in, source out, record in, record out) per clip, in frames."""
    spans = []
    for clip in track.find_clips():
        record = track.range_of_child(clip)
        spans.append(
            (
                clip.name,
                round(clip.source_range.start_time.to_frames(FPS)),
                round(clip.source_range.end_time_exclusive().to_frames(FPS)),
                round(record.start_time.to_frames(FPS)),
                round(record.end_time_exclusive().to_frames(FPS)),
            )
        )
    return spans


EXPECTED_SPANS = [
    ("Scene 1 · take 2", 6, 48, 0, 42),
    ("Scene 2 · 雨の夜 take 1", 9, 54, 42, 87),
    ('Mei\'s "last" <line>', 15, 45, 87, 117),
]


def assert_within_a_frame(spans, expected) -> None:
    assert [span[0] for span in spans] == [span[0] for span in expected]
    for got, want in zip(spans, expected, strict=True):
        assert all(abs(a - b) <= 1 for a, b in zip(got[1:], want[1:], strict=True)), (got, want)


def test_it_writes_the_four_files(vertical, tmp_path):
    assert set(vertical) == {OTIO_FILE, FCPXML_FILE, FCP7_XML_FILE, EDL_FILE}
    for name, path in vertical.items():
        assert Path(path) == tmp_path / name
        assert Path(path).stat().st_size > 200


def test_the_otio_reads_back_with_the_clips_in_order_their_trims_and_transitions(vertical):
    timeline = otio.adapters.read_from_file(vertical[OTIO_FILE])
    assert timeline.name == "Rain Street · 第1集"
    assert timeline.metadata["drama_studio"] == {"width": 1080, "height": 1920, "fps": FPS}
    video, dialog = timeline.video_tracks(), timeline.audio_tracks()
    assert len(video) == len(dialog) == 1
    for track in (video[0], dialog[0]):
        assert clip_spans(track) == EXPECTED_SPANS
        kinds = [type(item).__name__ for item in track]
        assert kinds == ["Clip", "Transition", "Clip", "Transition", "Clip"]
        dissolve, fade = track[1], track[3]
        assert dissolve.transition_type == otio.schema.TransitionTypes.SMPTE_Dissolve
        assert (dissolve.in_offset.value, dissolve.out_offset.value) == (6, 6)
        assert dissolve.in_offset.rate == FPS
        assert fade.name == "Fade through black"
        assert fade.metadata["drama_studio"]["transition"] == "fade"
        assert (fade.in_offset.value, fade.out_offset.value) == (7, 8)
    # Transitions overlap their cuts: the episode is exactly the sum of the trims.
    assert timeline.duration() == otio.opentime.RationalTime(117, FPS)

    first = video[0][0]
    assert first.media_reference.target_url == "media/01_take2.mp4"
    assert first.media_reference.available_range.duration == otio.opentime.RationalTime(60, FPS)
    assert first.metadata["drama_studio"] == {"scene_id": 1, "take_id": 10, "score": 0.6}
    markers = [(m.name, m.marked_range.start_time) for m in timeline.tracks.markers]
    assert markers == [
        ("Hook", otio.opentime.RationalTime(15, FPS)),
        ("Twist · 反转", otio.opentime.RationalTime(90, FPS)),
    ]


def test_the_media_it_points_at_holds_every_trim(vertical, tmp_path):
    timeline = read_back(vertical[OTIO_FILE])
    for clip in timeline.find_clips():
        media = tmp_path / clip.media_reference.target_url
        decoded_s = media_seconds(media)
        available = clip.media_reference.available_range
        assert abs(available.duration.to_seconds() - decoded_s) <= 1 / FPS
        assert clip.source_range.end_time_exclusive().to_seconds() <= decoded_s + 1e-9
        with av.open(str(media)) as container:
            assert container.streams.audio[0].codec_context.name == "aac"


def test_the_fcpxml_reads_back_and_is_1080_by_1920(vertical):
    timeline = read_back(vertical[FCPXML_FILE])
    # Final Cut has no apostrophe-safe lookups in the adapter: the name is typographic there.
    expected = [(name.replace("'", "\u2019"), *span) for name, *span in EXPECTED_SPANS]
    assert_within_a_frame(clip_spans(timeline.video_tracks()[0]), expected)
    assert_within_a_frame(clip_spans(timeline.audio_tracks()[0]), expected)

    root = ElementTree.parse(vertical[FCPXML_FILE]).getroot()
    (media_format,) = root.findall("./resources/format")
    assert (media_format.get("width"), media_format.get("height")) == ("1080", "1920")
    assert media_format.get("name") == "FFVideoFormat1080x1920p30"
    assert Fraction(media_format.get("frameDuration").rstrip("s")) == Fraction(1, FPS)
    assert root.find("./project/sequence").get("format") == media_format.get("id")
    # One browser clip per take, and the markers where Final Cut shows them (on the clips).
    assert len(root.findall("./asset-clip")) == 3
    markers = [(m.get("value"), m.get("start")) for m in root.iter("marker")]
    assert markers == [("Hook", "7/10s"), ("Twist · 反转", "3/5s")]


def test_the_fcp7_xml_reads_back_with_its_transitions_and_is_1080_by_1920(vertical):
    timeline = read_back(vertical[FCP7_XML_FILE])
    assert timeline.name == "Rain Street · 第1集"
    video, dialog = timeline.video_tracks()[0], timeline.audio_tracks()[0]
    assert_within_a_frame(clip_spans(video), EXPECTED_SPANS)
    assert_within_a_frame(clip_spans(dialog), EXPECTED_SPANS)
    transitions = [item for item in video if isinstance(item, otio.schema.Transition)]
    assert [(t.in_offset.value, t.out_offset.value) for t in transitions] == [(6, 6), (7, 8)]
    assert [m.name for m in timeline.tracks.markers] == ["Hook", "Twist · 反转"]

    root = ElementTree.parse(vertical[FCP7_XML_FILE]).getroot()
    sequence = root.find(".//sequence")
    characteristics = sequence.find("./media/video/format/samplecharacteristics")
    assert characteristics.findtext("width") == "1080"
    assert characteristics.findtext("height") == "1920"
    assert characteristics.findtext("rate/timebase") == "30"
    assert [child.tag for child in characteristics][:3] == ["rate", "width", "height"]
    effects = [
        (track_kind, item.findtext("effect/effectid"))
        for track_kind in ("video", "audio")
        for item in sequence.iterfind(f"./media/{track_kind}/track/transitionitem")
    ]
    assert effects == [
        ("video", "Cross Dissolve"),
        ("video", "Dip to Color Dissolve"),
        ("audio", "KGAudioTransCrossFade3dB"),
        ("audio", "KGAudioTransCrossFade0dB"),
    ]
    # The dialog clips are clipitems of their own (sound of the take), not the video's again.
    audio_items = sequence.findall("./media/audio/track/clipitem")
    assert [item.findtext("sourcetrack/mediatype") for item in audio_items] == ["audio"] * 3


def test_the_edl_reads_back_with_three_events_and_their_record_times(vertical):
    text = Path(vertical[EDL_FILE]).read_text("utf-8")
    assert text.startswith("TITLE: Rain Street")
    assert "01take2  V     C        00:00:00:06 00:00:01:12 00:00:00:00 00:00:01:06" in text
    timeline = read_back(vertical[EDL_FILE])
    track = timeline.video_tracks()[0]
    # An EDL dissolve starts where its incoming event starts: each cut moves back by the part
    # of the transition before it (6 and 7 frames), the dissolve runs its whole length on.
    record = [(span[3], span[4]) for span in clip_spans(track)]
    assert record == [(0, 36), (36, 80), (80, 117)]
    transitions = [item for item in track if isinstance(item, otio.schema.Transition)]
    assert [t.in_offset.value + t.out_offset.value for t in transitions] == [12, 15]
    assert [clip.source_range.start_time.value for clip in track.find_clips()] == [6, 3, 8]
    assert "* LOC: 00:00:00:21 BLUE    HOOK" in text


def test_an_edl_dissolve_never_reaches_before_its_source(tmp_path):
    trims = [TRIMS[0], (*TRIMS[1][:3], 0.0, 1.5, "cut", 0.0)]  # no handle before scene 2
    written = write_timelines(
        name="No handles",
        clips=episode_clips(trims),
        fps=FPS,
        width=1080,
        height=1920,
        out_dir=str(tmp_path),
    )
    track = read_back(written[EDL_FILE]).video_tracks()[0]
    assert [span[1:] for span in clip_spans(track)] == [(6, 48, 0, 42), (0, 45, 42, 87)]
    (dissolve,) = [item for item in track if isinstance(item, otio.schema.Transition)]
    assert dissolve.in_offset.value + dissolve.out_offset.value == 6  # the part after the cut
    # The other timelines keep the dissolve centred, as the master plays it.
    otio_track = read_back(written[OTIO_FILE]).video_tracks()[0]
    assert (otio_track[1].in_offset.value, otio_track[1].out_offset.value) == (6, 6)


@pytest.mark.parametrize(
    ("width", "height", "format_name"),
    [(1920, 1080, "FFVideoFormat1080p25"), (1080, 1080, "FFVideoFormat1080x1080p25")],
)
def test_landscape_and_square_sizes_come_out_right(tmp_path, width, height, format_name):
    written = write_timelines(
        name="Sizes",
        clips=episode_clips(),
        fps=25,
        width=width,
        height=height,
        out_dir=str(tmp_path),
    )
    fcpx_format = ElementTree.parse(written[FCPXML_FILE]).find("./resources/format")
    assert (fcpx_format.get("width"), fcpx_format.get("height")) == (str(width), str(height))
    assert fcpx_format.get("name") == format_name
    assert Fraction(fcpx_format.get("frameDuration").rstrip("s")) == Fraction(1, 25)
    characteristics = ElementTree.parse(written[FCP7_XML_FILE]).find(
        ".//sequence/media/video/format/samplecharacteristics"
    )
    assert (characteristics.findtext("width"), characteristics.findtext("height")) == (
        str(width),
        str(height),
    )
    timeline = read_back(written[OTIO_FILE])
    assert timeline.metadata["drama_studio"]["width"] == width
    edl = read_back(written[EDL_FILE])
    assert len(list(edl.find_clips())) == 3
    assert edl.duration() == otio.opentime.RationalTime(round(3.9 * 25), 25)


def test_non_ascii_names_survive_in_the_otio(vertical):
    raw = Path(vertical[OTIO_FILE]).read_text("utf-8")
    assert "雨の夜" in raw and "第1集" in raw
    names = [clip.name for clip in read_back(vertical[OTIO_FILE]).video_tracks()[0].find_clips()]
    assert names == [name for name, *_ in TRIMS]


def test_otios_own_command_line_reads_and_converts_it(vertical, tmp_path):
    summary = subprocess.run(
        [str(VENV_BIN / "otiostat"), vertical[OTIO_FILE]],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "number of clips: 6" in summary  # three takes, video and dialog
    assert "Tracks are the same length: True" in summary
    assert "total duration: RationalTime(117, 30)" in summary
    # The FCP7 size lives in the .otio's metadata, so a plain conversion keeps it.
    converted = tmp_path / "converted.xml"
    subprocess.run(
        [str(VENV_BIN / "otioconvert"), "-i", vertical[OTIO_FILE], "-o", str(converted)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    characteristics = ElementTree.parse(converted).find(
        ".//sequence/media/video/format/samplecharacteristics"
    )
    assert (characteristics.findtext("width"), characteristics.findtext("height")) == (
        "1080",
        "1920",
    )
    timeline = read_back(str(converted))
    assert_within_a_frame(clip_spans(timeline.video_tracks()[0]), EXPECTED_SPANS)
    cat = subprocess.run(
        [str(VENV_BIN / "otiocat"), vertical[OTIO_FILE]],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert read_back_from_string(cat).name == "Rain Street · 第1集"


def read_back_from_string(text: str) -> otio.schema.Timeline:
    return otio.adapters.read_from_string(text, adapter_name="otio_json")


def test_an_edl_without_its_otio_needs_the_rate(vertical, tmp_path):
    lonely = tmp_path / "lonely" / EDL_FILE
    lonely.parent.mkdir()
    shutil.copyfile(vertical[EDL_FILE], lonely)
    with pytest.raises(ValueError, match="no frame rate"):
        read_back(str(lonely))
    assert len(list(read_back(str(lonely), fps=FPS).find_clips())) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fps": 29}, "fps"),
        ({"clips": []}, "at least one clip"),
        ({"clips": episode_clips([("A", "media/a.mp4", 1.0, 0.5, 1.5, "cut", 0.0)])}, "inside"),
        ({"clips": episode_clips([("A", "media/a.mp4", 1.0, 0.0, 1.0, "wipe", 0.5)])}, "wipe"),
        ({"clips": episode_clips([("A", "media/a.mp4", 0.01, 0.0, 0.01, "cut", 0.0)])}, "frame"),
    ],
)
def test_it_refuses_what_editors_could_not_open(tmp_path, change, message):
    arguments = dict(
        name="Bad", clips=episode_clips(), fps=FPS, width=1080, height=1920, out_dir=str(tmp_path)
    )
    with pytest.raises(ValueError, match=message):
        write_timelines(**(arguments | change))
