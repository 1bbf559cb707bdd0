"""Editor timelines of an episode through OpenTimelineIO: `episode.otio`, `episode.fcpxml`
(Final Cut Pro, Resolve), FCP7 `episode.xml` (Premiere) and a CMX 3600 `episode.edl`, all
pointing at the clean take media shipped beside them. Django-free (it runs in the CPU pool).

The adapters need help in three places, fixed here rather than worked around by editors:
- the FCPXML adapter names its `<format>` from ffprobe (not installed; "1080x1920" contains
  "1920", so it would say landscape 1080p) and gives it no size: patched to the episode's;
- the FCP7 adapter writes an empty `<format/>` unless the timeline's `fcp_xml` metadata
  carries the sample characteristics: set in the `.otio` too, so `otioconvert` agrees;
- the EDL writer cannot start a dissolve before a source's first frame: clamped there.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote
from xml.etree import ElementTree

import opentimelineio as otio
from opentimelineio.opentime import RationalTime, TimeRange

OTIO_FILE = "episode.otio"
FCPXML_FILE = "episode.fcpxml"
FCP7_XML_FILE = "episode.xml"
EDL_FILE = "episode.edl"
ADAPTER_BY_SUFFIX = {
    ".otio": "otio_json",
    ".fcpxml": "fcpx_xml",
    ".xml": "fcp_xml",
    ".edl": "cmx_3600",
}
# Our own metadata (scene, take, score...; the episode's size) lives under this key, as OTIO
# namespaces metadata per tool.
NAMESPACE = "drama_studio"
# The only rates the FCPXML adapter can express (its frameDuration table).
SUPPORTED_FPS = (24, 25, 30, 50, 60)
TRANSITIONS = ("cut", "fade", "dissolve")
# How far past the media's end an out point may be (float seconds from a probe) and still count
# as the media's last frame.
OUT_POINT_SLACK_S = 0.002

# FCP7 effects, as Final Cut 7 and Premiere name them: a fade through black is their dip to
# colour dissolve (black unless told otherwise); under it the dialog dips too (a constant-gain
# fade), where a dissolve's dialog crossfades at constant power.
FCP7_VIDEO_EFFECTS = {
    "dissolve": {
        "name": "Cross Dissolve",
        "effectid": "Cross Dissolve",
        "effectcategory": "Dissolve",
        "effecttype": "transition",
        "mediatype": "video",
    },
    "fade": {
        "name": "Dip to Color Dissolve",
        "effectid": "Dip to Color Dissolve",
        "effectcategory": "Dissolve",
        "effecttype": "transition",
        "mediatype": "video",
    },
}
FCP7_AUDIO_EFFECTS = {
    "dissolve": {
        "name": "Cross Fade (+3dB)",
        "effectid": "KGAudioTransCrossFade3dB",
        "effecttype": "transition",
        "mediatype": "audio",
    },
    "fade": {
        "name": "Cross Fade (0dB)",
        "effectid": "KGAudioTransCrossFade0dB",
        "effecttype": "transition",
        "mediatype": "audio",
    },
}
TRANSITION_NAMES = {"dissolve": "Dissolve", "fade": "Fade through black"}
# The order Final Cut 7 writes these elements' children in: what comes from metadata comes out
# sorted by key (OTIO keeps metadata in a sorted map).
FCP7_CHILD_ORDER = {
    "samplecharacteristics": (
        "rate",
        "width",
        "height",
        "anamorphic",
        "pixelaspectratio",
        "fielddominance",
        "colordepth",
        "depth",
        "samplerate",
    ),
    "rate": ("timebase", "ntsc"),
    "effect": ("name", "effectid", "effectcategory", "effecttype", "mediatype"),
    # Timing first, then the effect.
    "transitionitem": ("start", "end", "alignment", "cutPointTicks", "rate", "effect"),
}


@dataclass(frozen=True)
class TimelineClip:
    name: str  # e.g. "Scene 2 · take 3"
    media_path: str  # relative path of the clean take media in the package
    media_duration_s: float  # the whole source file's length
    in_s: float  # trim in, seconds into the source
    out_s: float  # trim out
    transition: str = "cut"  # into the next clip: "cut" | "fade" | "dissolve"
    transition_s: float = 0.0  # centred on the cut, never changes the total length
    metadata: dict = field(default_factory=dict)  # scene id, take id, score...: kept in the .otio


def write_timelines(
    *,
    name: str,
    clips: list[TimelineClip],
    fps: int,
    width: int,
    height: int,
    out_dir: str,
    markers: list[tuple[float, str]] = (),
) -> dict[str, str]:
    """Writes episode.otio, episode.fcpxml, episode.xml and episode.edl into `out_dir`.
    Returns {file name: path}."""
    timeline = episode_timeline(
        name=name, clips=clips, fps=fps, width=width, height=height, markers=markers
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}

    path = out / OTIO_FILE
    otio.adapters.write_to_file(timeline, str(path), adapter_name="otio_json")
    written[OTIO_FILE] = str(path)

    # Each adapter gets its own copy: the EDL writer, for one, edits the timeline it is given.
    fcpx_text = otio.adapters.write_to_string(_for_fcpx(timeline), adapter_name="fcpx_xml")
    path = out / FCPXML_FILE
    path.write_text(_sized_fcpxml(fcpx_text, width=width, height=height, fps=fps), "utf-8")
    written[FCPXML_FILE] = str(path)

    fcp7_text = otio.adapters.write_to_string(_for_fcp7(timeline), adapter_name="fcp_xml")
    path = out / FCP7_XML_FILE
    path.write_text(_tidy_fcp7_xml(fcp7_text), "utf-8")
    written[FCP7_XML_FILE] = str(path)

    edl_text = otio.adapters.write_to_string(_for_edl(timeline), adapter_name="cmx_3600")
    path = out / EDL_FILE
    path.write_text(edl_text, "utf-8")
    written[EDL_FILE] = str(path)
    return written


def read_back(path: str, *, fps: int | None = None) -> otio.schema.Timeline:
    """A written timeline, read through its format's adapter. An EDL carries no frame rate:
    `fps`, else the rate of the episode.otio written beside it."""
    suffix = Path(path).suffix.lower()
    adapter_name = ADAPTER_BY_SUFFIX.get(suffix)
    if adapter_name is None:
        raise ValueError(f"Not a timeline this module writes: {path}")
    options = {}
    if adapter_name == "cmx_3600":
        options["rate"] = fps or _fps_beside(path)
    result = otio.adapters.read_from_file(path, adapter_name=adapter_name, **options)
    if isinstance(result, otio.schema.Timeline):
        return result
    timelines = list(result.find_children(descended_from_type=otio.schema.Timeline))
    if len(timelines) != 1:
        raise ValueError(f"{path} holds {len(timelines)} timelines, not one")
    return timelines[0]


def episode_timeline(
    *,
    name: str,
    clips: list[TimelineClip],
    fps: int,
    width: int,
    height: int,
    markers: list[tuple[float, str]] = (),
) -> otio.schema.Timeline:
    """The episode as OTIO: a video track of the clips in order, a dialog track of the same
    clips' audio, transitions centred on their cuts, markers on the timeline."""
    _check(clips=clips, fps=fps, width=width, height=height)
    timeline = otio.schema.Timeline(name=name)
    timeline.metadata[NAMESPACE] = {"width": width, "height": height, "fps": fps}
    timeline.metadata["fcp_xml"] = _fcp7_sequence_format(width=width, height=height, fps=fps)
    video = otio.schema.Track(name="Video", kind=otio.schema.TrackKind.Video)
    dialog = otio.schema.Track(name="Dialog", kind=otio.schema.TrackKind.Audio)
    timeline.tracks.extend([video, dialog])

    ranges = [_source_range(clip, fps) for clip in clips]
    for index, (clip, source_range) in enumerate(zip(clips, ranges, strict=True)):
        for track in (video, dialog):
            item = otio.schema.Clip(
                name=clip.name,
                media_reference=otio.schema.ExternalReference(
                    target_url=clip.media_path,
                    available_range=TimeRange(
                        RationalTime(0, fps),
                        RationalTime(_frames(clip.media_duration_s, fps), fps),
                    ),
                ),
                source_range=source_range,
                metadata={NAMESPACE: dict(clip.metadata)},
            )
            if track is dialog:
                # Its own FCP7 clipitem for the take's sound (else both tracks share one id).
                item.metadata["fcp_xml"] = {
                    "sourcetrack": {"mediatype": "audio", "trackindex": "1"}
                }
            track.append(item)
            if index + 1 < len(clips):
                transition = _transition(
                    clip=clip,
                    before=source_range,
                    after=ranges[index + 1],
                    fps=fps,
                    audio=track is dialog,
                )
                if transition is not None:
                    track.append(transition)

    total = video.duration()
    for seconds, label in markers:
        frame = min(max(_frames(seconds, fps), 0), int(total.value))
        timeline.tracks.markers.append(
            otio.schema.Marker(
                name=label,
                marked_range=TimeRange(RationalTime(frame, fps), RationalTime(0, fps)),
                # Not red or green: the FCPXML adapter makes those to-do items.
                color=otio.schema.MarkerColor.BLUE,
            )
        )
    return timeline


def _check(*, clips: list[TimelineClip], fps: int, width: int, height: int) -> None:
    if not clips:
        raise ValueError("A timeline needs at least one clip.")
    if fps not in SUPPORTED_FPS:
        raise ValueError(f"Timelines are written at {SUPPORTED_FPS} fps, not {fps}.")
    if width <= 0 or height <= 0:
        raise ValueError(f"Not a frame size: {width}x{height}.")
    for clip in clips:
        if clip.transition not in TRANSITIONS:
            raise ValueError(f"{clip.name}: unknown transition {clip.transition!r}.")
        if clip.transition_s < 0:
            raise ValueError(f"{clip.name}: a transition cannot last {clip.transition_s} s.")
        if _frames(clip.media_duration_s, fps) < 1:
            raise ValueError(f"{clip.name}: its media is shorter than a frame.")
        if not 0 <= clip.in_s < clip.out_s <= clip.media_duration_s + OUT_POINT_SLACK_S:
            raise ValueError(
                f"{clip.name}: trim {clip.in_s}-{clip.out_s} s is not inside its "
                f"{clip.media_duration_s} s of media."
            )


def _frames(seconds: float, fps: int) -> int:
    return round(seconds * fps)


def _source_range(clip: TimelineClip, fps: int) -> TimeRange:
    media_end = _frames(clip.media_duration_s, fps)
    start = min(_frames(clip.in_s, fps), media_end - 1)
    end = min(max(_frames(clip.out_s, fps), start + 1), media_end)
    return TimeRange(RationalTime(start, fps), RationalTime(end - start, fps))


def _transition(
    *, clip: TimelineClip, before: TimeRange, after: TimeRange, fps: int, audio: bool
) -> otio.schema.Transition | None:
    frames = _frames(clip.transition_s, fps) if clip.transition != "cut" else 0
    # Centred: half before the cut (into the outgoing clip), the rest after it.
    in_frames = min(frames // 2, int(before.duration.value))
    out_frames = min(frames - frames // 2, int(after.duration.value))
    if in_frames + out_frames == 0:
        return None
    effects = FCP7_AUDIO_EFFECTS if audio else FCP7_VIDEO_EFFECTS
    return otio.schema.Transition(
        name=TRANSITION_NAMES[clip.transition],
        transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
        in_offset=RationalTime(in_frames, fps),
        out_offset=RationalTime(out_frames, fps),
        metadata={
            NAMESPACE: {"transition": clip.transition, "seconds": clip.transition_s},
            "fcp_xml": {"effect": effects[clip.transition]},
        },
    )


def _fcp7_sequence_format(*, width: int, height: int, fps: int) -> dict:
    rate = {"timebase": str(fps), "ntsc": "FALSE"}
    return {
        "media": {
            "video": {
                "format": {
                    "samplecharacteristics": {
                        "rate": rate,
                        "width": str(width),
                        "height": str(height),
                        "anamorphic": "FALSE",
                        "pixelaspectratio": "square",
                        "fielddominance": "none",
                        "colordepth": "24",
                    }
                }
            },
            "audio": {"format": {"samplecharacteristics": {"depth": "16", "samplerate": "48000"}}},
        }
    }


def _video_clips(timeline: otio.schema.Timeline) -> list[otio.schema.Clip]:
    return list(timeline.video_tracks()[0].find_clips())


def _markers_onto_clips(timeline: otio.schema.Timeline) -> None:
    """FCPXML and EDL carry markers on clips only (the adapters drop the timeline's): each
    marker goes onto the video clip it falls in, at the same source frame."""
    clips = _video_clips(timeline)
    for marker in timeline.tracks.markers:
        at = marker.marked_range.start_time
        clip = next((c for c in clips if at < c.range_in_parent().end_time_exclusive()), clips[-1])
        last_frame = clip.source_range.duration - RationalTime(1, at.rate)
        in_clip = min(at - clip.range_in_parent().start_time, last_frame)
        clip.markers.append(
            otio.schema.Marker(
                name=marker.name,
                marked_range=TimeRange(
                    clip.source_range.start_time + in_clip, marker.marked_range.duration
                ),
                color=marker.color,
            )
        )


def _for_fcpx(timeline: otio.schema.Timeline) -> otio.schema.Timeline:
    fcpx = copy.deepcopy(timeline)
    _markers_onto_clips(fcpx)
    for clip in fcpx.find_clips():
        # The adapter finds its elements by XPath on names and paths, where an apostrophe
        # ends the string: typographic in names, escaped in the (URL) paths.
        clip.name = clip.name.replace("'", "\u2019")
        clip.media_reference.target_url = quote(clip.media_reference.target_url)
    return fcpx


def _sized_fcpxml(text: str, *, width: int, height: int, fps: int) -> str:
    root = ElementTree.fromstring(text)
    for media_format in root.iter("format"):
        media_format.set("name", _fcpx_format_name(width=width, height=height, fps=fps))
        media_format.set("width", str(width))
        media_format.set("height", str(height))
    # The adapter adds a browser clip per track a media appears on (its "already there" check
    # tests an element's truth, false when it has no children): one per media is enough.
    seen = set()
    for browser_clip in root.findall("asset-clip"):
        key = tuple(sorted(browser_clip.attrib.items()))
        if key in seen:
            root.remove(browser_clip)
        seen.add(key)
    ElementTree.indent(root, space="    ")
    body = ElementTree.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE fcpxml>\n{body}\n'


def _fcpx_format_name(*, width: int, height: int, fps: int) -> str:
    # Final Cut's names for its presets: landscape HD by its height, anything else as WxH.
    if (width, height) == (1920, 1080):
        return f"FFVideoFormat1080p{fps}"
    if (width, height) == (1280, 720):
        return f"FFVideoFormat720p{fps}"
    return f"FFVideoFormat{width}x{height}p{fps}"


def _for_fcp7(timeline: otio.schema.Timeline) -> otio.schema.Timeline:
    fcp7 = copy.deepcopy(timeline)
    for clip in fcp7.find_clips():
        clip.media_reference.target_url = quote(clip.media_reference.target_url)
    return fcp7


def _tidy_fcp7_xml(text: str) -> str:
    """Puts what came from metadata in the order Final Cut 7 writes it."""
    root = ElementTree.fromstring(text)
    for tag, order in FCP7_CHILD_ORDER.items():
        rank = {child_tag: index for index, child_tag in enumerate(order)}
        for element in root.iter(tag):
            # A stable sort: tags outside the table keep their places at the end.
            element[:] = sorted(element, key=lambda child: rank.get(child.tag, len(rank)))
    ElementTree.indent(root, space="    ")
    body = ElementTree.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE xmeml>\n{body}\n'


def _for_edl(timeline: otio.schema.Timeline) -> otio.schema.Timeline:
    edl = copy.deepcopy(timeline)
    _markers_onto_clips(edl)
    track = edl.video_tracks()[0]
    for index, item in enumerate(track):
        if not isinstance(item, otio.schema.Transition):
            continue
        # A dissolve's incoming side starts in_offset before the cut in its source: no earlier
        # than the source's first frame, the rest of the dissolve stays after the cut.
        incoming = track[index + 1]
        pre_roll = (
            incoming.source_range.start_time - incoming.media_reference.available_range.start_time
        )
        if item.in_offset > pre_roll:
            item.in_offset = pre_roll
    _unique_reels(_video_clips(edl))
    return edl


def _unique_reels(clips: list[otio.schema.Clip]) -> None:
    """Reel names from the media's file names (8 characters, CMX 3600), told apart where two
    media would share one."""
    reel_by_path: dict[str, str] = {}
    for clip in clips:
        path = clip.media_reference.target_url
        if path not in reel_by_path:
            stem = re.sub(r"[^A-Za-z0-9]+", "", Path(path).stem)[:8] or "AX"
            reel = stem
            number = 1
            while reel in reel_by_path.values():
                reel = f"{stem[:5]}{number:03d}"
                number += 1
            reel_by_path[path] = reel
        clip.metadata["cmx_3600"] = {"reel": reel_by_path[path]}


def _fps_beside(path: str) -> int:
    beside = Path(path).with_suffix(".otio")
    if not beside.exists():
        raise ValueError(f"{path}: an EDL carries no frame rate; pass fps.")
    timeline = otio.adapters.read_from_file(str(beside), adapter_name="otio_json")
    return int(timeline.metadata[NAMESPACE]["fps"])
