"""Admin for prices and the usage ledger: the changelist, a cost summary and a CSV export.

The summary and the export read the changelist's own filtered queryset (date hierarchy,
filters, search), so what finance sees on the summary is exactly the rows listed.
"""

import csv

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import BadRequest, PermissionDenied
from django.http import StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from studio import costs
from studio.models import Price, ProviderHealth, UsageRecord


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
        "per_request",
        "effective_date",
        "source",
    ]
    list_filter = ["kind", "provider"]
    search_fields = ["provider", "model", "source"]
    date_hierarchy = "effective_date"


class DramaFilter(admin.SimpleListFilter):
    title = "drama"
    parameter_name = "drama_id"

    def lookups(self, request, model_admin):
        ids = list(
            UsageRecord.objects.exclude(drama_id=None)
            .order_by("drama_id")
            .values_list("drama_id", flat=True)
            .distinct()
        )
        titles = costs.drama_titles(ids)
        return [("none", "No drama")] + [
            (str(i), f"#{i} {titles.get(i, '(deleted)')}") for i in ids
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "none":
            return queryset.filter(drama_id=None)
        if value and value.isdigit() and len(value) <= 18:
            return queryset.filter(drama_id=int(value))
        return queryset


class OutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [("ok", "Succeeded"), ("failed", "Failed")]

    def queryset(self, request, queryset):
        if self.value() in ("ok", "failed"):
            return queryset.filter(ok=self.value() == "ok")
        return queryset


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
        "request_id",
    ]
    list_filter = [OutcomeFilter, DramaFilter, "provider", "model", "operation"]
    search_fields = ["request_id", "model", "error"]
    date_hierarchy = "created_at"
    change_list_template = "admin/studio/usagerecord/change_list.html"
    list_per_page = 100
    # The ledger is a record of what happened: read it, never rewrite it.
    readonly_fields = [field.name for field in UsageRecord._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("summary/", view(self.summary_view), name="studio_usagerecord_summary"),
            path("export.csv", view(self.export_view), name="studio_usagerecord_export"),
            *super().get_urls(),
        ]

    def selection(self, request):
        """The rows the changelist shows for this request's filters, search and dates."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            return self.get_changelist_instance(request).get_queryset(request)
        except IncorrectLookupParameters as error:
            # As the changelist does for a hand-edited query string: refuse, do not crash.
            raise BadRequest("Unknown filter in the query string.") from error

    def summary_view(self, request):
        usage = self.selection(request)
        groups = {by: costs.totals(usage=usage, by=by) for by in ("drama", "provider", "model")}
        days = costs.totals(usage=usage, by="day")
        titles = costs.drama_titles([t.key["drama_id"] for t in groups["drama"]])
        for item in groups["drama"]:
            drama_id = item.key["drama_id"]
            item.title = "No drama" if drama_id is None else titles.get(drama_id, "(deleted)")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Cost summary",
            "query": request.GET.urlencode(),
            "filtered": bool(request.GET),
            "overall": costs.overall(usage=usage),
            "groups": groups,
            "days": days,
            "chart": costs.spend_chart(days=days),
            "what_if": costs.what_if(usage=usage),
            "priced_on": timezone.localdate(),
        }
        return TemplateResponse(request, "admin/studio/usagerecord/summary.html", context)

    def export_view(self, request):
        usage = self.selection(request)
        writer = csv.writer(_Echo())
        rows = costs.csv_rows(usage=usage.order_by("created_at", "id"))
        response = StreamingHttpResponse(
            (writer.writerow(row) for row in rows), content_type="text/csv; charset=utf-8"
        )
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = f'attachment; filename="usage-{stamp}.csv"'
        return response


class _Echo:
    """A file-like object whose write returns the line: csv.writer then feeds a stream."""

    def write(self, value: str) -> str:
        return value


@admin.register(ProviderHealth)
class ProviderHealthAdmin(admin.ModelAdmin):
    list_display = ["name", "process", "breaker", "updated_at"]
    readonly_fields = ["name", "process", "breaker", "snapshot", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
