"""`python manage.py bench export [--quick] [--json]`: what exporting a chapter costs, against
encoding the same frames and audio and nothing else.

Sources (setup, not timed): offline animatic takes as the studio renders them (720x1280 at
24 fps, the animatic's preset, 10 s each), each with a dialog track muxed in the way the
pipeline does it (`mux_dialog` over lines spoken by the offline voice, espeak-ng through
`studio.providers.speech_espeak.speak`, in the voices of `bench speech`'s cast, placed by
`dialog_audio.place` after the title card). The chapter's lines are dealt out in order, as many
to a take as fit before its out point. Each take is trimmed to [0.5 s, 0.5 s + length] so the
trims add up to the episode: 90 s by default (ten 9 s clips), `--minutes N` long when
given (3 for the memory bound: twenty clips), 15 s with --quick (two 7.5 s clips). Joins
alternate dissolve, fade and cut (0.5 s each); captions come from the placed lines, clipped to
the trims, as the export job makes them.

Timed, each in a fresh process spawned like the studio's CPU pool (same initializer), so its
peak resident memory (VmHWM) is its own:
- `export_s`, `peak_rss_mb`: `package_in_pool` on that plan, the whole package (takes copied as
  their clean media, both masters, caption files, editor timelines, covers, manifest, zip).
  `export_stages_s` splits it by the package's progress file, read every 10 ms (with the
  process's resident memory: `export_stage_peak_rss_mb`).
- `bare_encode_s`, `bare_peak_rss_mb`: the baseline, the same clips decoded from their in
  points, scaled to the output size and resampled to the same frame rate by the master's own
  reader, encoded by the master's own encoders (same x264 settings, one thread per file) into
  two MP4s, with the same clips' sound laid end to end, encoded to AAC once and muxed into
  both; no captions, no transitions, no loudness work, no package files.
  `ratio` = export_s / bare_encode_s (target <= 1.3).
- `one_encode_s`: the same baseline into one MP4, so the second file's cost shows.

Before any figure is reported, episode.mp4 is decoded (1080x1920, H.264, every frame: the sum
of the trims within one frame; AAC 48 kHz stereo over the whole length, speech under every
caption), episode_clean.mp4 and the baseline's files are counted frame by frame, and the
loudness (the manifest's and one measured again on episode.mp4) must be within 0.5 LU of -14.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dramas.delivery import master, package
from dramas.delivery.package import delivery_fps, package_in_pool
from dramas.dialog_audio import SpokenLine, mux_dialog, needed_seconds, place
from studio.cpu import start_worker
from studio.providers.animatic import RenderOptions, render_animatic
from studio.providers.animatic import plan as shot_plan
from studio.providers.audio import decode_mono
from studio.providers.base import CastMember, DialogCue, VideoRequest
from studio.providers.speech_espeak import speak

FACES = Path(__file__).resolve().parents[1] / "demo" / "faces"
CAST_FACES = {"Marcus": "obama.jpg", "Ada": "grace_hopper.jpg", "Mei": "astronaut.png"}
LOCATIONS = ("Apartment", "Stairwell", "Rooftop", "Pier", "Restaurant")
DEFAULT_MINUTES = 1.5
QUICK_EPISODE_S = 15.0
TAKE_S = 10.0  # each source take, as rendered
TRIM_IN_S = 0.5  # into the title card: trims are part of the work
CLIP_S = 9.0  # the longest trimmed clip; the episode is split into equal clips of at most this
TRANSITION_S = 0.5
JOINS = ("dissolve", "fade", "cut")  # clip n's transition into the next: JOINS[n % 3]
SPEC = {
    "width": 1080,
    "height": 1920,
    "loudness_lufs": -14.0,
    "true_peak_dbtp": -1.0,
    "allow_gaps": False,
}
LOUDNESS_TOLERANCE_LU = 0.5
RATIO_TARGET = 1.3
RSS_BOUND_MB = 600  # for a 3-minute 1080x1920 episode (issue #17)
AUDIBLE_RMS = 0.01  # speech under a caption after normalisation, not silence
STAGE_POLL_S = 0.01
FINAL_STAGE = "manifest_zip"


def export(options: dict) -> dict:
    quick = bool(options.get("quick"))
    minutes = options.get("minutes") or DEFAULT_MINUTES
    episode_s = QUICK_EPISODE_S if quick else 60.0 * float(minutes)
    say = options["stdout"].write
    quiet_load = os.getloadavg()[0]
    code = _code_digest()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:
        work = Path(folder)
        started = time.perf_counter()
        plan = chapter_plan(episode_s=episode_s, folder=work / "takes")
        setup_s = time.perf_counter() - started
        say(f"{len(plan['clips'])} takes rendered and voiced in {setup_s:.1f} s")
        load = os.getloadavg()[0]
        exported = in_fresh_process(export_in_process, plan=plan, work_dir=str(work / "package"))
        say(f"export {exported['export_s']} s, peak {exported['peak_rss_mb']} MB")
        fps = delivery_fps([clip["path"] for clip in plan["clips"]])
        bare_targets = [str(work / "bare.mp4"), str(work / "bare_clean.mp4")]
        bare = in_fresh_process(bare_encode, plan=plan, fps=fps, targets=bare_targets)
        say(f"bare encode {bare['encode_s']} s, peak {bare['peak_rss_mb']} MB")
        one = in_fresh_process(bare_encode, plan=plan, fps=fps, targets=[str(work / "one.mp4")])
        say(f"one output {one['encode_s']} s")
        for process in (exported, bare, one):
            if process["delivery_code"] != code:
                raise RuntimeError(
                    "dramas/delivery/master.py or package.py changed during the run: "
                    "the figures would compare two versions of the export"
                )
        checked = check_package(work / "package", plan=plan, fps=fps)
        for target in [*bare_targets, str(work / "one.mp4")]:
            check_bare(target, frames=checked["frames"])
        package_bytes = sum(
            path.stat().st_size for path in (work / "package").rglob("*") if path.is_file()
        )
    sources = sum(clip["out_s"] - clip["in_s"] for clip in plan["clips"])
    joins = [clip["transition"] for clip in plan["clips"][:-1]]
    ratio = exported["export_s"] / bare["encode_s"]
    return {
        "load_average_1min_before": round(quiet_load, 2),
        # After rendering the takes: their own load is in it.
        "load_average_1min_before_export": round(load, 2),
        "episode_s": round(sources, 3),
        "takes": len(plan["clips"]),
        "take": f"{TAKE_S:g} s 720x1280 at 24 fps",
        "voice": "offline espeak-ng (speech_espeak.speak), muxed by mux_dialog",
        "dialog_lines": len(plan["captions"]),
        "joins": {kind: joins.count(kind) for kind in JOINS},
        "setup_s": round(setup_s, 1),
        **checked,
        "export_s": exported["export_s"],
        "export_stages_s": exported["stages_s"],
        "export_stage_peak_rss_mb": exported["stage_peak_rss_mb"],
        "peak_rss_mb": exported["peak_rss_mb"],
        "process_start_rss_mb": exported["start_rss_mb"],
        "bare_encode_s": bare["encode_s"],
        "bare_audio_s": bare["audio_s"],
        "bare_peak_rss_mb": bare["peak_rss_mb"],
        "one_encode_s": one["encode_s"],
        "one_encode_peak_rss_mb": one["peak_rss_mb"],
        "second_file_s": round(bare["encode_s"] - one["encode_s"], 3),
        "ratio": round(ratio, 3),
        "ratio_target": RATIO_TARGET,
        "meets_ratio_target": ratio <= RATIO_TARGET,
        "rss_bound_mb": RSS_BOUND_MB,
        "under_rss_bound": exported["peak_rss_mb"] < RSS_BOUND_MB,
        "package_bytes": package_bytes,
        "delivery_code": code,
    }


def _code_digest() -> str:
    """Which master and package this process runs (read as it starts: both files are still
    being changed), by their source's sha256."""
    digest = hashlib.sha256()
    for module in (master, package):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


# --- the sources (setup) ---------------------------------------------------------------------


def chapter_plan(*, episode_s: float, folder: Path) -> dict:
    """Render and voice the takes, then the plan `package_in_pool` takes, shaped as the export
    job's `_plan` makes it (clean media copied from the takes: `clean_from` None)."""
    from dramas.bench.speech import CAST, CHAPTER  # the cast's voices and the chapter's lines

    folder.mkdir(parents=True)
    count = max(math.ceil(episode_s / CLIP_S - 1e-9), 1)
    clip_s = episode_s / count
    lines = [line for scene in CHAPTER for line in scene]
    options = RenderOptions(preset=_animatic_preset())  # as the offline video service renders
    clips, captions, markers, at, next_line = [], [], [], 0.0, 0
    for number in range(1, count + 1):
        in_s, out_s = TRIM_IN_S, TRIM_IN_S + clip_s
        start_s = _title_s(_take_request(number=number, track=[]), options=options)
        spoken, next_line = _lines_for(
            lines, first=next_line, start_s=start_s, end_s=out_s, cast=CAST, folder=folder
        )
        track = place([line for line, _path in spoken], start_s=start_s, scene_s=out_s)
        path = folder / f"take{number:02d}.mp4"
        render_animatic(_take_request(number=number, track=track), str(path), options=options)
        mux_dialog(str(path), track, {line.audio_key: wav for line, wav in spoken})
        for entry in track:
            start, end = max(entry["start_s"], in_s), min(entry["end_s"], out_s)
            if end - start >= 0.05:
                captions.append(
                    {
                        "start_s": round(at + start - in_s, 3),
                        "end_s": round(at + end - in_s, 3),
                        "text": entry["text"],
                        "speaker": entry["speaker"],
                    }
                )
        location = LOCATIONS[(number - 1) % len(LOCATIONS)]
        markers.append((round(at, 3), f"Scene {number}: {location}"))
        join = JOINS[(number - 1) % len(JOINS)] if number < count else "cut"
        clips.append(
            {
                "take_id": number,
                "name": f"Scene {number} · take 1",
                "path": str(path),
                "clean_from": None,
                "in_s": in_s,
                "out_s": out_s,
                "transition": join,
                "transition_s": TRANSITION_S if join != "cut" else 0.0,
                "metadata": {
                    "scene_id": number,
                    "take_id": number,
                    "score": None,
                    "provider": "local",
                    "model": "animatic",
                },
            }
        )
        at += out_s - in_s
    cover = folder / "cover_frame.jpg"
    _save_frame(clips[0]["path"], at_s=TAKE_S / 2, out=cover)
    return {
        "name": "Bench · 1. The Contract",
        "spec": dict(SPEC),
        "clips": clips,
        "captions": captions,
        "markers": markers,
        "cover": str(cover),
        "input_hash": "bench",
    }


def _animatic_preset() -> str:
    from django.conf import settings

    return settings.ANIMATIC_PRESET


def _title_s(request: VideoRequest, *, options: RenderOptions) -> float:
    first = shot_plan(request, fps=options.fps, title_card=options.title_card)[0]
    return first.frames / options.fps if first.kind == "title" else 0.0


def _lines_for(lines, *, first: int, start_s: float, end_s: float, cast: dict, folder: Path):
    """The chapter's next lines that fit between `start_s` and `end_s` with natural gaps (at
    least one; round the chapter again when it runs out), spoken: [(SpokenLine, wav path)] and
    the next line's index."""
    spoken: list[tuple[SpokenLine, str]] = []
    index = first
    while True:
        speaker, text = lines[index % len(lines)]
        line = _spoken(index, speaker, text, cast=cast, folder=folder)
        needed = needed_seconds([*(s for s, _ in spoken), line[0]], start_s=start_s)
        if spoken and needed > end_s:
            return spoken, index
        spoken.append(line)
        index += 1


def _spoken(index: int, speaker: str, text: str, *, cast: dict, folder: Path):
    profile = cast.get(speaker) or {}
    said = speak(
        text,
        profile.get("voice_language", "en"),
        profile.get("voice_id", ""),
        profile.get("voice_speed", 1.0),
        profile.get("voice_pitch", 0.0),
    )
    key = f"line{index:03d}"
    path = folder / f"{key}.wav"
    path.write_bytes(said["wav"])
    words = tuple(tuple(word) for word in said["words"])
    return SpokenLine(index, speaker, text, said["duration_s"], key, words), str(path)


def _take_request(*, number: int, track: list[dict]) -> VideoRequest:
    location = LOCATIONS[(number - 1) % len(LOCATIONS)]
    return VideoRequest(
        prompt="Marcus waits by the door; Ada comes up the stairs with her coat still wet.",
        duration_s=TAKE_S,
        aspect="9:16",
        title=f"1.{number} {location}",
        camera="slow push-in, medium two-shot" if number % 2 else "medium two-shot, static",
        location=location,
        time_of_day="night",
        mood="tense",
        cast=tuple(
            CastMember(name, image_path=str(FACES / face)) for name, face in CAST_FACES.items()
        ),
        dialog=tuple(
            DialogCue(
                entry["speaker"], entry["text"], start_s=entry["start_s"], end_s=entry["end_s"]
            )
            for entry in track
        ),
    )


def _save_frame(path: str, *, at_s: float, out: Path) -> None:
    """A still of the take, as the studio keeps sampled frames (the cover's source)."""
    with av.open(path) as container:
        for frame in container.decode(container.streams.video[0]):
            if frame.time is not None and frame.time >= at_s:
                frame.to_image().save(out, format="JPEG", quality=90)
                return
    raise RuntimeError(f"{path} has no frame at {at_s} s")


# --- the timed work, each in a fresh process -------------------------------------------------


def in_fresh_process(function, **arguments) -> dict:
    """`function(**arguments)` in a new process spawned as the studio's CPU pool spawns its
    own, so the figures (and the peak memory) are that process's alone."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=1, mp_context=context, initializer=start_worker, initargs=(os.getpid(),)
    ) as pool:
        return pool.submit(function, **arguments).result()


def export_in_process(*, plan: dict, work_dir: str) -> dict:
    """The export proper, timed, with its stages read off the package's progress file."""
    code, start_rss = _code_digest(), _memory_mb("VmRSS")
    stages = _StageClock(work_dir)
    started = time.perf_counter()
    stages.start(started)
    try:
        package_in_pool(plan, work_dir)
    finally:
        stages.stop()
    export_s = time.perf_counter() - started
    return {
        "export_s": round(export_s, 3),
        "stages_s": stages.durations(ended=started + export_s),
        "stage_peak_rss_mb": stages.peaks_mb,
        # The kernel's high-water mark lags the per-thread RSS counters by a few pages: a
        # sample taken meanwhile may read a little higher.
        "peak_rss_mb": max(_memory_mb("VmHWM"), *stages.peaks_mb.values()),
        "start_rss_mb": start_rss,
        "delivery_code": code,
    }


class _StageClock:
    """When the package's progress first reached each stage's end (package.py's fractions:
    takes copied by 0.1, the master's audio by 0.1 + 0.8 * PROGRESS_AUDIO, its pictures by
    0.9, captions, timelines and covers by 0.95, then the manifest and the zip), and the most
    resident memory seen in each stage."""

    ENDS = (
        ("copy_takes", 0.1),
        ("audio_mix_loudness_aac", 0.1 + 0.8 * master.PROGRESS_AUDIO),
        ("pictures_both_files", 0.9),
        ("captions_timelines_covers", 0.95),
    )

    def __init__(self, work_dir: str) -> None:
        self.progress = Path(work_dir) / ".progress"
        self.reached: dict[str, float] = {}
        self.peaks_mb: dict[str, float] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="bench-stage-clock", daemon=True)

    def start(self, started: float) -> None:
        self.started = started
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()

    def _watch(self) -> None:
        while not self.stopping.wait(STAGE_POLL_S):
            try:
                fraction = float(self.progress.read_text())
            except (OSError, ValueError):
                fraction = 0.0  # not written yet: the takes are being copied
            now = time.perf_counter()
            for name, end in self.ENDS:
                if fraction >= end - 1e-4:
                    self.reached.setdefault(name, now)
            stage = next((name for name, _ in self.ENDS if name not in self.reached), FINAL_STAGE)
            self.peaks_mb[stage] = max(self.peaks_mb.get(stage, 0.0), _memory_mb("VmRSS"))

    def durations(self, *, ended: float) -> dict[str, float]:
        out, previous = {}, self.started
        for name, _end in self.ENDS:
            at = self.reached.get(name, previous)
            out[name] = round(at - previous, 3)
            previous = at
        out[FINAL_STAGE] = round(ended - previous, 3)
        return out


def bare_encode(*, plan: dict, fps: int, targets: list[str]) -> dict:
    """The baseline: the plan's clips cut end to end, decoded and scaled by the master's own
    reader to the same size and frame rate, and written by the master's own encoders (its x264
    settings, one thread each), one file per target; the clips' sound mixed by the master's
    `episode_audio` with every join a cut, encoded to AAC once, its packets in every file."""
    code, started = _code_digest(), time.perf_counter()
    spec = master.MasterSpec(width=plan["spec"]["width"], height=plan["spec"]["height"], fps=fps)
    size = (spec.width, spec.height)
    clips = [master.Clip(path=c["path"], in_s=c["in_s"], out_s=c["out_s"]) for c in plan["clips"]]
    timeline = master.Timeline(clips=clips, sources=[_source(clip.path) for clip in clips])
    frames = round(timeline.length_s * fps)
    mix = master.episode_audio(timeline, samples=round(frames * master.AUDIO_RATE / fps))
    # Not measured or gained: the figures are unknown, the packets are what the files carry.
    sound = master.Sound(master.encode_aac(mix, bitrate=spec.audio_bitrate), None, -math.inf, 0, 0)
    del mix
    audio_s = time.perf_counter() - started
    outputs = [master.Output(target, spec=spec, sound=sound) for target in targets]
    for output in outputs:
        output.start()
    time_base = Fraction(1, fps)
    readers: dict[int, master.VideoReader] = {}
    try:
        for index in range(frames):
            (layer,) = timeline.layers_at(index / fps)  # only cuts: one clip at every instant
            for clip in [clip for clip in readers if clip < layer.clip]:
                readers.pop(clip).close()
            if layer.clip not in readers:
                readers[layer.clip] = master.VideoReader(
                    timeline.sources[layer.clip],
                    start_s=layer.source_s,
                    size=size,
                    number=layer.clip + 1,
                )
            frame = av.VideoFrame.from_ndarray(
                readers[layer.clip].picture_at(layer.source_s), format="yuv420p"
            )
            # The encoders share the frame: its time base is theirs, so neither rewrites it.
            frame.pts, frame.time_base = index, time_base
            for output in outputs:
                output.put(frame, audio_until=(index + 1) / fps)
        for output in outputs:
            output.finish()
    except BaseException:
        for output in outputs:
            output.abort()
        raise
    finally:
        for reader in readers.values():
            reader.close()
    for output, target in zip(outputs, targets, strict=True):
        os.replace(output.part, target)
    return {
        "encode_s": round(time.perf_counter() - started, 3),
        "audio_s": round(audio_s, 3),
        "peak_rss_mb": _memory_mb("VmHWM"),
        "delivery_code": code,
    }


def _source(path: str) -> master.Source:
    with av.open(path) as container:
        video = container.streams.video[0]
        origin = float(video.start_time * video.time_base) if video.start_time else 0.0
        duration = float(video.duration * video.time_base) if video.duration else None
        return master.Source(path, origin, duration, bool(container.streams.audio))


def _memory_mb(field: str) -> float:
    """This process's resident memory now (VmRSS) or at its peak (VmHWM), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"/proc/self/status has no {field}")


# --- checks before reporting -----------------------------------------------------------------


def check_package(folder: Path, *, plan: dict, fps: int) -> dict:
    """episode.mp4 decoded and its manifest read: what a broken export would fail."""
    manifest = json.loads((folder / "manifest.json").read_text())
    expected_s = sum(clip["out_s"] - clip["in_s"] for clip in plan["clips"])
    episode = folder / "episode.mp4"
    with av.open(str(episode)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        codec, rate = stream.codec_context.name, stream.average_rate
        sizes, frames = set(), 0
        for frame in container.decode(stream):
            sizes.add((frame.width, frame.height))
            frames += 1
        if not container.streams.audio:
            raise RuntimeError("episode.mp4 has no audio")
        audio = container.streams.audio[0]
        sound = (audio.codec_context.name, audio.rate, audio.channels)
    want = (plan["spec"]["width"], plan["spec"]["height"])
    if sizes != {want} or codec != "h264" or rate != fps:
        raise RuntimeError(f"episode.mp4 is {codec} {sizes} at {rate} fps, not {want} at {fps}")
    if abs(frames / fps - expected_s) > 1 / fps + 1e-6:
        raise RuntimeError(f"episode.mp4 lasts {frames / fps:.3f} s, the trims {expected_s:.3f} s")
    if sound != ("aac", master.AUDIO_RATE, 2):
        raise RuntimeError(f"episode.mp4's sound is {sound}, not AAC 48 kHz stereo")
    samples, sample_rate = decode_mono(episode.read_bytes())
    if len(samples) / sample_rate < frames / fps - 1 / fps:
        raise RuntimeError(f"episode.mp4's sound stops at {len(samples) / sample_rate:.2f} s")
    for caption in plan["captions"]:
        piece = samples[
            int((caption["start_s"] + 0.05) * sample_rate) : int(
                (caption["end_s"] - 0.05) * sample_rate
            )
        ]
        if len(piece) and float(np.sqrt(np.mean(piece**2))) < AUDIBLE_RMS:
            raise RuntimeError(f"No speech under the caption {caption['text']!r} in episode.mp4")
    clean_frames = _frame_count(str(folder / "episode_clean.mp4"))
    if clean_frames != frames:
        raise RuntimeError(f"episode_clean.mp4 has {clean_frames} frames, episode.mp4 {frames}")
    measured, peak = master.measure_loudness(str(episode))
    target = plan["spec"]["loudness_lufs"]
    for found in (manifest["loudness_lufs"], measured):
        if found is None or abs(found - target) > LOUDNESS_TOLERANCE_LU:
            raise RuntimeError(f"episode.mp4 measures {found} LUFS, the target is {target}")
    return {
        "frames": frames,
        "fps": fps,
        "size": f"{want[0]}x{want[1]}",
        "duration_s": round(frames / fps, 3),
        "loudness_lufs": manifest["loudness_lufs"],
        "measured_loudness_lufs": round(measured, 2),
        "true_peak_dbtp": round(peak, 2),
        "captions": manifest["captions"],
        "episode_bytes": episode.stat().st_size,
    }


def check_bare(path: str, *, frames: int) -> None:
    found = _frame_count(path)
    with av.open(path) as container:
        has_sound = bool(container.streams.audio)
    if found != frames or not has_sound:
        raise RuntimeError(
            f"The baseline {path} has {found} frames (want {frames}), sound {has_sound}"
        )


def _frame_count(path: str) -> int:
    with av.open(path) as container:
        return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)
