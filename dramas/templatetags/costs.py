"""`{% spend_bar drama %}`: a drama's spend vs budget bar (dashboard cards, board header)."""

from django import template

from dramas.costs import can_see_provider_health, drama_spend

register = template.Library()


@register.inclusion_tag("dramas/spend_bar.html")
def spend_bar(drama) -> dict:
    # A page listing many dramas reads their spend at once and hands it over as `drama.spend`.
    spend = getattr(drama, "spend", None)
    return {"spend": spend if spend is not None else drama_spend(drama=drama)}


@register.filter
def sees_provider_health(user) -> bool:
    """For the top bar's "Providers" link."""
    return can_see_provider_health(user=user)
