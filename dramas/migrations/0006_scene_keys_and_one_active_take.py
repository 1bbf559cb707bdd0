# Scenes get a stable key and can be archived; a scene has at most one active take.

import secrets

import dramas.models
from django.conf import settings
from django.db import migrations, models

ACTIVE = ["queued", "waiting_for_provider", "rendering", "lipsync", "scoring"]


def give_each_scene_its_own_key(apps, schema_editor):
    # AddField gave every existing row the same default; keys must differ within a chapter.
    Scene = apps.get_model("dramas", "Scene")
    for scene in Scene.objects.only("id").iterator():
        Scene.objects.filter(id=scene.id).update(key=secrets.token_hex(6))


def keep_one_active_take_per_scene(apps, schema_editor):
    # Before the constraint, a double click could queue two renders of a scene: the newest
    # one goes on, the older ones are cancelled with their queued or running jobs.
    Take = apps.get_model("dramas", "Take")
    Job = apps.get_model("jobs", "Job")
    seen = set()
    for take in Take.objects.filter(status__in=ACTIVE).order_by("scene_id", "-number"):
        if take.scene_id not in seen:
            seen.add(take.scene_id)
            continue
        Take.objects.filter(id=take.id).update(
            status="cancelled", note="Cancelled: a newer render of this scene was queued."
        )
        if take.job_id:
            Job.objects.filter(id=take.job_id, status="queued").update(status="cancelled")
            Job.objects.filter(id=take.job_id, status="running").update(cancel_requested=True)


class Migration(migrations.Migration):

    dependencies = [
        ("characters", "0003_reference_faces"),
        ("dramas", "0005_chapter_stage_is_derived"),
        ("jobs", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="scene",
            options={"default_manager_name": "objects", "ordering": ["chapter", "order", "id"]},
        ),
        migrations.AddField(
            model_name="scene",
            name="archived_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="scene",
            name="key",
            field=models.CharField(
                default=dramas.models.new_scene_key, editable=False, max_length=32
            ),
        ),
        migrations.RunPython(give_each_scene_its_own_key, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="scene",
            constraint=models.UniqueConstraint(
                fields=("chapter", "key"), name="scene_key_per_chapter"
            ),
        ),
        migrations.RunPython(keep_one_active_take_per_scene, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="take",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status__in", ACTIVE)),
                fields=("scene",),
                name="one_active_take_per_scene",
            ),
        ),
    ]
