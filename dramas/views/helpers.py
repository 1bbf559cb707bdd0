"""Small helpers every studio view uses: membership checks and htmx-aware responses."""

from functools import wraps

from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render

from dramas.access import get_drama_for
from dramas.models import Role

READ_METHODS = {"GET", "HEAD", "OPTIONS"}
INVALID = 422  # the form is shown again with its errors; htmx is configured to swap it


def drama_view(*, read: Role = Role.VIEWER, write: Role = Role.EDITOR):
    """Load the drama named by `drama_id` for the user, or 404 (non-member) / 403 (role).

    Reads (GET) need `read`, anything else needs `write`. The roles are kept on the view so
    the permission-matrix test can check every route against them.
    """

    def decorate(view):
        @wraps(view)
        def wrapper(request, drama_id, *args, **kwargs):
            needed = read if request.method in READ_METHODS else write
            drama, membership = get_drama_for(request.user, drama_id, role=needed)
            request.drama = drama
            request.membership = membership
            return view(request, drama, *args, **kwargs)

        wrapper.drama_roles = {"read": read, "write": write}
        return wrapper

    return decorate


def can(request, role: Role) -> bool:
    return Role(request.membership.role).allows(role)


def done(request, url: str, *, partial: str | None = None, context: dict | None = None):
    """After a successful write: the fresh fragment for htmx, a redirect for a plain form."""
    if request.htmx and partial:
        return render(request, partial, context or {})
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


def add_errors(form, error: ValidationError) -> None:
    """Put a service's ValidationError on the form it came from (field or non-field)."""
    if hasattr(error, "error_dict"):
        for field, messages in error.message_dict.items():
            form.add_error(field if field in form.fields else None, messages)
    else:
        form.add_error(None, error.messages)
