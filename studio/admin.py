from django.contrib import admin

from studio.models import Price, UsageRecord


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = [
        "provider",
        "model",
        "kind",
        "input_per_mtok",
        "cached_input_per_mtok",
        "output_per_mtok",
        "per_second",
        "effective_date",
        "source",
    ]
    list_filter = ["kind", "provider"]
    search_fields = ["provider", "model", "source"]
    date_hierarchy = "effective_date"


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "provider",
        "model",
        "operation",
        "ok",
        "input_tokens",
        "cached_tokens",
        "output_tokens",
        "units",
        "cost_usd",
        "latency_ms",
        "drama_id",
        "take_id",
    ]
    list_filter = ["ok", "provider", "operation"]
    search_fields = ["model", "request_id", "error"]
    date_hierarchy = "created_at"
    # The ledger is a record of what happened: read it, never rewrite it.
    readonly_fields = [field.name for field in UsageRecord._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
