from django.contrib import admin

from studio.jobs.models import Job, QueuePause, WorkerBeat


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """For operators: find stuck or failing work across dramas. Producers use the queue page."""

    list_display = ["id", "kind", "label", "drama_id", "status", "priority", "attempts"]
    list_display += ["progress", "lease_owner", "created_at", "finished_at"]
    list_filter = ["status", "kind"]
    search_fields = ["label", "kind", "last_error", "lease_owner"]
    ordering = ["-id"]
    readonly_fields = ["created_at", "started_at", "finished_at", "lease_owner"]


@admin.register(QueuePause)
class QueuePauseAdmin(admin.ModelAdmin):
    list_display = ["drama_id", "paused_at"]


@admin.register(WorkerBeat)
class WorkerBeatAdmin(admin.ModelAdmin):
    """Which workers are alive where (written by the workers themselves, so read-only)."""

    list_display = ["owner", "name", "running", "concurrency", "started_at", "beat_at"]
    ordering = ["-beat_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
