"""The offline animatic renderer: a scene -> a real H.264 MP4 (yuv420p, faststart).

A title card, then one shot per dialog line (the speaker's face-centred crop, or everyone when
the narrator speaks), each with the scene's camera move and a subtitle; with no dialog, one shot
of the cast with the action as a caption. A request with a first frame (the scene's chosen
keyframe) opens on it: the first shot after the title card shows that still as it is, fit to
the plate (a keyframe is a finished picture: tinted once already when the studio composed
it), so the animatic starts where the storyboard does. Everything
costly happens once per shot: plates are built with Pillow and converted to YUV once, text
layers are pre-rendered and pre-multiplied.
Per frame the renderer only copies a window of the plate (pan), or scales one with libswscale
(push in / pull out), and blends the small text boxes in place, on a helper thread, while the
encoder works. Pure CPU and Django-free: it runs in the shared process pool (studio.cpu).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageDraw, ImageOps

from studio.providers import frames as stills
from studio.providers.base import VideoRequest, frame_size
from studio.providers.yuv import Overlay, Yuv, frame_planes

# How far a move travels: a push in ends 8 % closer; a pan crosses a quarter more picture.
MOVE_MARGIN = {"push_in": 1.08, "pull_out": 1.08, "pan": 1.25, "tilt": 1.25}


@dataclass(frozen=True)
class RenderOptions:
    fps: int = 24
    preset: str = "veryfast"
    crf: int = 23
    size: tuple[int, int] | None = None  # overrides the aspect's size (the simulator's small clips)
    title_card: bool = True
    overlays: bool = True
    tag: str = "OFFLINE ANIMATIC"


@dataclass(frozen=True)
class RenderResult:
    path: str
    width: int
    height: int
    fps: int
    frames: int
    duration_s: float
    bytes: int


class RenderCancelled(Exception):
    pass


def camera_move(text: str) -> tuple[str, str]:
    """(move, framing) from a free-text camera direction; unknown words mean a static shot."""
    words = " ".join(text.lower().replace("-", " ").split())
    framing = "close" if any(k in words for k in ("close up", "closeup", "ecu", "tight")) else ""
    if any(k in words for k in ("push", "dolly in", "zoom in", "move in", "creep in")):
        move = "push_in"
    elif any(k in words for k in ("pull", "zoom out", "dolly out", "pull back", "reveal")):
        move = "pull_out"
    elif "pan left" in words:
        move = "pan_left"
    elif any(k in words for k in ("pan", "track", "truck", "dolly")):
        move = "pan_right"
    elif "tilt up" in words:
        move = "tilt_up"
    elif "tilt" in words or "crane" in words:
        move = "tilt_down"
    else:
        # A close-up without a move still breathes: a slow push in.
        move = "push_in" if framing else "static"
    return move, framing or "medium"


@dataclass
class ShotPlan:
    frames: int
    kind: str  # "title" | "shot"
    speaker: str = ""
    text: str = ""
    caption_note: bool = False
    subtitle: bool = True  # False: the pause around a line, when nobody speaks


def plan(request: VideoRequest, *, fps: int, title_card: bool) -> list[ShotPlan]:
    """The timeline in frames: exactly round(duration * fps) frames in total."""
    total = max(round(request.duration_s * fps), 1)
    title = min(round(min(max(request.duration_s * 0.2, 0.5), 2.0) * fps), total - 1)
    shots = [ShotPlan(frames=title, kind="title")] if title_card and title > 0 else []
    left = total - sum(s.frames for s in shots)
    cues = [cue for cue in request.dialog if cue.line.strip()][:left]
    if not cues:
        return [*shots, ShotPlan(left, "shot", text=request.prompt, caption_note=True)]
    if all(cue.start_s is not None and cue.end_s is not None for cue in cues):
        return shots + _timed_shots(request, cues, fps=fps, start=total - left, total=total)
    # Cast present but silent would never be on screen (speakers get close shots): open on
    # the whole group for a second or a fifth of the scene, so everyone present is seen.
    speaking = {_key(cue.speaker) for cue in cues}
    group = min(max(fps, left // 5), left - len(cues))
    if group > 0 and any(_key(member.name) not in speaking for member in request.cast):
        shots.append(ShotPlan(group, "shot", text=request.prompt, caption_note=True))
        left -= group
    # Lines share the time by length, each at least one frame; rounding goes to the last.
    weights = [max(len(cue.line), 12) for cue in cues]
    counts = [max(1, left * w // sum(weights)) for w in weights]
    counts[-1] += left - sum(counts)
    while counts[-1] < 1:
        index = counts.index(max(counts))
        counts[index] -= 1
        counts[-1] += 1
    return shots + [
        ShotPlan(count, "shot", speaker=cue.speaker, text=cue.line)
        for cue, count in zip(cues, counts, strict=True)
    ]


def _timed_shots(request: VideoRequest, cues, *, fps: int, start: int, total: int):
    """Shots cut where the dialog track's lines start and end: each subtitle is on screen
    exactly while its line is heard; the pauses hold on the next speaker without one (the
    first pause on the whole group when some of the cast never speaks)."""
    speaking = {_key(cue.speaker) for cue in cues}
    silent_cast = any(_key(member.name) not in speaking for member in request.cast)
    shots, at = [], start
    for index, cue in enumerate(cues):
        begin = min(max(round(cue.start_s * fps), at), total)
        end = min(max(round(cue.end_s * fps), begin), total)
        if begin > at:
            if index == 0 and silent_cast:
                shots.append(ShotPlan(begin - at, "shot", text=request.prompt, caption_note=True))
            else:
                shots.append(ShotPlan(begin - at, "shot", speaker=cue.speaker, subtitle=False))
        if end > begin:
            shots.append(ShotPlan(end - begin, "shot", speaker=cue.speaker, text=cue.line))
        at = end
    if at < total:
        shots.append(ShotPlan(total - at, "shot", speaker=cues[-1].speaker, subtitle=False))
    return shots


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


@dataclass
class Shot:
    frames: int
    move: str
    plate: Yuv
    overlays: list[Overlay]


def _even(value: float) -> int:
    return max(round(value / 2) * 2, 2)


def _plate_size(move: str, size: tuple[int, int]) -> tuple[int, int]:
    width, height = size
    if move in ("push_in", "pull_out"):
        return _even(width * MOVE_MARGIN[move]), _even(height * MOVE_MARGIN[move])
    if move.startswith("pan"):
        return _even(width * MOVE_MARGIN["pan"]), height
    if move.startswith("tilt"):
        return width, _even(height * MOVE_MARGIN["tilt"])
    return size


def build_shots(request: VideoRequest, *, size: tuple[int, int], options: RenderOptions):
    return list(iter_shots(request, size=size, options=options))


def iter_shots(request: VideoRequest, *, size: tuple[int, int], options: RenderOptions):
    """Plates and overlays of each shot of the plan, built when the shot is due: the renderer
    builds the next shot while the encoder works on the previous one."""
    move, framing = camera_move(request.camera)
    cast = [(m, image) for m in request.cast if (image := stills.load_image(m)) is not None]
    by_name = {_key(m.name): (m, image) for m, image in cast}
    first_image = cast[0][1] if cast else None
    keyframe = stills.decode_image(request.first_frame)
    tag = [Overlay(stills.tag_layer(size, options.tag))] if options.overlays else []
    plates: dict[str, Yuv] = {}
    for item in plan(request, fps=options.fps, title_card=options.title_card):
        if item.kind == "title":
            card = stills.title_card(
                size,
                background=stills.backdrop(size, request.time_of_day, first_image),
                title=request.title,
                subtitle=" · ".join(p for p in (request.location, request.time_of_day) if p),
                details=[d for d in (request.mood, request.prompt) if d]
                + ([f"Camera: {request.camera}"] if request.camera else []),
            )
            yield Shot(item.frames, "static", Yuv(card), tag)
            continue
        speaker = by_name.get(_key(item.speaker))
        key = speaker[0].name if speaker is not None else ""
        if keyframe is not None:  # the first shot: the storyboard's still
            plate = Yuv(_keyframe_plate(keyframe, _plate_size(move, size)))
            keyframe = None
        else:
            if key not in plates:  # a speaker's (or the group's) plate serves all their shots
                plates[key] = Yuv(
                    _plate(
                        request,
                        speaker,
                        cast,
                        _plate_size(move, size),
                        framing,
                        labels=options.overlays,
                    )
                )
            plate = plates[key]
        overlays = list(tag)
        if options.overlays and item.subtitle and (cast or item.speaker or not item.caption_note):
            caption = stills.caption_layer(
                size,
                speaker=item.speaker or ("" if item.caption_note else "Narrator"),
                text=item.text,
                italic_note=item.caption_note,
            )
            overlays.append(Overlay(caption))
        yield Shot(item.frames, move, plate, overlays)


def _keyframe_plate(image: Image.Image, plate_size: tuple[int, int]) -> Image.Image:
    """The keyframe filling the plate (cover-cropped about its centre), its colours as made."""
    return ImageOps.fit(image, plate_size, Image.Resampling.BICUBIC)


def _plate(request: VideoRequest, speaker, cast, plate_size, framing, *, labels: bool):
    """The picture a shot moves over: the speaker, else everyone, else the action as a card."""
    if speaker is not None:
        member, image = speaker
        crop = stills.face_crop(image, plate_size, box=member.face_box, framing=framing)
        return stills.tint(crop, request.time_of_day)
    if cast:
        return stills.group_plate(cast, plate_size, time_of_day=request.time_of_day, labels=labels)
    return _story_card(plate_size, request)


STILL_FRAMINGS = ("medium", "close")


def still_plate(request: VideoRequest, size: tuple[int, int], *, variant: int = 0) -> Image.Image:
    """A scene's still in the animatic's look, without the title card or any text over it:
    one person face-centred, several in panels, nobody: the action written large. `variant`
    changes the framing of one person and the order of several (a storyboard's candidates)."""
    cast = [(m, image) for m in request.cast if (image := stills.load_image(m)) is not None]
    _move, framing = camera_move(request.camera)
    if len(cast) == 1:
        framing = STILL_FRAMINGS[(STILL_FRAMINGS.index(framing) + variant) % len(STILL_FRAMINGS)]
        return _plate(request, cast[0], cast, size, framing, labels=False)
    if cast:
        shift = variant % len(cast)
        cast = cast[shift:] + cast[:shift]
    return _plate(request, None, cast, size, framing, labels=False)


def _story_card(size: tuple[int, int], request: VideoRequest) -> Image.Image:
    """No cast images: the action written large over the time-of-day backdrop."""
    card = stills.backdrop(size, request.time_of_day, None)
    draw = ImageDraw.Draw(card)
    base = max(min(size) // 18, 12)
    face = stills.font(base)
    lines = stills.wrap(request.prompt or request.title, face, int(size[0] * 0.8), 8)
    y = size[1] // 2 - len(lines) * base * 13 // 20
    for line in lines:
        draw.text((size[0] // 2, y), line, font=face, fill=(240, 240, 240), anchor="mt")
        y += int(base * 1.3)
    return card


def _ease(t: float) -> float:
    return t * t * (3 - 2 * t)


def shot_frames(
    shot: Shot, size: tuple[int, int], scalers: dict | None = None
) -> Iterator[av.VideoFrame]:
    """The shot's frames. `scalers` keeps one libswscale context per source size: building a
    context costs more than the scaling itself, and a zoom revisits the same sizes."""
    width, height = size
    plate_w, plate_h = shot.plate.size
    scalers = {} if scalers is None else scalers
    if shot.move == "static":
        frame = shot.plate.window(0, 0, width, height)
        planes = frame_planes(frame)
        for overlay in shot.overlays:
            overlay.apply(planes)
        for _ in range(shot.frames):
            yield frame  # one composed picture, encoded shot.frames times
        return
    span = max(shot.frames - 1, 1)
    frame, shown = None, None
    for index in range(shot.frames):
        t = _ease(index / span)
        if shot.move in ("push_in", "pull_out"):
            zoom = 1 + (MOVE_MARGIN["push_in"] - 1) * (t if shot.move == "push_in" else 1 - t)
            # Even sizes in 2 px steps, height from width: few distinct sizes, no distortion.
            crop_w = _even(plate_w / zoom)
            crop_h = _even(crop_w * plate_h / plate_w)
            view = ((plate_w - crop_w) // 2 & ~1, (plate_h - crop_h) // 2 & ~1, crop_w, crop_h)
        else:
            if shot.move in ("pan_left", "tilt_up"):
                t = 1 - t
            x, y = round((plate_w - width) * t) & ~1, round((plate_h - height) * t) & ~1
            view = (x, y, width, height)
        if view != shown:  # the same view as the last frame: show that frame again
            source = shot.plate.window(*view)
            if view[2:] == (width, height):
                frame = source
            else:
                scaler = scalers.setdefault(view[2:], VideoReformatter())
                frame = scaler.reformat(
                    source, width=width, height=height, interpolation="BILINEAR"
                )
            planes = frame_planes(frame)
            for overlay in shot.overlays:
                overlay.apply(planes)
            shown = view
        yield frame


_END = object()


def _prefetched(items: Iterator, depth: int = 8) -> Iterator:
    """Compose on a helper thread while the caller encodes (numpy, Pillow and libswscale
    release the GIL); errors surface in the caller."""
    pipe: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                pipe.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as error:  # handed to the consumer, re-raised there
            put(error)

    worker = threading.Thread(target=produce, name="animatic-compose", daemon=True)
    worker.start()
    try:
        while (item := pipe.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


def render_animatic(
    request: VideoRequest,
    out_path: str,
    *,
    options: RenderOptions = RenderOptions(),
    progress: Callable[[float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    keep_frames: list | None = None,
) -> RenderResult:
    """Render to `out_path` (written to a .part file, renamed when complete)."""
    size = options.size or frame_size(request.aspect)
    total = sum(
        item.frames for item in plan(request, fps=options.fps, title_card=options.title_card)
    )
    shots = iter_shots(request, size=size, options=options)
    part = f"{out_path}.part"
    container = av.open(part, "w", format="mp4", options={"movflags": "+faststart"})
    try:
        stream = container.add_stream(
            "libx264", rate=options.fps, options={"preset": options.preset, "crf": str(options.crf)}
        )
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        every = max(total // 50, 1)
        scalers: dict = {}
        composed = (frame for shot in shots for frame in shot_frames(shot, size, scalers))
        for index, frame in enumerate(_prefetched(composed)):
            frame.pts = index
            if keep_frames is not None:
                keep_frames.append(frame)
            for packet in stream.encode(frame):
                container.mux(packet)
            if index % every == 0:
                if should_cancel is not None and should_cancel():
                    raise RenderCancelled("render cancelled")
                if progress is not None:
                    progress(index / total)
        for packet in stream.encode():
            container.mux(packet)
    except BaseException:
        container.close()
        if os.path.exists(part):
            os.remove(part)
        raise
    container.close()
    os.replace(part, out_path)
    if progress is not None:
        progress(1.0)
    return RenderResult(
        path=out_path,
        width=size[0],
        height=size[1],
        fps=options.fps,
        frames=total,
        duration_s=total / options.fps,
        bytes=os.path.getsize(out_path),
    )
