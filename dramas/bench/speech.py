"""`python manage.py bench speech [--quick] [--json]`: the offline voice's speed, and what
muxing the dialog track adds to a take.

Synthesis: a chapter of 40 dialog lines (4-20 words, five of them in Mandarin) in 11 scenes,
spoken by the offline voice (EspeakSpeech, chosen by `dramas.speech.voicing` with no
SPEECH_BASE_URL, recording usage in a scratch database) the way the render pipeline does: each
scene's lines one after another (`speak_scene`), the scenes at once up to one job worker's
concurrency (the takes of a chapter), every line synthesised in the shared CPU pool, which is
warmed first as a running studio's is. `realtime_factor` is seconds of audio per second of wall
time (median of nine passes over the chapter, one with --quick); latencies are per line, from
asking to hearing back, waiting for the pool included.

Baseline in the same run: the same lines through espeak-ng's own command line (one process per
line, one at a time, same voices, speeds and pitches, `-w` into a temporary folder) when
`espeak-ng` is on the PATH; otherwise the same adapter one line at a time. The adapter one line
at a time is reported either way (`one_at_a_time_*`): what the pool's concurrency brings.

Mux cost: the first scene rendered as a bare 10 s 720x1280 take by the offline animatic (title
card, shots cut to the placed lines) and timed, then `mux_dialog` timed on a copy with that
scene's lines placed as the pipeline places them. Both in this process; median of three runs
(one with --quick). The muxed file is decoded and checked before any figure is reported.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import wave
from contextlib import ExitStack
from pathlib import Path

import av
import numpy as np
from asgiref.sync import sync_to_async
from django.conf import settings

from characters.models import Character
from dramas.dialog_audio import SpokenLine, mux_dialog, place
from dramas.speech import line_key, voicing
from studio.bench.harness import cpu_split, percentile, scratch_database
from studio.cpu import cpu_workers, run_cpu
from studio.jobs.worker import WorkerConfig
from studio.providers import registry
from studio.providers.animatic import RenderOptions, plan, render_animatic
from studio.providers.audio import decode_mono
from studio.providers.base import CastMember, DialogCue, SpeechRequest, VideoRequest
from studio.providers.speech_espeak import EspeakSpeech, espeak_settings, voice_name
from studio.providers.speech_espeak import speak as speak_in_pool

FACES = Path(__file__).resolve().parents[1] / "demo" / "faces"
# The cast's voice profiles, as a producer sets them on the character page (unsaved rows:
# `voicing` reads only the profile). The narrator ("") has no character: the default voice.
CAST = {
    "Marcus": dict(voice_id="m3", voice_language="en", voice_speed=0.95, voice_pitch=-2),
    "Ada": dict(voice_id="f3", voice_language="en-us", voice_speed=1.05, voice_pitch=3),
    "Mei": dict(voice_id="f2", voice_language="cmn", voice_speed=1.0, voice_pitch=4),
}
NARRATOR = ""
# One chapter, scene by scene: (speaker, line). The first scene is the muxed take.
CHAPTER: tuple[tuple[tuple[str, str], ...], ...] = (
    (
        ("Marcus", "You came back after all."),
        ("Ada", "I never left. I was downstairs."),
        ("Marcus", "Then who locked the door?"),
    ),
    (
        (NARRATOR, "Rain hammers the window as the city lights flicker below them."),
        ("Ada", "Your brother called me three times tonight, and I didn't answer once."),
        ("Marcus", "He knows about the contract, doesn't he?"),
    ),
    (
        ("Ada", "He knows everything, Marcus. Every signature, every lie, every dollar you moved."),
        ("Marcus", "I did it to keep this family from losing the house."),
        ("Ada", "Don't. Don't say family to me like it means something tonight."),
    ),
    (
        (NARRATOR, "A knock. Mei Lin stands in the doorway, soaked, holding a red envelope."),
        ("Mei", "对不起，这么晚来打扰你们。"),
        ("Ada", "Mei? What are you doing here at this hour?"),
        ("Mei", "你哥哥让我把这个交给你，他说你必须今晚看。"),
    ),
    (
        ("Marcus", "What does it say? Read it to me."),
        ("Ada", "It's from the bank. They want the whole loan repaid by Friday."),
        ("Marcus", "That's impossible. Nobody can raise that much money in four days."),
        ("Mei", "他早就知道了，他一直在等这一天。"),
    ),
    (
        (NARRATOR, "Marcus crosses to the window and stares at the street below."),
        ("Marcus", "Then we stop waiting. We go to him first."),
        ("Ada", "And say what? That you're sorry?"),
        ("Marcus", "That I can pay him back, if he gives me one more month."),
    ),
    (
        ("Ada", "You said that last spring, and the spring before that."),
        ("Marcus", "This time is different. I have a buyer for the restaurant."),
        ("Ada", "You'd sell your father's restaurant to save your own name?"),
        ("Marcus", "I'd sell it to save yours."),
    ),
    (
        (NARRATOR, "Silence. Somewhere below, a car alarm starts and stops."),
        ("Mei", "我可以帮你们，我认识一个律师。"),
        ("Ada", "A lawyer won't fix this, Mei. Only the truth will."),
        ("Marcus", "The truth will put me in prison."),
    ),
    (
        ("Ada", "Maybe that's where the truth belongs tonight."),
        ("Marcus", "You don't mean that."),
        ("Ada", "I don't know what I mean anymore. I just know I'm tired."),
    ),
    (
        (NARRATOR, "Mei sets the envelope on the table and steps back toward the door."),
        ("Mei", "明天早上九点，他在老地方等你。"),
        ("Marcus", "The old place. The pier where we used to fish as boys."),
        ("Ada", "Then you're going alone. I'm done cleaning up after both of you."),
    ),
    (
        ("Marcus", "Ada, please. Just stay until morning."),
        ("Ada", "Give me one reason, and make it a true one this time."),
        ("Marcus", "Because I'm scared, and you're the only one who never lied to me."),
        (NARRATOR, "She looks at him for a long moment, then takes off her coat."),
    ),
)
# --quick: the muxed take's scene and the first one with Mandarin.
QUICK_SCENES = (0, 3)
PASSES, QUICK_PASSES = 9, 1
MUX_RUNS, QUICK_MUX_RUNS = 3, 1
TAKE_S = 10.0
AUDIBLE_RMS = 0.02  # a placed line's audio in the muxed take: speech, not silence


def speech(options: dict) -> dict:
    quick = bool(options.get("quick"))
    scenes = tuple(CHAPTER[n] for n in QUICK_SCENES) if quick else CHAPTER
    passes, mux_runs = (QUICK_PASSES, QUICK_MUX_RUNS) if quick else (PASSES, MUX_RUNS)
    say = options["stdout"].write
    load = os.getloadavg()[0]
    with ExitStack() as stack:
        database = stack.enter_context(scratch_database())
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-speech-"))
        stack.callback(registry.forget)
        stack.callback(setattr, settings, "PROVIDER_SPEECH", settings.PROVIDER_SPEECH)
        settings.PROVIDER_SPEECH = {**settings.PROVIDER_SPEECH, "base_url": ""}  # offline
        registry.forget()
        spoken = asyncio.run(_synthesis(scenes, passes=passes))
        say(f"pool: {spoken['realtime_factor']}x realtime over {spoken['lines']} lines")
        baseline = _command_line(scenes, Path(folder), passes=passes)
        if baseline is None:
            baseline = {
                "baseline": "the same adapter, one line at a time",
                **{
                    key.replace("one_at_a_time_", "baseline_"): value
                    for key, value in spoken.items()
                    if key.startswith("one_at_a_time_")
                },
            }
        say(f"baseline ({baseline['baseline']}): {baseline['baseline_realtime_factor']}x")
        mux = _mux_cost(spoken.pop("first_scene"), Path(folder), runs=mux_runs)
        say(f"mux {mux['mux_s']} s against a bare encode of {mux['bare_encode_s']} s")
    return {
        "database": database,
        "load_average_1min_before": round(load, 2),
        **spoken,
        **baseline,
        "speedup": round(spoken["realtime_factor"] / baseline["baseline_realtime_factor"], 3),
        **mux,
    }


def _voices(scenes) -> dict[str, tuple]:
    """Each speaker's (service, voice), by the one rule the pipeline speaks with."""
    speakers = {speaker for scene in scenes for speaker, _text in scene}
    return {speaker: voicing(_character(speaker)) for speaker in speakers}


async def _synthesis(scenes, *, passes: int) -> dict:
    voices = await sync_to_async(_voices)(scenes)
    services = {type(service) for service, _voice in voices.values()}
    if services != {EspeakSpeech}:
        raise RuntimeError(f"The offline voice was expected, not {services}")
    await _warm_pool(voices)
    concurrency = WorkerConfig().concurrency
    with cpu_split() as cpu:
        runs = [await _chapter(scenes, concurrency=concurrency) for _ in range(passes)]
    serial = [await _chapter(scenes, concurrency=1) for _ in range(passes)]
    from studio.models import UsageRecord

    records = await UsageRecord.objects.filter(operation="speech.synthesize").acount()
    lines = sum(len(scene) for scene in scenes)
    return {
        "lines": lines,
        "scenes": len(scenes),
        "mandarin_lines": sum(
            1 for scene in scenes for who, _text in scene if who in CAST and _mandarin(who)
        ),
        "words": sum(_words(text) for scene in scenes for _who, text in scene),
        "passes": passes,
        "pool_processes": cpu_workers(),
        "concurrency": concurrency,
        **_figures(runs, prefix=""),
        # Where the pool's passes spent CPU: synthesis in the pool, the rest (event loop,
        # ledger writes, WAVs back from the pool) in this process.
        "pool_cpu_ms_per_line": round(1000 * cpu.children_s / (lines * passes), 2),
        "main_cpu_ms_per_line": round(1000 * cpu.main_s / (lines * passes), 2),
        **_figures(serial, prefix="one_at_a_time_"),
        "usage_records": records,  # every line booked in the ledger, as in production
        "first_scene": runs[0]["first_scene"],
    }


async def _warm_pool(voices) -> None:
    """Every pool process started and every voice loaded in it, as in a running studio."""
    warm = [
        run_cpu(speak_in_pool, "Ready.", voice.language, voice.voice_id, voice.speed, voice.pitch)
        for _service, voice in voices.values()
        for _copy in range(2 * cpu_workers())
    ]
    await asyncio.gather(*warm)


async def _chapter(scenes, *, concurrency: int) -> dict:
    """The chapter's scenes at once (up to `concurrency`), each scene's lines in order."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def scene_spoken(scene) -> list:
        async with gate:
            spoken = []
            for speaker, text in scene:
                asked = time.perf_counter()
                service, voice = await sync_to_async(voicing)(_character(speaker))
                result = await service.synthesize(SpeechRequest(text=text, voice=voice))
                latencies.append(time.perf_counter() - asked)
                spoken.append((speaker, text, service, voice, result))
            return spoken

    started = time.perf_counter()
    done = await asyncio.gather(*(scene_spoken(scene) for scene in scenes))
    wall = time.perf_counter() - started
    audio = sum(result.duration_s for scene in done for *_, result in scene)
    return {"audio_s": audio, "wall_s": wall, "latencies": latencies, "first_scene": done[0]}


def _character(speaker: str) -> Character | None:
    profile = CAST.get(speaker)
    return Character(name=speaker, **profile) if profile else None


def _figures(runs: list[dict], *, prefix: str) -> dict:
    factors = [run["audio_s"] / run["wall_s"] for run in runs]
    latencies = [s for run in runs for s in run["latencies"]]
    return {
        f"{prefix}realtime_factor": round(statistics.median(factors), 1),
        f"{prefix}realtime_factors": [round(f, 1) for f in factors],
        f"{prefix}audio_s": round(statistics.median(run["audio_s"] for run in runs), 2),
        f"{prefix}wall_s": round(statistics.median(run["wall_s"] for run in runs), 3),
        f"{prefix}line_p50_ms": round(1000 * percentile(latencies, 0.5), 1),
        f"{prefix}line_p95_ms": round(1000 * percentile(latencies, 0.95), 1),
    }


def _mandarin(speaker: str) -> bool:
    return CAST[speaker]["voice_language"] == "cmn"


def _words(text: str) -> int:
    return len(text.split()) if " " in text else len(text)  # Mandarin: one per character


def _command_line(scenes, folder: Path, *, passes: int) -> dict | None:
    """The same lines through espeak-ng's own command line, one process per line."""
    program = shutil.which("espeak-ng")
    if program is None:
        return None
    version = subprocess.run([program, "--version"], capture_output=True, text=True, check=True)
    lines = [(voicing(_character(who))[1], text) for scene in scenes for who, text in scene]
    out = folder / "command-line"
    out.mkdir()
    runs = []
    for _ in range(passes):
        latencies, audio = [], 0.0
        started = time.perf_counter()
        for number, (voice, text) in enumerate(lines):
            path = out / f"{number}.wav"
            asked = time.perf_counter()
            subprocess.run(
                [program, *_command_line_voice(voice), "-w", str(path), "--", text],
                check=True,
                capture_output=True,
            )
            latencies.append(time.perf_counter() - asked)
            with wave.open(str(path)) as handle:
                audio += handle.getnframes() / handle.getframerate()
        runs.append(
            {"audio_s": audio, "wall_s": time.perf_counter() - started, "latencies": latencies}
        )
    release = version.stdout.split(":", 1)[-1].split()[0] if version.stdout else "?"
    return {
        "baseline": f"espeak-ng command line {release}, one process per line",
        **_figures(runs, prefix="baseline_"),
    }


def _command_line_voice(voice) -> list[str]:
    """The adapter's mapping (speech_espeak.speak) as espeak-ng's flags: voice, words per
    minute, base pitch 0-100."""
    rate, pitch = espeak_settings(speed=voice.speed, pitch=voice.pitch)
    name = voice_name(language=voice.language, variant=voice.voice_id)
    return ["-v", name, "-s", str(rate), "-p", str(pitch)]


def _take_request(scene: list, *, track: list[dict] | None = None) -> VideoRequest:
    placed = track or [{} for _ in scene]
    return VideoRequest(
        prompt="Marcus waits by the door; Ada comes up the stairs with her coat still wet.",
        duration_s=TAKE_S,
        aspect="9:16",
        title="1.1 Apartment",
        camera="medium two-shot, static",
        location="Apartment",
        time_of_day="night",
        mood="tense",
        cast=(
            CastMember("Marcus", image_path=str(FACES / "obama.jpg")),
            CastMember("Ada", image_path=str(FACES / "grace_hopper.jpg")),
        ),
        dialog=tuple(
            DialogCue(speaker, text, start_s=entry.get("start_s"), end_s=entry.get("end_s"))
            for (speaker, text, *_rest), entry in zip(scene, placed, strict=True)
        ),
    )


def _mux_cost(scene: list, folder: Path, *, runs: int) -> dict:
    """The first scene as a bare take, timed; then its dialog track muxed in, timed."""
    options = RenderOptions(preset=settings.ANIMATIC_PRESET)  # as the offline video service
    title = plan(_take_request(scene), fps=options.fps, title_card=options.title_card)[0]
    start_s = title.frames / options.fps if title.kind == "title" else 0.0
    lines, paths = [], {}
    for number, (speaker, text, service, voice, result) in enumerate(scene):
        key = line_key(
            text=text, voice=voice, emotion="", provider=service.name, model=service.model
        )
        paths[key] = str(folder / f"{key}.wav")
        Path(paths[key]).write_bytes(result.wav)
        words = tuple((w.text, w.start_s, w.end_s) for w in result.words)
        lines.append(SpokenLine(number, speaker, text, result.duration_s, key, words))
    track = place(lines, start_s=start_s, scene_s=TAKE_S)
    if track[-1]["end_s"] > TAKE_S:
        raise RuntimeError(f"The bench's first scene does not fit {TAKE_S:g} s: {track}")
    request = _take_request(scene, track=track)
    render_animatic(_take_request(scene), str(folder / "warm.mp4"), options=options)
    bare_s, mux_s = [], []
    for run in range(runs):
        bare, take = folder / f"bare-{run}.mp4", folder / f"take-{run}.mp4"
        started = time.perf_counter()
        rendered = render_animatic(request, str(bare), options=options)
        bare_s.append(time.perf_counter() - started)
        shutil.copyfile(bare, take)
        started = time.perf_counter()
        muxed = mux_dialog(str(take), track, paths)
        mux_s.append(time.perf_counter() - started)
        heard_s = _check_muxed(take, bare=bare, track=track)
    mux, bare_encode = statistics.median(mux_s), statistics.median(bare_s)
    return {
        "take": f"{rendered.duration_s:g} s {rendered.width}x{rendered.height}",
        "take_lines": len(track),
        "lines_heard": muxed["lines_heard"],
        "dialog_track_s": round(heard_s, 3),
        "last_line_end_s": track[-1]["end_s"],
        "mux_runs": runs,
        "bare_encode_s": round(bare_encode, 3),
        "mux_s": round(mux, 3),
        "mux_cost": round(mux / bare_encode, 3),
        "mux_costs": [round(m / b, 3) for m, b in zip(mux_s, bare_s, strict=True)],
    }


def _check_muxed(take: Path, *, bare: Path, track: list[dict]) -> float:
    """The muxed take, decoded: the same video, and an AAC track at least as long as the placed
    lines, with speech where each line is placed. Returns the track's length in seconds."""
    with av.open(str(bare)) as source:
        bare_frames = sum(1 for p in source.demux(source.streams.video[0]) if p.size)
    with av.open(str(take)) as container:
        if not container.streams.audio:
            raise RuntimeError("The muxed take has no audio stream")
        stream = container.streams.audio[0]
        found = (stream.codec_context.name, stream.rate, stream.channels)
        if found != ("aac", 48000, 2):
            raise RuntimeError(f"The muxed take's audio is {found}, not AAC 48 kHz stereo")
        frames = sum(1 for p in container.demux(container.streams.video[0]) if p.size)
    if frames != bare_frames:
        raise RuntimeError(f"The muxed take has {frames} video frames, the bare one {bare_frames}")
    samples, rate = decode_mono(take.read_bytes())
    heard_s = len(samples) / rate
    if heard_s < track[-1]["end_s"]:
        raise RuntimeError(
            f"The dialog track is {heard_s:.2f} s, the lines end at {track[-1]['end_s']} s"
        )
    for entry in track:
        piece = samples[int((entry["start_s"] + 0.05) * rate) : int((entry["end_s"] - 0.05) * rate)]
        if not len(piece) or float(np.sqrt(np.mean(piece**2))) < AUDIBLE_RMS:
            raise RuntimeError(f"Line {entry['text']!r} is silent in the muxed take")
    return heard_s
