"""The producer's cost page for a drama, and the provider health panel for editors."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from dramas.costs import can_see_provider_health, drama_spend
from dramas.keyframes import gate_savings
from dramas.models import Role
from dramas.views.helpers import drama_view
from studio import costs, provider_health
from studio.models import UsageRecord

RECENT = 25
HEALTH = "dramas/provider_health.html"


@drama_view(read=Role.PRODUCER, write=Role.PRODUCER)
@require_http_methods(["GET"])
def drama_costs(request, drama):
    usage = UsageRecord.objects.filter(drama_id=drama.id)
    context = {
        "drama": drama,
        "spend": drama_spend(drama=drama),
        "storyboard": gate_savings(drama=drama),
        "overall": costs.overall(usage=usage),
        "groups": [
            ("Provider", costs.totals(usage=usage, by="provider")),
            ("Model", costs.totals(usage=usage, by="model")),
            ("Operation", costs.totals(usage=usage, by="operation")),
        ],
        "recent": usage.order_by("-created_at", "-id")[:RECENT],
    }
    return render(request, "dramas/costs.html", context)


@login_required
@require_http_methods(["GET"])
def provider_health_panel(request):
    if not can_see_provider_health(user=request.user):
        raise PermissionDenied("The provider health panel is for editors and producers.")
    return render(request, HEALTH, provider_health.panel())
