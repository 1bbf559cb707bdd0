from django.urls import path

from dramas.views import chapters, characters, dramas

D = "dramas/<int:drama_id>/"

urlpatterns = [
    path("", dramas.dashboard, name="dashboard"),
    path("dramas/new/", dramas.drama_create, name="drama_create"),
    path(D, dramas.drama_board, name="drama_board"),
    path(D + "settings/", dramas.drama_edit, name="drama_edit"),
    path(D + "delete/", dramas.drama_delete, name="drama_delete"),
    path(D + "members/", dramas.drama_members, name="drama_members"),
    path(
        D + "members/<int:membership_id>/remove/",
        dramas.drama_member_remove,
        name="drama_member_remove",
    ),
    # Characters and their reference images
    path(D + "characters/new/", characters.character_create, name="character_create"),
    path(
        D + "characters/<int:character_id>/", characters.character_detail, name="character_detail"
    ),
    path(
        D + "characters/<int:character_id>/edit/", characters.character_edit, name="character_edit"
    ),
    path(
        D + "characters/<int:character_id>/delete/",
        characters.character_delete,
        name="character_delete",
    ),
    path(
        D + "characters/<int:character_id>/references/",
        characters.reference_upload,
        name="reference_upload",
    ),
    path(
        D + "characters/<int:character_id>/references/<int:reference_id>/image",
        characters.reference_image,
        name="reference_image",
    ),
    path(
        D + "characters/<int:character_id>/references/<int:reference_id>/delete/",
        characters.reference_delete,
        name="reference_delete",
    ),
    # Chapters, scenes, dialog lines, versions
    path(D + "chapters/new/", chapters.chapter_create, name="chapter_create"),
    path(D + "chapters/<int:chapter_id>/", chapters.chapter_editor, name="chapter_editor"),
    path(D + "chapters/<int:chapter_id>/edit/", chapters.chapter_edit, name="chapter_edit"),
    path(D + "chapters/<int:chapter_id>/delete/", chapters.chapter_delete, name="chapter_delete"),
    path(D + "chapters/<int:chapter_id>/scenes/new/", chapters.scene_create, name="scene_create"),
    path(
        D + "chapters/<int:chapter_id>/scenes/reorder/",
        chapters.scenes_reorder,
        name="scenes_reorder",
    ),
    path(
        D + "chapters/<int:chapter_id>/versions/",
        chapters.chapter_versions,
        name="chapter_versions",
    ),
    path(
        D + "chapters/<int:chapter_id>/versions/<int:version_id>/",
        chapters.chapter_version_detail,
        name="chapter_version_detail",
    ),
    path(
        D + "chapters/<int:chapter_id>/versions/<int:version_id>/restore/",
        chapters.chapter_version_restore,
        name="chapter_version_restore",
    ),
    path(D + "scenes/<int:scene_id>/", chapters.scene_card, name="scene_card"),
    path(D + "scenes/<int:scene_id>/edit/", chapters.scene_edit, name="scene_edit"),
    path(D + "scenes/<int:scene_id>/delete/", chapters.scene_delete, name="scene_delete"),
    path(D + "scenes/<int:scene_id>/move/", chapters.scene_move, name="scene_move"),
    path(D + "scenes/<int:scene_id>/lines/new/", chapters.line_create, name="line_create"),
    path(D + "lines/<int:line_id>/edit/", chapters.line_edit, name="line_edit"),
    path(D + "lines/<int:line_id>/delete/", chapters.line_delete, name="line_delete"),
    path(D + "lines/<int:line_id>/move/", chapters.line_move, name="line_move"),
]
