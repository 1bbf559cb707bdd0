"""The usage ledger and the price table.

Every provider call, success or failure, leaves a UsageRecord. Costs come from the Price row in
force on the day of the call; when there is none the cost is NULL (unknown), never 0.
`drama_id` and `take_id` are plain integers, not foreign keys: the platform app must not depend
on the dramas app (DESIGN.md §2), and a ledger outlives what it paid for.
"""

from django.db import models
from django.utils import timezone


class PriceKind(models.TextChoices):
    CHAT = "chat", "Chat (per million tokens)"
    VIDEO = "video", "Video (per second, per token or per request, by vendor)"
    LIPSYNC = "lipsync", "Lip sync (per second of output)"
    SPEECH = "speech", "Speech (per million characters of text)"
    IMAGE = "image", "Image (per image)"


class Price(models.Model):
    """A published unit price from `effective_date` until a later row for the same model."""

    provider = models.CharField(max_length=50, help_text="Lower case, e.g. 'openai', 'local'.")
    model = models.CharField(max_length=100, help_text="The model id sent to the provider.")
    kind = models.CharField(max_length=10, choices=PriceKind)
    input_per_mtok = models.DecimalField(
        "input $/MTok", max_digits=12, decimal_places=6, null=True, blank=True
    )
    cached_input_per_mtok = models.DecimalField(
        "cached input $/MTok",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Empty when the provider lists none: cached tokens are then priced as input.",
    )
    output_per_mtok = models.DecimalField(
        "output $/MTok", max_digits=12, decimal_places=6, null=True, blank=True
    )
    per_second = models.DecimalField(
        "$/second of output", max_digits=12, decimal_places=6, null=True, blank=True
    )
    # Vendors that bill a generation as one request whatever its length (some fal models).
    per_request = models.DecimalField(
        "$/request", max_digits=12, decimal_places=6, null=True, blank=True
    )
    # Text-to-speech services bill the characters of the text they speak.
    per_mchar = models.DecimalField(
        "$/million characters", max_digits=12, decimal_places=6, null=True, blank=True
    )
    source = models.CharField(max_length=300, help_text="Where the figure was published.")
    effective_date = models.DateField(help_text="The day from which this price applies.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "model", "kind", "-effective_date"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model", "kind", "effective_date"], name="one_price_per_day"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} ({self.kind}) from {self.effective_date}"


class UsageRecord(models.Model):
    provider = models.CharField(max_length=50, db_index=True)
    model = models.CharField(max_length=100, blank=True)
    operation = models.CharField(max_length=50, help_text="e.g. chat.complete, video.submit")
    drama_id = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    take_id = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    input_tokens = models.PositiveIntegerField(default=0, help_text="Including cached tokens.")
    cached_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    units = models.DecimalField(
        max_digits=12, decimal_places=3, default=0, help_text="Seconds of video or lip sync."
    )
    characters = models.PositiveIntegerField(default=0, help_text="Characters of text spoken.")
    cost_usd = models.DecimalField(
        max_digits=20,
        decimal_places=10,
        null=True,
        blank=True,
        help_text="Empty when no price was known at the time: unknown, not free.",
    )
    price = models.ForeignKey(
        Price, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Time to first token of a stream."
    )
    ok = models.BooleanField(default=True)
    error = models.CharField(max_length=500, blank=True)
    request_id = models.CharField(max_length=200, blank=True, db_index=True)
    once_per_request = models.BooleanField(
        default=False, help_text="Bills a whole remote job: at most one such row per request id."
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # The database, not a check before the insert, keeps two workers that see the same
            # job finished at once from billing it twice.
            models.UniqueConstraint(
                fields=["provider", "operation", "request_id"],
                condition=models.Q(once_per_request=True),
                name="one_bill_per_request",
            )
        ]

    def __str__(self) -> str:
        state = "ok" if self.ok else "failed"
        return f"{self.provider}/{self.model} {self.operation} {state}"


class ProviderHealth(models.Model):
    """The last health snapshot one process published for one provider guard.

    Breakers, buckets and latency windows live in the memory of the process that calls the
    provider (a `studio_worker`, or `manage.py studio` with its embedded worker). Each worker
    writes its guards' snapshots here every few seconds, so the health panel, served by any web
    process, shows what the workers see, with its age.
    """

    process = models.CharField(max_length=200, help_text="The worker that reported it.")
    name = models.CharField(max_length=100, help_text="role:provider, e.g. video:runway")
    breaker = models.CharField(max_length=20)
    snapshot = models.JSONField(default=dict)
    updated_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name", "process"]
        verbose_name_plural = "provider health"
        constraints = [
            models.UniqueConstraint(fields=["process", "name"], name="one_health_row_per_guard")
        ]

    def __str__(self) -> str:
        return f"{self.name} @ {self.process}: {self.breaker}"
