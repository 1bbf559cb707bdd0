"""The delivery package written from a plain plan (dramas/delivery/export.py makes the plan):
Django-free, so it runs in the CPU pool (studio/cpu.py). Progress goes to `<work>/.progress`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import zipfile
from pathlib import Path

import av

from dramas.delivery import captions as caption_files
from dramas.delivery import covers, master, timelines
from dramas.dialog_audio import mux_dialog, video_seconds
from studio.providers.animatic import RenderOptions, render_animatic

DELIVERY_FPS = (24, 25, 30)
ZIP_NAME = "episode.zip"


def package_in_pool(plan: dict, work_dir: str) -> dict:
    """Process-pool entry point: every file of the package written into `work_dir`, progress
    kept in `work_dir/.progress`. Returns the master's figures and the files' manifest."""
    work = Path(work_dir)
    media = work / "media"
    media.mkdir(parents=True, exist_ok=True)

    def progress(fraction: float) -> None:
        temporary = work / ".progress.tmp"
        temporary.write_text(f"{fraction:.4f}")
        os.replace(temporary, work / ".progress")

    # The clean take media (also what the editor timelines point at).
    clean_paths = []
    for number, clip in enumerate(plan["clips"], start=1):
        target = media / f"{number:02d}_take{clip['take_id']}.mp4"
        source = clip["clean_from"]
        if source is None:
            shutil.copyfile(clip["path"], target)
        else:
            options = RenderOptions(overlays=False, preset="veryfast", crf=18)
            render_animatic(source["request"], str(target), options=options)
            if source["track"]:
                mux_dialog(str(target), source["track"], source["audio_paths"])
        clean_paths.append(target)
        progress(0.1 * number / len(plan["clips"]))

    spec = plan["spec"]
    fps = delivery_fps([str(path) for path in clean_paths])
    master_spec = master.MasterSpec(
        width=spec["width"],
        height=spec["height"],
        fps=fps,
        loudness_lufs=spec["loudness_lufs"],
        true_peak_dbtp=spec["true_peak_dbtp"],
        x264_preset=spec.get("x264_preset", "veryfast"),  # exports made before the setting
    )
    clips = [
        master.Clip(
            path=str(path),
            in_s=clip["in_s"],
            out_s=clip["out_s"],
            transition=clip["transition"],
            transition_s=clip["transition_s"],
        )
        for path, clip in zip(clean_paths, plan["clips"], strict=True)
    ]
    captions = [master.Caption(**caption) for caption in plan["captions"]]
    result = master.master_episode(
        clips=clips,
        captions=captions,
        spec=master_spec,
        burned_path=str(work / "episode.mp4"),
        clean_path=str(work / "episode_clean.mp4"),
        progress=lambda fraction: progress(0.1 + 0.8 * fraction),
    )
    caption_files.write_srt(captions, str(work / "episode.srt"))
    caption_files.write_vtt(captions, str(work / "episode.vtt"))
    timelines.write_timelines(
        name=plan["name"],
        clips=[
            timelines.TimelineClip(
                name=clip["name"],
                media_path=f"media/{path.name}",
                media_duration_s=video_seconds(str(path)),
                in_s=clip["in_s"],
                out_s=clip["out_s"],
                transition=clip["transition"],
                transition_s=clip["transition_s"],
                metadata=clip["metadata"],
            )
            for path, clip in zip(clean_paths, plan["clips"], strict=True)
        ],
        fps=fps,
        width=spec["width"],
        height=spec["height"],
        out_dir=str(work),
        markers=[tuple(marker) for marker in plan["markers"]],
    )
    if plan["cover"]:
        covers.write_covers(frame_path=plan["cover"], out_dir=str(work))
    progress(0.95)
    figures = {  # loudness is None for a silent episode (never -inf: the manifest is JSON)
        "duration_s": result.duration_s,
        "width": result.width,
        "height": result.height,
        "fps": result.fps,
        "loudness_lufs": result.loudness_lufs,
        "true_peak_dbtp": result.true_peak_dbtp,
        "input_loudness_lufs": result.input_loudness_lufs,
        "gain_db": result.gain_db,
    }
    figures = {k: v if v is None or math.isfinite(v) else None for k, v in figures.items()}
    files = _manifest_files(work)
    manifest = {
        "name": plan["name"],
        "input_hash": plan["input_hash"],
        "loudness_target_lufs": spec["loudness_lufs"],
        **figures,
        "captions": len(captions),
        "files": files,
    }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    files["manifest.json"] = _file_entry(work / "manifest.json")
    with zipfile.ZipFile(work / ZIP_NAME, "w", zipfile.ZIP_STORED) as archive:
        # Stored, not deflated: the videos are compressed already.
        for path in sorted(work.rglob("*")):
            if path.is_file() and not path.name.startswith(".") and path.name != ZIP_NAME:
                archive.write(path, path.relative_to(work).as_posix())
    files[ZIP_NAME] = _file_entry(work / ZIP_NAME)
    progress(1.0)
    return {"figures": figures, "files": files}


def delivery_fps(paths: list[str]) -> int:
    """The delivery frame rate nearest the takes' own (the most common among them)."""
    rates = []
    for path in paths:
        with av.open(path) as container:
            rate = container.streams.video[0].average_rate
            if rate:
                rates.append(min(DELIVERY_FPS, key=lambda fps: abs(fps - float(rate))))
    return max(set(rates), key=rates.count) if rates else 30


def _file_entry(path: Path) -> dict:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def _manifest_files(work: Path) -> dict:
    files = {}
    for path in sorted(work.rglob("*")):
        if not path.is_file() or path.name.startswith(".") or path.name in (ZIP_NAME,):
            continue
        name = path.relative_to(work).as_posix()
        entry = _file_entry(path)
        if path.suffix == ".mp4":
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                entry["duration_s"] = round(float(container.duration or 0) / 1_000_000, 3)
                entry["width"], entry["height"] = stream.width, stream.height
        files[name] = entry
    return files
