"""The keys of the page parts drawn once per state (`{% fragment %}`, studio/templatetags/
fragments.py): each names every value its part draws, from the rows the view has read, so a
cached part is never stale. A part whose drawing depends on the clock, or on a visitor's input,
has no key and is drawn every time."""

from dramas.models import Drama, Frame, Scene, Take
from studio.jobs.models import ACTIVE, Job
from studio.templatetags.fragments import fragment_key, row_values


def scene_card_key(*, scene: Scene, context: dict) -> str | None:
    """The chapter editor's key for `scene`'s card (`{% fragment %}`, studio/templatetags/
    fragments.py): every value the card draws, from the rows `editor_scenes` and
    `dialog_context` read and the page's context. None while the card is being edited."""
    if (
        getattr(context.get("editing_scene"), "id", None) == scene.id
        or context.get("new_line_scene_id") == scene.id
        or context.get("editing_line_id") is not None
    ):
        return None
    estimate = context.get("rewrite_estimate")
    lines = []
    for line in scene.lines.all():
        voice = getattr(line, "voice", None)
        audio = voice.audio if voice else None
        job = voice.job if voice else None
        lines.append(
            (
                row_values(line),
                line.display_speaker,
                voice and voice.key,
                audio and (audio.id, audio.provider, audio.model, audio.duration_s),
                job and (job.id, job.status, job.progress, job.last_error),
            )
        )
    return fragment_key(
        "scene-card",
        row_values(scene),
        getattr(scene, "has_takes", None),
        [(character.id, character.name) for character in scene.characters.all()],
        lines,
        context["drama"].id,
        bool(context.get("can_edit")),
        [(character.id, character.name) for character in context.get("characters", ())],
        estimate and estimate.text,
    )


def editor_form_keys(*, context: dict) -> dict[str, str]:
    """Keys of the chapter editor's empty forms (`{% fragment %}`): the new scene's, whose
    choices are the cast, and the writer's; a form with a visitor's input has none."""
    keys = {}
    if not context["new_scene_form"].is_bound:
        cast = [(character.id, character.name) for character in context["characters"]]
        keys["new_scene"] = fragment_key("new-scene-form", context["drama"].id, cast)
    generate_form = context.get("generate_form")
    if generate_form is not None and not generate_form.is_bound:
        keys["generate"] = fragment_key("generate-form", context["chapter"].id)
    return keys


def board_tile_key(*, scene: Scene, drama: Drama, can_edit: bool) -> str:
    """The drama board's key for a scene's tile (`{% fragment %}`): the scene with its cast and
    line count, its shown take with that take's job, its keyframe and round, its own job
    (`board_context` attaches them all) and the visitor's role."""
    take = scene.latest_take
    board = scene.board
    return fragment_key(
        "board-tile",
        drama.id,
        can_edit,
        row_values(scene),
        scene.line_count,
        [(character.id, character.name) for character in scene.characters.all()],
        take
        and (
            row_values(take),
            take.colour,
            take.threshold,
            take.never_found,
            take.live_job and row_values(take.live_job),
        ),
        board["chosen"] and row_values(board["chosen"]),
        board["round"] and row_values(board["round"]),
        scene.gated,
        scene.live_job and row_values(scene.live_job),
    )


def job_row_key(*, job: Job, drama: Drama, can_edit: bool) -> str | None:
    """The queue page's key for a settled job's row (`{% fragment %}`): its columns and the
    visitor's role. A queued or running job has none: its row shows the clock (a retry's
    wait, the time left), and moves live anyway."""
    if job.status in ACTIVE:
        return None
    return fragment_key("job-row", row_values(job), drama.id, can_edit)


def take_frames_key(*, take: Take, frames: list[Frame], can_edit: bool) -> str:
    """The take page's key for its frames (`{% fragment %}`): the take's state, each frame's
    row with its badges, the visitor's role (`decorate_frames` gives the frames)."""
    drawn = [(row_values(frame), frame.badges, frame.colour) for frame in frames]
    return fragment_key(
        "take-frames", take.scene.chapter.drama_id, take.id, take.status, can_edit, drawn
    )
