from django.contrib import admin

from studio.jobs.models import Job, QueuePause


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
