from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from studio.health import health_check


@login_not_required
@never_cache
@require_GET
async def healthz(request):
    """Liveness and dependencies for load balancers and `make run`: 200 if usable, else 503."""
    report = await health_check()
    return JsonResponse(report.as_dict(), status=200 if report.healthy else 503)
