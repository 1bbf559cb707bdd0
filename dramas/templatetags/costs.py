"""`{% spend_bar drama %}`: a drama's spend vs budget bar (dashboard cards, board header)."""

from django import template

from dramas.costs import can_see_provider_health, drama_spend

register = template.Library()


@register.inclusion_tag("dramas/spend_bar.html")
def spend_bar(drama) -> dict:
    return {"spend": drama_spend(drama=drama)}


@register.filter
def sees_provider_health(user) -> bool:
    """For the top bar's "Providers" link."""
    return can_see_provider_health(user=user)
