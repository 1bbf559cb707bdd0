"""What the live channel shows: HTML fragments rendered from the database for each event.

Two views subscribe: the queue page (`queue`) and the drama board (`board`, one chapter at a
time). Each fragment is a template partial whose root element carries the id it replaces; the
consumer marks it `hx-swap-oob` so htmx swaps it in place. The same partials render the pages,
so a reload and a live update always agree.
"""

from django.template.loader import render_to_string

from dramas.models import Drama, Scene
from studio.jobs import selectors

VIEWS = ("board", "queue")
QUEUE = "dramas/queue.html"
BOARD = "dramas/board.html"


def queue_context(*, drama: Drama, can_edit: bool) -> dict:
    return {
        "drama": drama,
        "can_edit": can_edit,
        "summary": selectors.queue_summary(drama_id=drama.id),
        "sections": selectors.queue_sections(drama_id=drama.id),
    }


def attach_scene_jobs(*, drama: Drama, scenes: list[Scene]) -> list[Scene]:
    """Give each scene `live_job`: the queued or running job working on it, if any."""
    by_scene = selectors.active_jobs_by_scene(drama_id=drama.id)
    for scene in scenes:
        scene.live_job = by_scene.get(scene.id)
    return scenes


def board_context(*, drama: Drama, scenes: list[Scene]) -> dict:
    return {
        "summary": selectors.queue_summary(drama_id=drama.id),
        "scenes": attach_scene_jobs(drama=drama, scenes=scenes),
    }


def snapshot(*, drama_id: int, view: str, chapter_id: int | None, can_edit: bool) -> str:
    """Every live fragment of the view, as on a fresh page load (sent on (re)connect)."""
    drama = Drama.objects.get(id=drama_id)
    if view == "queue":
        context = queue_context(drama=drama, can_edit=can_edit)
        return _oob(QUEUE, "queue-controls", context) + _oob(QUEUE, "queue-sections", context)
    summary = selectors.queue_summary(drama_id=drama_id)
    return _oob(QUEUE, "queue-summary", {"drama": drama, "summary": summary}) + _scene_bars(
        drama=drama, chapter_id=chapter_id, scene_ids=None
    )


def progress(*, drama_id: int, view: str, chapter_id: int | None, can_edit: bool, ids) -> str:
    """What a progress event changes: the jobs' rows (queue) or their scenes' bars (board).

    Any other event changes counts and lists: the consumer sends a fresh `snapshot` for those.
    """
    drama = Drama.objects.get(id=drama_id)
    jobs = selectors.jobs_for_drama(drama_id=drama_id, ids=ids)
    if view == "queue":
        return "".join(
            _oob(QUEUE, "job-row", {"drama": drama, "can_edit": can_edit, "job": job})
            for job in jobs
        )
    scene_ids = {scene_id for job in jobs for scene_id in job.scene_ids}
    return _scene_bars(drama=drama, chapter_id=chapter_id, scene_ids=scene_ids)


def _scene_bars(*, drama: Drama, chapter_id: int | None, scene_ids: set[int] | None) -> str:
    """The job bars of the chapter's scene tiles (only `scene_ids` when given)."""
    if chapter_id is None or scene_ids == set():
        return ""
    scenes = Scene.objects.filter(chapter__drama=drama, chapter_id=chapter_id)
    if scene_ids is not None:
        scenes = scenes.filter(id__in=scene_ids)
    return "".join(
        _oob(BOARD, "scene-job", {"drama": drama, "scene": scene})
        for scene in attach_scene_jobs(drama=drama, scenes=list(scenes))
    )


def _oob(template: str, partial: str, context: dict) -> str:
    """A partial rendered for an out-of-band swap (its root element reads `oob`)."""
    return render_to_string(f"{template}#{partial}", {**context, "oob": True}).strip()
