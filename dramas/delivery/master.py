"""The episode master: a cut's clips -> `episode.mp4` (captions burned in) and
`episode_clean.mp4` (the same picture and sound, textless), in one pass over the sources.

Frames stream through: each clip is decoded from its in point (seek, then frames before it are
dropped), fitted into the output size (black bars when the aspect differs) and resampled to the
output frame rate by presentation time (a frame shows until the next one's time comes). Each
output frame is composed once (a dissolve mixes the two clips, a fade goes through black), then
encoded twice, each file by its own encoder thread: as it is into the clean file, with the
caption layer blended in for the burned one. Nothing holds the episode's pictures; its audio
is held whole (float32 stereo, ~70 MB for three minutes) because loudness is a property of the
whole mix.

Audio: each clip's track (silence for a clip without one, and where a dissolve reaches past
what its source holds) is laid on the timeline with equal-power crossfades (dissolve) or a dip
(fade) over the transition's window, measured with libavfilter's ebur128 (ITU-R BS.1770-4
gating, true peak 4x oversampled), gained to the target, peak-limited below the true-peak
ceiling, encoded to AAC once and measured again from the encoded packets, which are the very
ones both files carry.

Transitions are centred on the cut and never change the length: over [cut - d/2, cut + d/2] a
dissolve plays the outgoing clip past its out point (its handle) and the incoming one from
before its in point, holding the last/first frame where a source has no more picture.

Django-free: it runs in the CPU pool (studio/cpu.py). Both files are written to `.part` files
beside their names and renamed only when both are complete.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import math
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from dramas.delivery.captions import Caption, captions_layer
from studio.providers.yuv import Overlay, frame_planes

TRANSITIONS = ("cut", "fade", "dissolve")
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
AUDIO_RATE = 48_000
AAC_FRAME = 1024
# A source may end this much before a clip's out point (container rounding): its last frame
# holds. A clip reaching further past the end is refused.
END_TOLERANCE_S = 0.1
# Float slack when comparing presentation times (far below any frame interval).
TIME_EPSILON = 1e-4
# ebur128 reports this when nothing passed its absolute gate: silence.
SILENCE_LUFS = -70.0
# The limiter aims this far under the true-peak target (it works on samples; AAC and the 4x
# oversampled meter find a little more), then the encoded result is measured and corrected.
PEAK_MARGIN_DB = 0.5
# Each ramp of the limiter's gain (attack and release), smoothed twice: about 10 ms in all.
LIMITER_RAMP_S = 0.005
LOUDNESS_TOLERANCE_LU = 0.1  # on the float mix
AAC_LOUDNESS_TOLERANCE_LU = 0.3  # once encoded: AAC moves a few tenths at most
NORMALISE_PASSES = 4  # float passes of gain, limiter and meter
ENCODE_PASSES = 3  # AAC encodes, when one moved the peak or the loudness too far (rare)
# The true peak AAC encoding may add, kept free in the float mix.
AAC_PEAK_MARGIN_DB = 0.3
LIMITER_CHUNK = 10 * AUDIO_RATE
# Captions rendered and kept: the same line is often said twice close together.
CAPTION_LAYERS_KEPT = 16
PROGRESS_AUDIO = 0.12  # share of the work before the first frame (audio mix, loudness, AAC)
ENCODE_QUEUE = 4  # frames waiting for each encoder
# Threads per encoder and decoder: each codec thread holds whole frames, so "one per core" on
# a big machine would cost hundreds of MB; the pool already runs a process per core.
CODEC_THREADS = min(os.cpu_count() or 1, 4)
SEEK_AHEAD_S = 0.5  # seek this far before the first frame needed (the nearest keyframe precedes)


class MasterError(ValueError):
    """The episode cannot be mastered from these inputs; the message says why."""


@dataclass(frozen=True)
class Clip:
    path: str  # a take's MP4: H.264 video, usually an AAC dialog track (may have none)
    in_s: float  # trim in, seconds into the source
    out_s: float  # trim out (exclusive); out_s - in_s is the clip's length in the episode
    transition: str = "cut"  # into the NEXT clip: "cut" | "fade" (through black) | "dissolve"
    transition_s: float = 0.0  # its length, centred on the cut; NEVER changes the total length


@dataclass(frozen=True)
class MasterSpec:
    width: int = 1080
    height: int = 1920
    fps: int = 30  # constant frame rate of the output
    loudness_lufs: float = -14.0  # integrated target (-16 and -23 are the other presets)
    true_peak_dbtp: float = -1.0
    x264_preset: str = "veryfast"
    crf: int = 18
    audio_bitrate: int = 192_000
    caption_speakers: bool = False  # burn the speaker's name above each caption


@dataclass(frozen=True)
class MasterResult:
    duration_s: float
    frames: int
    width: int
    height: int
    fps: int
    loudness_lufs: float | None  # measured on the delivered mix (None: the episode is silent)
    true_peak_dbtp: float | None  # measured likewise (None: silent)
    input_loudness_lufs: float | None  # before normalisation (None: silence)
    gain_db: float
    limited_db: float = 0.0  # the limiter's deepest gain reduction


Progress = Callable[[float], None]


def master_episode(
    *,
    clips: list[Clip],
    captions: list[Caption],
    spec: MasterSpec,
    burned_path: str,
    clean_path: str,
    progress: Progress | None = None,
) -> MasterResult:
    """Write both masters; see the module's docstring. Raises MasterError on bad input."""
    report = progress or (lambda fraction: None)
    _check_spec(spec, burned_path=burned_path, clean_path=clean_path)
    timeline = Timeline(clips=clips, sources=[_probe(clip, n) for n, clip in enumerate(clips, 1)])
    frames = round(timeline.length_s * spec.fps)
    if frames < 1:
        raise MasterError("The cut is shorter than one frame.")
    report(0.0)
    mix = episode_audio(timeline, samples=round(frames * AUDIO_RATE / spec.fps))
    report(PROGRESS_AUDIO / 3)
    input_lufs, _ = loudness_of_samples(mix)
    report(PROGRESS_AUDIO / 2)
    sound = normalised_aac(mix, spec=spec, input_lufs=input_lufs)
    del mix
    report(PROGRESS_AUDIO)
    _write_masters(
        timeline=timeline,
        frames=frames,
        captions=CaptionTrack(captions, spec=spec, frames=frames),
        sound=sound,
        spec=spec,
        targets=(burned_path, clean_path),
        report=lambda fraction: report(PROGRESS_AUDIO + (1 - PROGRESS_AUDIO) * fraction),
    )
    report(1.0)
    return MasterResult(
        duration_s=round(frames / spec.fps, 6),
        frames=frames,
        width=spec.width,
        height=spec.height,
        fps=spec.fps,
        loudness_lufs=sound.lufs,
        true_peak_dbtp=sound.true_peak_dbtp if math.isfinite(sound.true_peak_dbtp) else None,
        input_loudness_lufs=None if input_lufs is None else round(input_lufs, 2),
        gain_db=round(sound.gain_db, 2),
        limited_db=round(sound.limited_db, 2),
    )


# --- inputs ----------------------------------------------------------------------------------


def _check_spec(spec: MasterSpec, *, burned_path: str, clean_path: str) -> None:
    if spec.width < 2 or spec.height < 2 or spec.width % 2 or spec.height % 2:
        raise MasterError(f"The output size {spec.width}x{spec.height} must be even (yuv420p).")
    if not isinstance(spec.fps, int) or not 1 <= spec.fps <= 120:
        raise MasterError(f"The frame rate {spec.fps!r} must be a whole number from 1 to 120.")
    if not math.isfinite(spec.loudness_lufs) or not math.isfinite(spec.true_peak_dbtp):
        raise MasterError("The loudness target and the true-peak ceiling must be numbers.")
    if not -40 <= spec.loudness_lufs <= -5 or not -10 <= spec.true_peak_dbtp <= 0:
        raise MasterError(
            f"A loudness of {spec.loudness_lufs:g} LUFS with peaks at {spec.true_peak_dbtp:g} dBTP "
            "is no delivery target (-40 to -5 LUFS, -10 to 0 dBTP)."
        )
    if spec.x264_preset not in X264_PRESETS:
        raise MasterError(f"Unknown x264 preset {spec.x264_preset!r}.")
    if not 0 <= spec.crf <= 51 or not 32_000 <= spec.audio_bitrate <= 512_000:
        raise MasterError("The CRF runs from 0 to 51 and the audio bit rate from 32 to 512 kb/s.")
    if os.path.abspath(burned_path) == os.path.abspath(clean_path):
        raise MasterError("The burned and the clean master need two different paths.")
    for path in (burned_path, clean_path):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise MasterError(f"The folder {folder} for {os.path.basename(path)} does not exist.")


@dataclass(frozen=True)
class Source:
    """What a clip's file holds, read once before anything is written."""

    path: str
    origin_s: float  # the video stream's first presentation time: source time 0
    duration_s: float | None
    has_audio: bool


def _probe(clip: Clip, number: int) -> Source:
    name = f"Clip {number} ({os.path.basename(str(clip.path))})"
    if not isinstance(clip.path, str) or not os.path.isfile(clip.path):
        raise MasterError(f"{name}: the file {clip.path!r} does not exist.")
    for value in (clip.in_s, clip.out_s, clip.transition_s):
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise MasterError(f"{name}: trims and transition lengths must be numbers.")
    if clip.in_s < 0:
        raise MasterError(f"{name}: the in point {clip.in_s:g} s is before the start.")
    if clip.out_s <= clip.in_s:
        raise MasterError(
            f"{name}: the out point {clip.out_s:g} s is not after the in point {clip.in_s:g} s."
        )
    if clip.transition not in TRANSITIONS:
        raise MasterError(f"{name}: unknown transition {clip.transition!r} (cut, fade, dissolve).")
    if clip.transition_s < 0:
        raise MasterError(f"{name}: a transition cannot last {clip.transition_s:g} s.")
    try:
        with av.open(clip.path) as container:
            if not container.streams.video:
                raise MasterError(f"{name}: the file has no video stream.")
            video = container.streams.video[0]
            origin = float(video.start_time * video.time_base) if video.start_time else 0.0
            if video.duration:
                duration = float(video.duration * video.time_base)
            elif container.duration:
                duration = container.duration / 1_000_000 - origin
            else:
                duration = None
            has_audio = bool(container.streams.audio)
    except av.error.FFmpegError as error:
        raise MasterError(f"{name}: the file is not a video PyAV can read ({error}).") from error
    if duration is not None:
        if clip.in_s >= duration:
            raise MasterError(
                f"{name}: the in point {clip.in_s:g} s is past the end of the video "
                f"({duration:.3f} s)."
            )
        if clip.out_s > duration + END_TOLERANCE_S:
            raise MasterError(
                f"{name}: the out point {clip.out_s:g} s is past the end of the video "
                f"({duration:.3f} s)."
            )
    return Source(clip.path, origin, duration, has_audio)


# --- the timeline ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Join:
    """The transition between clip `index` and the next, centred on the cut at `at_s`."""

    kind: str  # "cut" | "fade" | "dissolve"
    at_s: float
    length_s: float  # 0 for a cut

    @property
    def half_s(self) -> float:
        return self.length_s / 2

    def progress(self, t: float) -> float:
        """0 at the window's start, 1 at its end."""
        return (t - (self.at_s - self.half_s)) / self.length_s


@dataclass(frozen=True)
class Layer:
    clip: int
    source_s: float  # time in the clip's source
    weight: float  # the rest, up to 1, is black


class Timeline:
    """Where each clip sits in the episode, and what each instant shows."""

    def __init__(self, *, clips: list[Clip], sources: list[Source]) -> None:
        if not clips:
            raise MasterError("The cut has no clips.")
        self.clips, self.sources = clips, sources
        lengths = [clip.out_s - clip.in_s for clip in clips]
        self.starts = [0.0]
        for length in lengths:
            self.starts.append(self.starts[-1] + length)
        self.length_s = self.starts.pop()
        # A transition fits in half of each neighbour, so two windows never overlap in a clip.
        self.joins = []
        for index, clip in enumerate(clips[:-1]):
            length = min(clip.transition_s, lengths[index], lengths[index + 1])
            kind = clip.transition if length > 0 else "cut"
            self.joins.append(Join(kind, self.starts[index + 1], length if kind != "cut" else 0))

    def source_time(self, clip: int, t: float) -> float:
        return self.clips[clip].in_s + (t - self.starts[clip])

    def layers_at(self, t: float) -> list[Layer]:
        index = max(bisect.bisect_right(self.starts, t + 1e-9) - 1, 0)
        join = None
        before = self.joins[index - 1] if index > 0 else None
        after = self.joins[index] if index < len(self.joins) else None
        if before is not None and before.length_s and t < before.at_s + before.half_s:
            join, index = before, index - 1
        elif after is not None and after.length_s and t > after.at_s - after.half_s:
            join = after
        if join is None:
            return [Layer(index, self.source_time(index, t), 1.0)]
        a = join.progress(t)
        if join.kind == "dissolve":
            return [
                Layer(index, self.source_time(index, t), 1 - a),
                Layer(index + 1, self.source_time(index + 1, t), a),
            ]
        if t < join.at_s:  # fade: out to black, then in from black
            return [Layer(index, self.source_time(index, t), max(1 - 2 * a, 0.0))]
        return [Layer(index + 1, self.source_time(index + 1, t), min(2 * a - 1, 1.0))]

    def audio_span(self, clip: int) -> tuple[float, float]:
        """(start, end) on the timeline where the clip's sound plays: past its trims by half a
        dissolve on either side (a fade's dip needs no handle)."""
        start = self.starts[clip]
        end = start + self.clips[clip].out_s - self.clips[clip].in_s
        if clip > 0 and self.joins[clip - 1].kind == "dissolve":
            start -= self.joins[clip - 1].half_s
        if clip < len(self.joins) and self.joins[clip].kind == "dissolve":
            end += self.joins[clip].half_s
        return start, end

    def audio_gain(self, clip: int, times: np.ndarray) -> np.ndarray:
        """The clip's gain at each of `times`: equal-power ramps over a dissolve's window, a dip
        to silence at the cut for a fade."""
        gain = np.ones(len(times), dtype=np.float32)
        if clip > 0 and (join := self.joins[clip - 1]).length_s:
            a = np.clip(join.progress(times), 0.0, 1.0)
            ramp = a if join.kind == "dissolve" else np.clip(2 * a - 1, 0.0, 1.0)
            gain *= np.sin(np.pi / 2 * ramp).astype(np.float32)
        if clip < len(self.joins) and (join := self.joins[clip]).length_s:
            a = np.clip(join.progress(times), 0.0, 1.0)
            ramp = a if join.kind == "dissolve" else np.clip(2 * a, 0.0, 1.0)
            gain *= np.cos(np.pi / 2 * ramp).astype(np.float32)
        return gain


# --- audio -----------------------------------------------------------------------------------


def episode_audio(timeline: Timeline, *, samples: int) -> np.ndarray:
    """The episode's dialog mix: float32 stereo at AUDIO_RATE, `samples` long."""
    mix = np.zeros((2, samples), dtype=np.float32)
    for index, source in enumerate(timeline.sources):
        if not source.has_audio:
            continue  # silence
        start, end = timeline.audio_span(index)
        first, last = max(round(start * AUDIO_RATE), 0), min(round(end * AUDIO_RATE), samples)
        if last <= first:
            continue
        from_s = timeline.source_time(index, first / AUDIO_RATE)
        track = _decode_audio(source, from_s=from_s, samples=last - first, number=index + 1)
        times = (np.arange(first, last) / AUDIO_RATE).astype(np.float64)
        track *= timeline.audio_gain(index, times)
        mix[:, first:last] += track
    return mix


def _decode_audio(source: Source, *, from_s: float, samples: int, number: int) -> np.ndarray:
    """`samples` of the source's sound from source time `from_s`, stereo at AUDIO_RATE; silence
    where the source has none (before its start, after its end)."""
    out = np.zeros((2, samples), dtype=np.float32)
    try:
        with av.open(source.path) as container:
            stream = container.streams.audio[0]
            if from_s > 2 * SEEK_AHEAD_S:
                target = (from_s + source.origin_s - 2 * SEEK_AHEAD_S) / stream.time_base
                container.seek(int(target), stream=stream)
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
            position = None  # where the next resampled sample goes in `out`
            for frame in container.decode(stream):
                if position is None:
                    at = (frame.time or 0.0) - source.origin_s
                    position = round((at - from_s) * AUDIO_RATE)
                for chunk in resampler.resample(frame):
                    position = _place(out, chunk.to_ndarray(), position)
                if position >= samples:
                    break
            else:
                if position is not None:
                    for chunk in resampler.resample(None):
                        position = _place(out, chunk.to_ndarray(), position)
    except av.error.FFmpegError as error:
        raise MasterError(
            f"Clip {number} ({os.path.basename(source.path)}): its sound could not be decoded "
            f"({error})."
        ) from error
    return out


def _place(out: np.ndarray, chunk: np.ndarray, position: int) -> int:
    begin, end = max(position, 0), min(position + chunk.shape[1], out.shape[1])
    if end > begin:
        out[:, begin:end] = chunk[:2, begin - position : end - position]
    return position + chunk.shape[1]


def loudness_of_frames(frames: Iterable[av.AudioFrame]) -> tuple[float | None, float]:
    """(integrated loudness in LUFS, true peak in dBTP) through libavfilter's ebur128; None and
    -inf for silence (nothing passed the absolute gate)."""
    graph = None
    last = None
    for frame in frames:
        if graph is None:
            graph = av.filter.Graph()
            source = graph.add_abuffer(
                format=frame.format.name,
                sample_rate=frame.sample_rate,
                layout=frame.layout.name,
                time_base=frame.time_base,
            )
            meter = graph.add("ebur128", "peak=true:metadata=1")
            sink = graph.add("abuffersink")
            source.link_to(meter)
            meter.link_to(sink)
            graph.configure()
        graph.push(frame)
        last = _drain(graph) or last
    if graph is None:
        return None, -math.inf
    graph.push(None)
    last = _drain(graph) or last
    if last is None:
        return None, -math.inf
    integrated = float(last.metadata["lavfi.r128.I"])
    peak = float(last.metadata["lavfi.r128.true_peak"])
    peak_db = 20 * math.log10(peak) if peak > 0 else -math.inf
    return (None if integrated <= SILENCE_LUFS else integrated), peak_db


def _drain(graph: av.filter.Graph) -> av.AudioFrame | None:
    last = None
    while True:
        try:
            last = graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return last


def loudness_of_samples(samples: np.ndarray) -> tuple[float | None, float]:
    return loudness_of_frames(_frames_of(samples, chunk=AUDIO_RATE // 10))


def _frames_of(samples: np.ndarray, *, chunk: int) -> Iterator[av.AudioFrame]:
    for offset in range(0, samples.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples[:, offset : offset + chunk]),
            format="fltp",
            layout="stereo",
        )
        frame.sample_rate = AUDIO_RATE
        frame.pts = offset
        yield frame


def measure_loudness(path: str) -> tuple[float | None, float]:
    """(integrated LUFS, true peak dBTP) of a file's first audio stream; (None, -inf) when it
    is silent or has no sound."""
    if not os.path.isfile(path):
        raise MasterError(f"The file {path!r} does not exist.")
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                return None, -math.inf
            return loudness_of_frames(container.decode(container.streams.audio[0]))
    except av.error.FFmpegError as error:
        raise MasterError(
            f"The sound of {os.path.basename(path)} could not be decoded ({error})."
        ) from error


def limit(samples: np.ndarray, *, gain: float, ceiling: float) -> tuple[np.ndarray, float]:
    """`samples` times `gain` with no sample above `ceiling` (linear), by a look-ahead gain that
    ramps down before each peak and back up after it; never a hard clip. Returns a new array
    and the deepest cut in dB. Works through the audio in chunks (with the ramps' reach as
    context on each side, so the result is the same) to keep its temporaries small.
    """
    ramp = max(round(LIMITER_RAMP_S * AUDIO_RATE), 1)
    span = 2 * ramp - 1  # the smoothing's reach: each window minimum covers it
    out = np.empty_like(samples)
    deepest = 1.0
    for start in range(0, samples.shape[1], LIMITER_CHUNK):
        stop = min(start + LIMITER_CHUNK, samples.shape[1])
        low, high = max(start - span, 0), min(stop + span, samples.shape[1])
        part = samples[:, low:high] * np.float32(gain)
        peak = np.abs(part).max(axis=0)
        if float(peak.max()) > ceiling:
            reduction = _limiter_gain(np.minimum(1.0, ceiling / np.maximum(peak, 1e-12)), ramp)
            part *= reduction
            deepest = min(deepest, float(reduction[start - low : stop - low].min()))
        out[:, start:stop] = part[:, start - low : stop - low]
    return out, (0.0 if deepest >= 1.0 else -20 * math.log10(max(deepest, 1e-12)))


def _limiter_gain(need: np.ndarray, ramp: int) -> np.ndarray:
    """The gain at sample n is a twice-smoothed mean (ramp samples each) of window minima of
    `need`, each window holding n, so it never exceeds what n needs; no per-sample loop.

    Padded with unity gain, span - 1 each side: gain[n] averages the minima of the windows
    [k, k + span) of the padded need for k in [n, n + span), and every one of them holds n.
    """
    span = 2 * ramp - 1
    pad = np.ones(span - 1, np.float32)
    minima = _sliding_min(np.concatenate([pad, need.astype(np.float32), pad]), span)
    return np.minimum(_moving_mean(_moving_mean(minima, ramp), ramp), need)  # rounding only


def _sliding_min(values: np.ndarray, window: int) -> np.ndarray:
    """out[i] = min(values[i : i + window]) (van Herk / Gil-Werman: blockwise running minima)."""
    count = len(values)
    blocks = np.concatenate([values, np.full((-count) % window, np.inf, values.dtype)])
    blocks = blocks.reshape(-1, window)
    forward = np.minimum.accumulate(blocks, axis=1).ravel()
    backward = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
    return np.minimum(backward[: count - window + 1], forward[window - 1 : count])


def _moving_mean(values: np.ndarray, window: int) -> np.ndarray:
    """out[i] = mean(values[i : i + window])."""
    sums = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    return ((sums[window:] - sums[:-window]) / window).astype(np.float32)


@dataclass
class Sound:
    """The delivered audio: AAC packets in an in-memory MP4, and what they measure."""

    aac: bytes
    lufs: float | None
    true_peak_dbtp: float
    gain_db: float
    limited_db: float


def normalised_aac(mix: np.ndarray, *, spec: MasterSpec, input_lufs: float | None) -> Sound:
    """The mix gained to the loudness target with its true peak at or below the ceiling, as
    measured on the encoded AAC. Loudness is settled on the float mix (cheap passes); the AAC
    encode, the slow part, runs again only if it pushed the peak over."""
    if input_lufs is None:
        aac = encode_aac(mix, bitrate=spec.audio_bitrate)
        lufs, peak = loudness_of_frames(_decoded(aac))
        return Sound(aac, lufs, peak, 0.0, 0.0)
    gain_db = spec.loudness_lufs - input_lufs
    ceiling_db = spec.true_peak_dbtp - PEAK_MARGIN_DB
    headroom_db = AAC_PEAK_MARGIN_DB
    float_target = spec.loudness_lufs
    passing: list[tuple[float, Sound]] = []
    for _ in range(ENCODE_PASSES):
        limited, gain_db, ceiling_db, limited_db = _levelled(
            mix,
            gain_db=gain_db,
            ceiling_db=ceiling_db,
            lufs_target=float_target,
            peak_limit_db=spec.true_peak_dbtp - headroom_db,
        )
        aac = encode_aac(limited, bitrate=spec.audio_bitrate)
        del limited
        lufs, peak = loudness_of_frames(_decoded(aac))
        lufs = SILENCE_LUFS if lufs is None else lufs
        if peak <= spec.true_peak_dbtp:
            miss = abs(lufs - spec.loudness_lufs)
            passing.append((miss, Sound(aac, round(lufs, 2), round(peak, 2), gain_db, limited_db)))
            if miss <= AAC_LOUDNESS_TOLERANCE_LU:
                break
            float_target += spec.loudness_lufs - lufs  # what encoding moved, made up for
        else:
            headroom_db += peak - spec.true_peak_dbtp + 0.1
    if not passing:
        raise MasterError(
            f"The dialog could not be brought under {spec.true_peak_dbtp:g} dBTP once encoded "
            f"(it measured {peak:.2f} dBTP)."
        )
    return min(passing, key=lambda candidate: candidate[0])[1]


def _levelled(
    mix: np.ndarray,
    *,
    gain_db: float,
    ceiling_db: float,
    lufs_target: float,
    peak_limit_db: float,
) -> tuple[np.ndarray, float, float, float]:
    """Gain and limit the float mix until it reads `lufs_target` with its true peak at or under
    `peak_limit_db`: (samples, gain dB, limiter ceiling dB, deepest cut dB). A mix too peaky
    to reach the target keeps the ceiling and comes out as loud as it can."""
    best = None
    for _ in range(NORMALISE_PASSES):
        limited, limited_db = limit(mix, gain=10 ** (gain_db / 20), ceiling=10 ** (ceiling_db / 20))
        lufs, peak = loudness_of_samples(limited)
        lufs = SILENCE_LUFS if lufs is None else lufs
        result = (limited, gain_db, ceiling_db, limited_db)
        if peak <= peak_limit_db:
            miss = abs(lufs - lufs_target)
            if best is None or miss < best[0]:
                best = (miss, result)
            if miss <= LOUDNESS_TOLERANCE_LU:
                break
        else:
            ceiling_db -= peak - peak_limit_db + 0.1
        gain_db += lufs_target - lufs
    if best is not None:
        return best[1]
    # Never over the ceiling: the true peak scales with the gain, so turn the last pass down.
    limited, gain_db, ceiling_db, limited_db = result
    excess_db = peak - peak_limit_db + 0.05
    limited *= np.float32(10 ** (-excess_db / 20))
    return limited, gain_db - excess_db, ceiling_db, limited_db


def encode_aac(samples: np.ndarray, *, bitrate: int) -> bytes:
    """AAC-LC 48 kHz stereo in an in-memory MP4 (the masters copy its packets)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
        stream.bit_rate = bitrate
        for frame in _frames_of(samples, chunk=AAC_FRAME):
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def _decoded(aac: bytes) -> Iterator[av.AudioFrame]:
    with av.open(io.BytesIO(aac)) as container:
        yield from container.decode(container.streams.audio[0])


# --- pictures --------------------------------------------------------------------------------


def planes_of(picture: np.ndarray, width: int, height: int) -> list[np.ndarray]:
    """Views of a packed yuv420p picture (to_ndarray's layout): [Y, U, V]."""
    chroma = picture[height:].reshape(2, height // 2, width // 2)
    return [picture[:height], chroma[0], chroma[1]]


def black_picture(width: int, height: int) -> np.ndarray:
    picture = np.empty((height * 3 // 2, width), dtype=np.uint8)
    picture[:height] = 16  # limited-range black
    picture[height:] = 128
    return picture


def fitted_size(width: int, height: int, *, into: tuple[int, int]) -> tuple[int, int]:
    """The largest even size with the source's aspect that fits `into`."""
    scale = min(into[0] / width, into[1] / height)
    fit_w = min(max(round(width * scale / 2) * 2, 2), into[0])
    fit_h = min(max(round(height * scale / 2) * 2, 2), into[1])
    return fit_w, fit_h


class VideoReader:
    """One clip's pictures at the output size, asked for at rising source times."""

    def __init__(self, source: Source, *, start_s: float, size: tuple[int, int], number: int):
        self.source, self.size, self.number = source, size, number
        self.name = f"Clip {number} ({os.path.basename(source.path)})"
        self.scaler = VideoReformatter()
        self.black = black_picture(*size)
        self._open(seek_s=start_s if start_s > 2 * SEEK_AHEAD_S else None)
        try:
            self.current: tuple[float, av.VideoFrame] | None = self._next()
            if self.current is None:
                raise MasterError(f"{self.name}: the video holds no decodable frame.")
            if self.current[0] > start_s + TIME_EPSILON and start_s > 2 * SEEK_AHEAD_S:
                # The seek landed past the point: decode from the start instead.
                self.close()
                self._open(seek_s=None)
                self.current = self._next()
            self.upcoming = self._next()
        except BaseException:
            self.close()
            raise
        self.picture: np.ndarray | None = None
        self.picture_of: av.VideoFrame | None = None

    def _open(self, *, seek_s: float | None) -> None:
        try:
            self.container = av.open(self.source.path)
            stream = self.container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.thread_count = CODEC_THREADS
            if seek_s is not None:
                target = (seek_s + self.source.origin_s - SEEK_AHEAD_S) / stream.time_base
                self.container.seek(int(target), stream=stream)
            self.frames = self.container.decode(stream)
            self.rate = float(stream.average_rate or 30)
        except av.error.FFmpegError as error:
            raise MasterError(f"{self.name}: the video could not be opened ({error}).") from error
        self.last_time: float | None = None

    def _next(self) -> tuple[float, av.VideoFrame] | None:
        try:
            frame = next(self.frames, None)
        except av.error.FFmpegError as error:
            raise MasterError(f"{self.name}: the video could not be decoded ({error}).") from error
        if frame is None:
            return None
        if frame.time is not None:
            time = frame.time - self.source.origin_s
        else:
            time = 0.0 if self.last_time is None else self.last_time + 1 / self.rate
        self.last_time = time
        return time, frame

    def picture_at(self, source_s: float) -> np.ndarray:
        """The picture showing at `source_s` (the first one before the source's first frame, the
        last one after its end). Shared: callers copy before they draw on it."""
        while self.upcoming is not None and self.upcoming[0] <= source_s + TIME_EPSILON:
            self.current, self.upcoming = self.upcoming, self._next()
        frame = self.current[1]
        if frame is not self.picture_of:
            self.picture, self.picture_of = self._fit(frame), frame
        return self.picture

    def _fit(self, frame: av.VideoFrame) -> np.ndarray:
        width, height = self.size
        display_w = frame.width
        aspect = self.container.streams.video[0].sample_aspect_ratio
        if aspect and aspect > 0:
            display_w = frame.width * float(aspect)
        fit_w, fit_h = fitted_size(display_w, frame.height, into=self.size)
        scaled = self.scaler.reformat(
            frame, width=fit_w, height=fit_h, format="yuv420p", interpolation="BICUBIC"
        ).to_ndarray()
        if (fit_w, fit_h) == (width, height):
            return scaled
        picture = self.black.copy()
        left, top = (width - fit_w) // 2 & ~1, (height - fit_h) // 2 & ~1
        for target, part in zip(
            planes_of(picture, width, height), planes_of(scaled, fit_w, fit_h), strict=True
        ):
            scale = width // target.shape[1]
            target[
                top // scale : top // scale + part.shape[0],
                left // scale : left // scale + part.shape[1],
            ] = part
        return picture

    def close(self) -> None:
        self.container.close()


def compose(layers: list[tuple[np.ndarray, float]], black: np.ndarray) -> np.ndarray:
    """The weighted sum of the pictures, black making up the rest (fixed point, 1/256 steps)."""
    if len(layers) == 1 and layers[0][1] >= 1.0:
        return layers[0][0]
    weights = [round(min(max(weight, 0.0), 1.0) * 256) for _, weight in layers]
    weights[-1] = min(weights[-1], 256 - sum(weights[:-1]))  # never past full scale
    total = black.astype(np.uint16) * (256 - sum(weights))
    for (picture, _), weight in zip(layers, weights, strict=True):
        if weight:
            total += picture.astype(np.uint16) * weight
    total += 128
    total >>= 8
    return total.astype(np.uint8)


# --- captions --------------------------------------------------------------------------------


class CaptionTrack:
    """Which caption shows on which output frame: frame n (at n/fps) shows a caption when
    start_s <= n/fps < end_s, as a player would. Layers are rendered once and kept."""

    def __init__(self, captions: list[Caption], *, spec: MasterSpec, frames: int) -> None:
        self.size = (spec.width, spec.height)
        self.speakers = spec.caption_speakers
        self.spans: list[tuple[int, int, Caption]] = []
        for caption in captions:
            if not caption.text.strip() or not caption.end_s > caption.start_s:
                continue
            first = max(math.ceil(caption.start_s * spec.fps - 1e-6), 0)
            end = min(math.ceil(caption.end_s * spec.fps - 1e-6), frames)
            if end > first:
                self.spans.append((first, end, caption))
        self.spans.sort(key=lambda span: span[0])
        self.layers: OrderedDict[tuple, Overlay] = OrderedDict()

    def overlay_at(self, frame: int) -> Overlay | None:
        showing = tuple(
            (caption.speaker if self.speakers else "", caption.text.strip())
            for first, end, caption in self.spans
            if first <= frame < end
        )
        if not showing:
            return None
        if showing in self.layers:
            self.layers.move_to_end(showing)
            return self.layers[showing]
        overlay = Overlay(captions_layer(list(showing), width=self.size[0], height=self.size[1]))
        self.layers[showing] = overlay
        while len(self.layers) > CAPTION_LAYERS_KEPT:
            self.layers.popitem(last=False)
        return overlay


# --- the two files ---------------------------------------------------------------------------


class Output(threading.Thread):
    """One master being written, on its own thread: libx264 runs without the GIL, so the two
    encoders and the decoding and composing of the next frames proceed side by side. Frames
    come through a short queue, each with the time up to which audio is interleaved first."""

    def __init__(self, target: str, *, spec: MasterSpec, sound: Sound) -> None:
        super().__init__(name=f"master-{os.path.basename(target)}", daemon=True)
        self.part = f"{target}.part"
        self.queue: queue.Queue = queue.Queue(ENCODE_QUEUE)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.closed = False
        self.container = av.open(self.part, "w", format="mp4", options={"movflags": "+faststart"})
        self.audio_source = None
        try:
            self.video = self.container.add_stream(
                "libx264",
                rate=spec.fps,
                options={
                    "preset": spec.x264_preset,
                    "crf": str(spec.crf),
                    "profile": "high",
                    # A keyframe at least every half second, and closed GOPs (research 2d).
                    "g": str(max(spec.fps // 2, 1)),
                    "flags": "+cgop",
                    "threads": str(CODEC_THREADS),
                },
            )
            self.video.width, self.video.height = spec.width, spec.height
            self.video.pix_fmt = "yuv420p"
            # The delivered AAC packets, copied as they are (encoded and measured once).
            self.audio_source = av.open(io.BytesIO(sound.aac))
            source_stream = self.audio_source.streams.audio[0]
            self.audio = self.container.add_stream_from_template(source_stream)
            self.packets = self.audio_source.demux(source_stream)
        except BaseException:
            with contextlib.suppress(Exception):
                self.close()
            _remove(self.part)
            raise
        self.pending: av.Packet | None = None

    def put(self, frame: av.VideoFrame | None, *, audio_until: float | None) -> None:
        """Queue a frame (None: the end); raises the encoder's error if it failed."""
        while True:
            if self.error is not None:
                raise self.error
            if not self.is_alive():
                raise MasterError(f"The encoder of {os.path.basename(self.part)} stopped.")
            try:
                self.queue.put((frame, audio_until), timeout=0.1)
                return
            except queue.Full:
                continue

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    frame, audio_until = self.queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                self._mux_audio_until(audio_until)
                for packet in self.video.encode(frame):
                    self.container.mux(packet)
                if frame is None:
                    return
        except BaseException as error:  # raised again in the caller's thread by put/finish
            self.error = error

    def finish(self) -> None:
        self.put(None, audio_until=None)
        self.join()
        if self.error is not None:
            raise self.error
        self.close()

    def abort(self) -> None:
        self.stop.set()
        if self.is_alive():
            self.join()
        with contextlib.suppress(Exception):
            self.close()
        _remove(self.part)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.container.close()
        finally:
            if self.audio_source is not None:
                self.audio_source.close()

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Interleave: mux the audio packets that start before `seconds` (all when None)."""
        while True:
            if self.pending is None:
                self.pending = next(self.packets, None)
                if self.pending is None:
                    return
                if self.pending.dts is None:  # the demuxer's empty flush packet
                    self.pending = None
                    continue
            packet = self.pending
            starts = None if packet.pts is None else float(packet.pts * packet.time_base)
            if seconds is not None and starts is not None and starts >= seconds:
                return
            packet.stream = self.audio
            self.container.mux(packet)
            self.pending = None


def _write_masters(
    *,
    timeline: Timeline,
    frames: int,
    captions: CaptionTrack,
    sound: Sound,
    spec: MasterSpec,
    targets: tuple[str, str],
    report: Progress,
) -> None:
    size = (spec.width, spec.height)
    black = black_picture(*size)
    time_base = Fraction(1, spec.fps)
    outputs: list[Output] = []
    readers: dict[int, VideoReader] = {}
    try:
        for target in targets:
            outputs.append(Output(target, spec=spec, sound=sound))
        for output in outputs:
            output.start()
        burned, clean = outputs
        every = max(frames // 100, 1)
        for index in range(frames):
            layers = timeline.layers_at(index / spec.fps)
            for clip in [clip for clip in readers if clip < layers[0].clip]:
                readers.pop(clip).close()
            pictures = []
            for layer in layers:
                if layer.clip not in readers:
                    readers[layer.clip] = VideoReader(
                        timeline.sources[layer.clip],
                        start_s=layer.source_s,
                        size=size,
                        number=layer.clip + 1,
                    )
                pictures.append((readers[layer.clip].picture_at(layer.source_s), layer.weight))
            picture = compose(pictures, black)
            # Both encoders may read one frame at once: its time base is theirs, so neither
            # rewrites its timestamps.
            clean_frame = _frame(picture, index=index, time_base=time_base)
            overlay = captions.overlay_at(index)
            burned_frame = clean_frame
            if overlay is not None:
                burned_frame = _frame(picture, index=index, time_base=time_base)
                overlay.apply(frame_planes(burned_frame))
            audio_until = (index + 1) / spec.fps
            clean.put(clean_frame, audio_until=audio_until)
            burned.put(burned_frame, audio_until=audio_until)
            if index % every == 0:
                report(0.98 * index / frames)
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


def _frame(picture: np.ndarray, *, index: int, time_base: Fraction) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
    frame.pts, frame.time_base = index, time_base
    return frame


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)
