"""Who may do what to a drama: the one place views and consumers ask."""

from django.core.exceptions import PermissionDenied
from django.http import Http404

from dramas.models import Drama, Membership, Role


def membership_for(user, drama_id: int) -> Membership | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.select_related("drama").filter(drama_id=drama_id, user=user).first()


def get_drama_for(user, drama_id: int, *, role: Role = Role.VIEWER) -> tuple[Drama, Membership]:
    """The drama and the user's membership, or 404 for non-members and 403 below `role`.

    Non-members get 404, not 403, so drama ids do not leak to people outside a drama.
    """
    membership = membership_for(user, drama_id)
    if membership is None:
        raise Http404("No such drama.")
    if not Role(membership.role).allows(role):
        raise PermissionDenied(
            f"This needs the {Role(role).label.lower()} role; you are a "
            f"{Role(membership.role).label.lower()} on this drama."
        )
    return membership.drama, membership
