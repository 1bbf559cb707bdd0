from django.urls import path, register_converter

from dramas.views import (
    chapters,
    characters,
    costs,
    cut,
    dramas,
    generation,
    queue,
    storyboard,
    takes,
)


class IdConverter:
    """A database id: at most 18 digits, so a giant number is a 404, not an overflow (500)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

D = "dramas/<id:drama_id>/"

urlpatterns = [
    path("", dramas.dashboard, name="dashboard"),
    path("dramas/new/", dramas.drama_create, name="drama_create"),
    path(D, dramas.drama_board, name="drama_board"),
    path(D + "settings/", dramas.drama_edit, name="drama_edit"),
    path(D + "delete/", dramas.drama_delete, name="drama_delete"),
    path(D + "members/", dramas.drama_members, name="drama_members"),
    path(
        D + "members/<id:membership_id>/remove/",
        dramas.drama_member_remove,
        name="drama_member_remove",
    ),
    # Characters and their reference images
    path(D + "characters/new/", characters.character_create, name="character_create"),
    path(D + "characters/<id:character_id>/", characters.character_detail, name="character_detail"),
    path(
        D + "characters/<id:character_id>/edit/", characters.character_edit, name="character_edit"
    ),
    path(
        D + "characters/<id:character_id>/delete/",
        characters.character_delete,
        name="character_delete",
    ),
    path(
        D + "characters/<id:character_id>/voice-preview.wav",
        characters.character_voice_preview,
        name="character_voice_preview",
    ),
    path(
        D + "characters/<id:character_id>/references/",
        characters.reference_upload,
        name="reference_upload",
    ),
    path(
        D + "characters/<id:character_id>/references/<id:reference_id>/image",
        characters.reference_image,
        name="reference_image",
    ),
    path(
        D + "characters/<id:character_id>/references/<id:reference_id>/delete/",
        characters.reference_delete,
        name="reference_delete",
    ),
    # Chapters, scenes, dialog lines, versions
    path(D + "chapters/new/", chapters.chapter_create, name="chapter_create"),
    path(D + "chapters/<id:chapter_id>/", chapters.chapter_editor, name="chapter_editor"),
    path(D + "chapters/<id:chapter_id>/edit/", chapters.chapter_edit, name="chapter_edit"),
    path(D + "chapters/<id:chapter_id>/delete/", chapters.chapter_delete, name="chapter_delete"),
    path(D + "chapters/<id:chapter_id>/scenes/new/", chapters.scene_create, name="scene_create"),
    path(
        D + "chapters/<id:chapter_id>/scenes/reorder/",
        chapters.scenes_reorder,
        name="scenes_reorder",
    ),
    path(
        D + "chapters/<id:chapter_id>/versions/",
        chapters.chapter_versions,
        name="chapter_versions",
    ),
    path(
        D + "chapters/<id:chapter_id>/versions/<id:version_id>/",
        chapters.chapter_version_detail,
        name="chapter_version_detail",
    ),
    path(
        D + "chapters/<id:chapter_id>/versions/<id:version_id>/restore/",
        chapters.chapter_version_restore,
        name="chapter_version_restore",
    ),
    # Writing with the chapter writer (an LLM or the offline draft writer)
    path(D + "chapters/generate/", generation.chapter_generate_new, name="chapter_generate_new"),
    path(
        D + "chapters/<id:chapter_id>/generate/",
        generation.chapter_generate,
        name="chapter_generate",
    ),
    path(
        D + "chapters/<id:chapter_id>/generate/estimate/",
        generation.generation_estimate,
        name="generation_estimate",
    ),
    path(
        D + "chapters/<id:chapter_id>/generate/<id:job_id>/cancel/",
        generation.generation_cancel,
        name="generation_cancel",
    ),
    path(D + "scenes/<id:scene_id>/rewrite/", generation.scene_rewrite, name="scene_rewrite"),
    path(D + "scenes/<id:scene_id>/", chapters.scene_card, name="scene_card"),
    path(D + "scenes/<id:scene_id>/edit/", chapters.scene_edit, name="scene_edit"),
    path(D + "scenes/<id:scene_id>/delete/", chapters.scene_delete, name="scene_delete"),
    path(D + "scenes/<id:scene_id>/move/", chapters.scene_move, name="scene_move"),
    path(D + "scenes/<id:scene_id>/lines/new/", chapters.line_create, name="line_create"),
    path(D + "lines/<id:line_id>/edit/", chapters.line_edit, name="line_edit"),
    path(D + "lines/<id:line_id>/delete/", chapters.line_delete, name="line_delete"),
    path(D + "lines/<id:line_id>/move/", chapters.line_move, name="line_move"),
    # Voicing the dialog ahead of a render, and scenes lengthened to hold it (with consent)
    path(D + "chapters/<id:chapter_id>/voice/", chapters.chapter_voice, name="chapter_voice"),
    path(D + "lines/<id:line_id>/voice/", chapters.line_voice, name="line_voice"),
    path(
        D + "chapters/<id:chapter_id>/lengthen/",
        chapters.chapter_lengthen,
        name="chapter_lengthen",
    ),
    # The cut: the chapter as an episode, its export and the package's files
    path(
        D + "chapters/<id:chapter_id>/storyboard/",
        storyboard.chapter_storyboard,
        name="chapter_storyboard",
    ),
    path(
        D + "chapters/<id:chapter_id>/storyboard.png",
        storyboard.chapter_storyboard_sheet,
        name="chapter_storyboard_sheet",
    ),
    path(
        D + "chapters/<id:chapter_id>/keyframes/",
        storyboard.chapter_keyframes,
        name="chapter_keyframes",
    ),
    path(D + "scenes/<id:scene_id>/keyframes/", storyboard.scene_keyframes, name="scene_keyframes"),
    path(
        D + "keyframes/<id:keyframe_id>/choose/",
        storyboard.keyframe_choose,
        name="keyframe_choose",
    ),
    path(D + "keyframes/<id:keyframe_id>/image", storyboard.keyframe_image, name="keyframe_image"),
    path(D + "chapters/<id:chapter_id>/cut/", cut.chapter_cut, name="chapter_cut"),
    path(
        D + "chapters/<id:chapter_id>/cut/scenes/<id:scene_id>/",
        cut.cut_entry_update,
        name="cut_entry_update",
    ),
    path(D + "chapters/<id:chapter_id>/export/", cut.chapter_export, name="chapter_export"),
    path(D + "chapters/<id:chapter_id>/cover/", cut.chapter_cover, name="chapter_cover"),
    path(D + "exports/<id:export_id>/<path:name>", cut.export_file, name="export_file"),
    # The drama's job queue
    path(D + "queue/", queue.drama_queue, name="drama_queue"),
    path(D + "queue/pause/", queue.queue_pause, name="queue_pause"),
    path(D + "queue/resume/", queue.queue_resume, name="queue_resume"),
    path(D + "queue/<id:job_id>/cancel/", queue.job_cancel, name="job_cancel"),
    path(D + "queue/<id:job_id>/retry/", queue.job_retry, name="job_retry"),
    path(D + "queue/<id:job_id>/bump/", queue.job_bump, name="job_bump"),
    path(D + "chapters/<id:chapter_id>/check/", queue.chapter_check, name="chapter_check"),
    # Rendering and review
    path(D + "render/", takes.render_drama, name="render_drama"),
    path(D + "chapters/<id:chapter_id>/render/", takes.render_chapter, name="render_chapter"),
    path(
        D + "chapters/<id:chapter_id>/approve-consistent/",
        takes.chapter_approve_consistent,
        name="chapter_approve_consistent",
    ),
    path(D + "scenes/<id:scene_id>/render/", takes.render_scene, name="render_scene"),
    path(D + "scenes/<id:scene_id>/takes/", takes.scene_takes, name="scene_takes"),
    path(D + "takes/<id:take_id>/", takes.take_review, name="take_review"),
    path(D + "takes/<id:take_id>/review/", takes.take_review_action, name="take_review_action"),
    path(D + "takes/<id:take_id>/regenerate/", takes.take_regenerate, name="take_regenerate"),
    path(D + "takes/<id:take_id>/cancel/", takes.take_cancel, name="take_cancel"),
    path(D + "takes/<id:take_id>/video.mp4", takes.take_video, name="take_video"),
    path(D + "takes/<id:take_id>/poster.jpg", takes.take_poster, name="take_poster"),
    path(
        D + "takes/<id:take_id>/frames/<id:frame_id>/review/",
        takes.frame_review_action,
        name="frame_review_action",
    ),
    path(
        D + "takes/<id:take_id>/frames/<id:frame_id>/image.jpg",
        takes.frame_image,
        name="frame_image",
    ),
    # Costs (producers) and provider health (editors)
    path(D + "costs/", costs.drama_costs, name="drama_costs"),
    path("providers/health/", costs.provider_health_panel, name="provider_health"),
]
