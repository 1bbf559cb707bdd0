"""A drama's spend against its budget, from the usage ledger.

The sum itself is the render pipeline's (`takes.drama_spent_usd`, also used by its budget
gate), so the producer's bar and the gate can never disagree.
"""

from dataclasses import dataclass
from decimal import Decimal

from dramas.models import Drama, Membership, Role
from dramas.takes import dramas_spent_usd

WARN_AT = Decimal("0.80")


@dataclass(frozen=True)
class Spend:
    spent_usd: Decimal
    budget_usd: Decimal
    unpriced_calls: int  # calls booked without a price: the spend is at least `spent_usd`

    @property
    def ratio(self) -> Decimal | None:
        return self.spent_usd / self.budget_usd if self.budget_usd > 0 else None

    @property
    def percent(self) -> int:
        """For the bar's width: 0-100 (over budget shows a full bar)."""
        ratio = self.ratio
        if ratio is None:
            return 100 if self.spent_usd > 0 else 0
        return int(min(ratio, Decimal(1)) * 100)

    @property
    def over(self) -> bool:
        return self.spent_usd > self.budget_usd

    @property
    def warning(self) -> bool:
        """80 % of the budget or more is spent."""
        ratio = self.ratio
        return (ratio is None and self.spent_usd > 0) or (ratio is not None and ratio >= WARN_AT)

    @property
    def remaining_usd(self) -> Decimal:
        return self.budget_usd - self.spent_usd


def drama_spend(*, drama: Drama) -> Spend:
    return dramas_spend(dramas=[drama])[drama.id]


def dramas_spend(*, dramas: list[Drama]) -> dict[int, Spend]:
    """Spend of several dramas with one query (the dashboard's cards)."""
    booked = dramas_spent_usd(drama_ids=[drama.id for drama in dramas])
    return {
        drama.id: Spend(
            spent_usd=booked[drama.id][0],
            budget_usd=drama.budget_usd,
            unpriced_calls=booked[drama.id][1],
        )
        for drama in dramas
    }


def can_see_provider_health(*, user) -> bool:
    """Staff, and editors or producers of any drama: they are the ones who queue work."""
    if not user.is_authenticated:
        return False
    if user.is_staff:
        return True
    return Membership.objects.filter(user=user, role__in=[Role.EDITOR, Role.PRODUCER]).exists()
