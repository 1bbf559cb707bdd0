"""What the live channel shows: HTML fragments rendered from the database for each event.

Four views subscribe: the queue page (`queue`), the drama board (`board`, one chapter at a
time), the chapter editor (`editor`: the writer's live preview, scene by scene, and each line's
voicing) and the scene page (`scene`). Each
fragment is a template partial whose root element carries the id it replaces; the consumer
marks it `hx-swap-oob` so htmx swaps it in place. The same partials render the pages, so a
reload and a live update always agree.
"""

from django.db.models import Exists, OuterRef
from django.template.loader import render_to_string
from django.urls import reverse

from dramas import keyframes as keyframe_services
from dramas import speech_jobs
from dramas import takes as take_services
from dramas.delivery.cut import (
    cover_candidates,
    cover_frame,
    cut_of,
    gaps,
    playable_takes,
    runtime_s,
)
from dramas.delivery.export import (
    EXPORT,
    LOUDNESS_PRESETS,
    export_is_current,
    latest_export,
)
from dramas.dialog_fit import lengthenings, scene_needs
from dramas.generation import KINDS as WRITING_KINDS
from dramas.generation import latest_generation
from dramas.keyframe_gate import gate_refusals
from dramas.models import Chapter, Drama, Export, ExportStatus, Scene, Take, Transition
from dramas.page_parts import job_row_key
from dramas.scripts import preview_of
from dramas.takes import PRIORITIES, RENDER
from dramas.takes_display import attach_jobs, latest_takes
from studio.health import WORKER_STALE_AFTER_S
from studio.jobs import selectors
from studio.jobs.models import ACTIVE, Job, JobStatus

# `scene`: the scene page and its take pages; the consumer's `chapter` parameter carries the
# scene's id there (it passes one id through).
VIEWS = ("board", "queue", "editor", "scene", "cut", "storyboard")
QUEUE = "dramas/queue.html"
BOARD = "dramas/board.html"
EDITOR = "dramas/chapter_editor.html"
DIALOG = "dramas/dialog_parts.html"
CUT = "dramas/cut.html"
TAKES = "dramas/take_parts.html"
STORYBOARD = "dramas/storyboard.html"
FORMS = "dramas/scene_takes.html"
TAKES_SHOWN = 60  # the scene and take pages follow this many of the scene's takes
ACTIVE_SCAN_LIMIT = 500  # queued and running jobs read to place them on the board's tiles


def queue_context(*, drama: Drama, can_edit: bool) -> dict:
    sections = selectors.queue_sections(drama_id=drama.id)
    for section in sections:
        for job in section.jobs:
            job.row_key = job_row_key(job=job, drama=drama, can_edit=can_edit)
    return {
        "drama": drama,
        "can_edit": can_edit,
        "summary": selectors.queue_summary(drama_id=drama.id),
        "sections": sections,
        # Whether anything will run the queue: workers anywhere, by their heartbeats.
        "workers": selectors.workers(stale_after_s=WORKER_STALE_AFTER_S),
    }


def job_scene_ids(job: Job) -> list[int]:
    """The scenes a job works on, as its payload names them: a render names its scene
    (`scene_id`), a script check the chapter's scenes (`scene_ids`)."""
    payload = job.payload if isinstance(job.payload, dict) else {}
    ids = payload.get("scene_ids") or [payload.get("scene_id")]
    return [value for value in ids if isinstance(value, int)]


def active_jobs_by_scene(*, drama_id: int) -> dict[int, Job]:
    """The job to show on each scene's tile: running before queued, then the furthest along."""
    jobs = Job.objects.filter(drama_id=drama_id, status__in=ACTIVE).order_by("id")
    by_scene: dict[int, Job] = {}
    for job in jobs[:ACTIVE_SCAN_LIMIT]:
        for scene_id in job_scene_ids(job):
            shown = by_scene.get(scene_id)
            if shown is None or _rank(job) > _rank(shown):
                by_scene[scene_id] = job
    return by_scene


def _rank(job: Job) -> tuple:
    return (job.status == JobStatus.RUNNING, job.progress)


def attach_scene_jobs(*, drama: Drama, scenes: list[Scene]) -> list[Scene]:
    """Give each scene `live_job`: the queued or running job working on it, if any."""
    by_scene = active_jobs_by_scene(drama_id=drama.id)
    for scene in scenes:
        scene.live_job = by_scene.get(scene.id)
    return scenes


def attach_storyboard(*, drama: Drama, scenes: list[Scene], rounds: bool = False) -> list[Scene]:
    """Give each scene `board` (its chosen keyframe; with `rounds` its latest round with the
    candidates) and `gated` (why the keyframe gate holds it, or ""): one query for the board's
    tiles (a round on its way shows as the tile's job), three for the storyboard page."""
    boards = keyframe_services.scene_storyboard(scenes=scenes, rounds=rounds)
    chosen = {scene_id: board["chosen"] for scene_id, board in boards.items() if board["chosen"]}
    gated = gate_refusals(drama=drama, scenes=scenes, chosen=chosen)
    for scene in scenes:
        scene.board = boards[scene.id]
        scene.gated = gated.get(scene.id, "")
    return scenes


def board_context(*, drama: Drama, scenes: list[Scene]) -> dict:
    """The tiles' takes, keyframes and jobs, the queue summary and the render buttons'
    estimates, in a number of queries that does not grow with the drama
    (tests/test_board_page.py)."""
    scenes = latest_takes(attach_scene_jobs(drama=drama, scenes=scenes))
    attach_storyboard(drama=drama, scenes=scenes)
    chapter_estimate, drama_estimate = render_estimates(
        drama=drama, chapter_scene_ids={scene.id for scene in scenes}
    )
    return {
        "summary": selectors.queue_summary(drama_id=drama.id),
        "scenes": scenes,
        "awaiting_approval": _awaiting_approval(scenes),
        # Render buttons show what a batch would cost (approved and running scenes skipped).
        "priorities": PRIORITIES,
        "chapter_estimate": chapter_estimate,
        "drama_estimate": drama_estimate,
    }


def render_estimates(*, drama: Drama, chapter_scene_ids: set[int]):
    """What "Render chapter" and "Render drama" would queue and cost (approved and running
    scenes skipped): one grouped query and one price lookup, whatever the drama's size."""
    drama_batch, chapter_batch = take_services.batch_clips(
        scenes=Scene.objects.filter(chapter__drama=drama), among=chapter_scene_ids
    )
    return take_services.takes_estimates(drama=drama, batches=[chapter_batch, drama_batch])


def _awaiting_approval(scenes: list[Scene]) -> int:
    """Scenes whose shown take (`latest_takes`) "Approve consistent takes" would approve."""
    return sum(take_services.awaiting_approval(scene.latest_take) for scene in scenes)


def _render_actions(*, drama: Drama, chapter_id: int | None, tiles: list[Scene]) -> str:
    """The board's batch buttons: render (enabled again, with a fresh estimate, when renders
    finish) and approve (the count of consistent takes as they finish). `tiles`: the chapter's
    scenes with their shown takes (`_tiles`)."""
    chapter_estimate, drama_estimate = render_estimates(
        drama=drama, chapter_scene_ids={scene.id for scene in tiles}
    )
    fragments = _oob(FORMS, "render-action", {"scope": "drama", "estimate": drama_estimate})
    if chapter_id is not None:
        context = {"scope": "chapter", "estimate": chapter_estimate}
        fragments += _oob(FORMS, "render-action", context)
        waiting = _awaiting_approval(tiles)
        fragments += _oob(FORMS, "approve-action", {"awaiting_approval": waiting})
    return fragments


def _takes(*, drama: Drama, scene_id: int | None) -> str:
    """The scene's takes with their live status (the scene page and its take pages)."""
    scene = Scene.objects.filter(chapter__drama=drama, id=scene_id).first() if scene_id else None
    if scene is None:
        return ""
    takes = scene.takes.select_related("scene__chapter__drama").order_by("-number")
    context = {"drama": drama, "scene": scene, "takes": attach_jobs(list(takes[:TAKES_SHOWN]))}
    return _oob(TAKES, "scene-takes", context)


def generation_context(*, chapter: Chapter, can_edit: bool) -> dict:
    """The chapter's latest writing job and, while it runs, the scenes it has written so far."""
    job = latest_generation(chapter=chapter)
    text = ""
    if job is not None and job.status in ACTIVE and isinstance(job.checkpoint, dict):
        text = str(job.checkpoint.get("preview", ""))
    return {
        "drama": chapter.drama,
        "chapter": chapter,
        "can_edit": can_edit,
        "generation": job,
        "preview": preview_of(text) if text else None,
    }


def editor_scenes(*, chapter: Chapter) -> list[Scene]:
    """The chapter editor's scenes, with what its cards and the dialog panels read."""
    # `has_takes`: deleting such a scene archives it with its takes (the button says so).
    return list(
        chapter.scenes.annotate(
            has_takes=Exists(Take.objects.filter(scene=OuterRef("pk")))
        ).prefetch_related("characters", "lines__speaker")
    )


def dialog_context(*, chapter: Chapter, scenes: list[Scene], can_edit: bool) -> dict:
    """Each line's voice (set on the line as `line.voice`), the chapter's voicing summary and
    the scenes too short for their dialog, from the prefetched scenes (two more queries)."""
    lines = [line for scene in scenes for line in scene.lines.all()]
    voices = speech_jobs.line_voices(chapter=chapter, lines=lines)
    for line in lines:
        line.voice = voices.get(line.id)
    audio = {line_id: voice.audio for line_id, voice in voices.items() if voice.voiced}
    needs = scene_needs(scenes=scenes, language=chapter.drama.language, audio=audio)
    states = list(voices.values())
    proposal = lengthenings(needs=needs)
    return {
        "drama": chapter.drama,
        "chapter": chapter,
        "dialog_lines": [line for line in lines if line.id in voices],
        "voice_summary": {
            "lines": len(states),
            "voiced": sum(state.voiced for state in states),
            "voicing": sum(state.voicing for state in states),
            "failed": sum(state.failed for state in states),
            "to_voice": sum(not state.voiced and not state.voicing for state in states),
        },
        "lengthenings": proposal,
        "lengthenable": [item for item in proposal if item.new_s is not None],
        "can_edit": can_edit,
    }


def _dialog(*, drama: Drama, chapter_id: int | None, can_edit: bool) -> str:
    """The editor's voicing panel, each line's voice and the lengthening proposal."""
    chapter = Chapter.objects.filter(drama=drama, id=chapter_id).first() if chapter_id else None
    if chapter is None:
        return ""
    context = dialog_context(
        chapter=chapter, scenes=editor_scenes(chapter=chapter), can_edit=can_edit
    )
    # Only lines a voicing job touched: the others look as the page drew them, and a line the
    # page does not show yet (a chapter just written) must not be swapped in out of band.
    context["dialog_lines"] = [
        line for line in context["dialog_lines"] if line.voice and line.voice.job
    ]
    return render_to_string(f"{DIALOG}#dialog-live", context).strip()


def cut_context(*, chapter: Chapter, can_edit: bool) -> dict:
    items = cut_of(chapter=chapter)
    for item in items:
        item.choices = playable_takes(item.scene)
    latest = latest_export(chapter=chapter)
    active = (
        Export.objects.filter(
            chapter=chapter, status__in=[ExportStatus.QUEUED, ExportStatus.RUNNING]
        )
        .order_by("-id")
        .first()
    )
    failed = Export.objects.filter(chapter=chapter).first()
    playlist = [
        {
            "src": reverse("take_video", args=[chapter.drama_id, item.take.id]),
            "in": item.in_s,
            "out": item.out_s,
            "label": f"Scene {item.scene.order} · take {item.take.number}",
        }
        for item in items
        if item.take
    ]
    return {
        "drama": chapter.drama,
        "chapter": chapter,
        "items": items,
        "playlist": playlist,
        "runtime_s": runtime_s(items),
        "gaps": gaps(items),
        "latest": latest,
        "latest_current": bool(latest and export_is_current(export=latest)),
        "active": active,
        "failed": failed if failed and failed.status == ExportStatus.FAILED else None,
        "covers": cover_candidates(items=items),
        "cover": cover_frame(chapter=chapter, items=items),
        "transitions": Transition.choices,
        "loudness_presets": LOUDNESS_PRESETS,
        "can_edit": can_edit,
    }


def _export_panel(*, drama: Drama, chapter_id: int | None, can_edit: bool) -> str:
    """The Cut page's export panel: the latest package, the export on its way, its progress."""
    chapter = Chapter.objects.filter(drama=drama, id=chapter_id).first() if chapter_id else None
    if chapter is None:
        return ""
    return _oob(CUT, "export-panel", cut_context(chapter=chapter, can_edit=can_edit))


def storyboard_context(*, chapter: Chapter, can_edit: bool) -> dict:
    """The chapter's storyboard: every scene with its keyframe round, candidates and job, and
    what "Make the storyboard" would cost."""
    drama = chapter.drama
    scenes = list(
        chapter.scenes.select_related("chapter").prefetch_related("characters", "lines__speaker")
    )
    attach_storyboard(
        drama=drama, scenes=attach_scene_jobs(drama=drama, scenes=scenes), rounds=True
    )
    for scene in scenes:
        round_ = scene.board["round"]
        scene.keyframe_prompt = (
            round_.prompt if round_ else keyframe_services.keyframe_prompt(scene=scene)
        )
    wanted = keyframe_services.storyboard_scenes(scenes=scenes)
    return {
        "drama": drama,
        "chapter": chapter,
        "scenes": scenes,
        "storyboard_estimate": keyframe_services.keyframes_estimate(
            drama=drama, scenes=len(wanted)
        ),
        "can_edit": can_edit,
    }


def _storyboard(*, drama: Drama, chapter_id: int | None, can_edit: bool, scene_ids=None) -> str:
    """The storyboard page's scenes (only `scene_ids` when given) and its action bar."""
    chapter = Chapter.objects.filter(drama=drama, id=chapter_id).first() if chapter_id else None
    if chapter is None:
        return ""
    context = storyboard_context(chapter=chapter, can_edit=can_edit)
    fragments = _oob(STORYBOARD, "storyboard-actions", context)
    for scene in context["scenes"]:
        if scene_ids is None or scene.id in scene_ids:
            fragments += _oob(STORYBOARD, "storyboard-scene", {**context, "scene": scene})
    return fragments


def _generation(*, drama: Drama, chapter_id: int | None, can_edit: bool) -> str:
    chapter = Chapter.objects.filter(drama=drama, id=chapter_id).first() if chapter_id else None
    if chapter is None:
        return ""
    return _oob(EDITOR, "generation-live", generation_context(chapter=chapter, can_edit=can_edit))


def snapshot(*, drama_id: int, view: str, chapter_id: int | None, can_edit: bool) -> str:
    """Every live fragment of the view, as on a fresh page load (sent on (re)connect)."""
    drama = Drama.objects.get(id=drama_id)
    if view == "editor":
        return _generation(drama=drama, chapter_id=chapter_id, can_edit=can_edit) + _dialog(
            drama=drama, chapter_id=chapter_id, can_edit=can_edit
        )
    if view == "scene":
        return _takes(drama=drama, scene_id=chapter_id)
    if view == "cut":
        return _export_panel(drama=drama, chapter_id=chapter_id, can_edit=can_edit)
    if view == "storyboard":
        return _storyboard(drama=drama, chapter_id=chapter_id, can_edit=can_edit)
    if view == "queue":
        context = queue_context(drama=drama, can_edit=can_edit)
        return _oob(QUEUE, "queue-controls", context) + _oob(QUEUE, "queue-sections", context)
    summary = selectors.queue_summary(drama_id=drama_id)
    tiles = _tiles(drama=drama, chapter_id=chapter_id, scene_ids=None)
    fragments = _oob(QUEUE, "queue-summary", {"drama": drama, "summary": summary})
    fragments += _scene_bars(drama=drama, tiles=tiles)
    if can_edit:
        fragments += _render_actions(drama=drama, chapter_id=chapter_id, tiles=tiles)
    return fragments


def progress(*, drama_id: int, view: str, chapter_id: int | None, can_edit: bool, ids) -> str:
    """What a progress event changes: the jobs' rows (queue) or their scenes' bars (board).

    Any other event changes counts and lists: the consumer sends a fresh `snapshot` for those.
    """
    drama = Drama.objects.get(id=drama_id)
    jobs = selectors.jobs_for_drama(drama_id=drama_id, ids=ids)
    if view == "editor":
        ours = {job.kind for job in jobs if job.payload.get("chapter_id") == chapter_id}
        fragments = ""
        if ours & set(WRITING_KINDS):
            fragments += _generation(drama=drama, chapter_id=chapter_id, can_edit=can_edit)
        if speech_jobs.SPEAK in ours:
            fragments += _dialog(drama=drama, chapter_id=chapter_id, can_edit=can_edit)
        return fragments
    if view == "cut":
        ours = any(
            job.kind == EXPORT and job.payload.get("chapter_id") == chapter_id for job in jobs
        )
        return _export_panel(drama=drama, chapter_id=chapter_id, can_edit=can_edit) if ours else ""
    if view == "storyboard":
        scene_ids = {
            scene_id
            for job in jobs
            if job.kind == keyframe_services.GENERATE
            for scene_id in job_scene_ids(job)
        }
        if not scene_ids:
            return ""
        return _storyboard(
            drama=drama, chapter_id=chapter_id, can_edit=can_edit, scene_ids=scene_ids
        )
    if view == "scene":
        ours = any(job.kind == RENDER and chapter_id in job_scene_ids(job) for job in jobs)
        return _takes(drama=drama, scene_id=chapter_id) if ours else ""
    if view == "queue":
        return "".join(
            _oob(QUEUE, "job-row", {"drama": drama, "can_edit": can_edit, "job": job})
            for job in jobs
        )
    scene_ids = {scene_id for job in jobs for scene_id in job_scene_ids(job)}
    tiles = _tiles(drama=drama, chapter_id=chapter_id, scene_ids=scene_ids)
    return _scene_bars(drama=drama, tiles=tiles)


def _tiles(*, drama: Drama, chapter_id: int | None, scene_ids: set[int] | None) -> list[Scene]:
    """The chapter's scenes (only `scene_ids` when given) with their jobs and shown takes."""
    if chapter_id is None or scene_ids == set():
        return []
    scenes = Scene.objects.filter(chapter__drama=drama, chapter_id=chapter_id)
    if scene_ids is not None:
        scenes = scenes.filter(id__in=scene_ids)
    tiles = latest_takes(attach_scene_jobs(drama=drama, scenes=list(scenes)))
    return attach_storyboard(drama=drama, scenes=tiles)


def _scene_bars(*, drama: Drama, tiles: list[Scene]) -> str:
    """The job bar and the shown take of each tile."""
    return "".join(
        _oob(BOARD, "scene-job", {"drama": drama, "scene": scene})
        + _oob(TAKES, "scene-take", {"drama": drama, "scene": scene})
        + _oob(STORYBOARD, "scene-keyframe", {"drama": drama, "scene": scene})
        for scene in tiles
    )


def _oob(template: str, partial: str, context: dict) -> str:
    """A partial rendered for an out-of-band swap (its root element reads `oob`)."""
    return render_to_string(f"{template}#{partial}", {**context, "oob": True}).strip()
