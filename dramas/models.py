from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from characters.consistency import SHIPPED_THRESHOLD


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    EDITOR = "editor", "Editor"
    PRODUCER = "producer", "Producer"

    @property
    def rank(self) -> int:
        return ROLE_RANK[self.value]

    def allows(self, needed: "Role") -> bool:
        return self.rank >= Role(needed).rank


ROLE_RANK = {Role.VIEWER: 0, Role.EDITOR: 1, Role.PRODUCER: 2}


class Genre(models.TextChoices):
    ROMANCE = "romance", "Romance"
    REVENGE = "revenge", "Revenge"
    THRILLER = "thriller", "Thriller"
    MYSTERY = "mystery", "Mystery"
    FANTASY = "fantasy", "Fantasy"
    SCI_FI = "sci-fi", "Sci-fi"
    COMEDY = "comedy", "Comedy"
    FAMILY = "family", "Family"
    OTHER = "other", "Other"


class Aspect(models.TextChoices):
    VERTICAL = "9:16", "9:16 vertical"
    HORIZONTAL = "16:9", "16:9 horizontal"
    SQUARE = "1:1", "1:1 square"


class Drama(models.Model):
    title = models.CharField(max_length=200)
    logline = models.TextField(blank=True, max_length=2000)
    genre = models.CharField(max_length=20, choices=Genre, default=Genre.ROMANCE)
    style = models.CharField(
        max_length=200, blank=True, help_text="Visual style, e.g. 'photoreal, warm neon night'."
    )
    language = models.CharField(max_length=35, default="en", help_text="Dialog language code.")
    aspect = models.CharField(max_length=5, choices=Aspect, default=Aspect.VERTICAL)
    budget_usd = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        default=Decimal("50.00"),
        validators=[MinValueValidator(Decimal("0"))],
    )
    # On the producers' 0-100 face score scale (characters/consistency.py): a character in a
    # frame scoring below this does not look like themselves. Default: the shipped calibration.
    consistency_threshold = models.PositiveSmallIntegerField(
        default=SHIPPED_THRESHOLD,
        validators=[MinValueValidator(1), MaxValueValidator(99)],
        help_text=(
            f"Lowest face score (0-100) a character may get in a frame and still count as "
            f"themselves. {SHIPPED_THRESHOLD} is the calibrated default; higher is stricter."
        ),
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="dramas"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        return self.title


class Membership(models.Model):
    drama = models.ForeignKey(Drama, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["drama", "user"], name="one_membership_per_user")
        ]
        ordering = ["drama", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.drama} ({self.role})"


class ChapterStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    GENERATING = "generating", "Generating"
    READY = "ready", "Ready to render"
    APPROVED = "approved", "Approved"


class ChapterSource(models.TextChoices):
    WRITTEN = "written", "Written"
    GENERATED = "generated", "Generated"


class Chapter(models.Model):
    drama = models.ForeignKey(Drama, on_delete=models.CASCADE, related_name="chapters")
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    synopsis = models.TextField(blank=True, max_length=5000)
    status = models.CharField(max_length=12, choices=ChapterStatus, default=ChapterStatus.DRAFT)
    source = models.CharField(max_length=10, choices=ChapterSource, default=ChapterSource.WRITTEN)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["drama", "number"]
        constraints = [
            models.UniqueConstraint(fields=["drama", "number"], name="chapter_number_per_drama")
        ]

    def __str__(self) -> str:
        return f"{self.number}. {self.title}"

    @property
    def duration_s(self) -> float:
        return sum(scene.duration_s for scene in self.scenes.all())


class ChapterVersion(models.Model):
    """A kept copy of a chapter's whole script (title, synopsis, scenes, dialog).

    Versions are taken before anything replaces a chapter's script (restore, generation)
    and when a producer saves one, so a producer's text is never lost silently.
    """

    chapter = models.ForeignKey(Chapter, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    source = models.CharField(max_length=10, choices=ChapterSource, default=ChapterSource.WRITTEN)
    note = models.CharField(max_length=200, blank=True)
    script = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # What a generated version cost, as the usage ledger recorded it (empty for written ones).
    provider = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    # NULL when the model has no price in the Price table: unknown, never a silent 0.
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    warnings = models.JSONField(
        default=list, blank=True, help_text="What validation adjusted or flagged."
    )

    class Meta:
        ordering = ["chapter", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["chapter", "number"], name="version_number_per_chapter")
        ]

    def __str__(self) -> str:
        return f"{self.chapter} v{self.number}"


class TimeOfDay(models.TextChoices):
    DAWN = "dawn", "Dawn"
    DAY = "day", "Day"
    DUSK = "dusk", "Dusk"
    NIGHT = "night", "Night"


SCENE_MIN_S = 1
SCENE_MAX_S = 60


class Scene(models.Model):
    chapter = models.ForeignKey(Chapter, on_delete=models.CASCADE, related_name="scenes")
    order = models.PositiveIntegerField(default=0)
    location = models.CharField(max_length=200)
    time_of_day = models.CharField(max_length=5, choices=TimeOfDay, default=TimeOfDay.DAY)
    action = models.TextField(
        max_length=4000, help_text="What we see: the visual prompt for this scene."
    )
    camera = models.CharField(
        max_length=300, blank=True, help_text="Camera direction, e.g. 'slow push-in, close-up'."
    )
    duration_s = models.FloatField(
        default=5.0, validators=[MinValueValidator(SCENE_MIN_S), MaxValueValidator(SCENE_MAX_S)]
    )
    mood = models.CharField(max_length=100, blank=True)
    characters = models.ManyToManyField("characters.Character", blank=True, related_name="scenes")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["chapter", "order", "id"]

    def __str__(self) -> str:
        return f"Scene {self.order}: {self.location}"


class DialogLine(models.Model):
    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="lines")
    order = models.PositiveIntegerField(default=0)
    speaker = models.ForeignKey(
        "characters.Character",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="lines",
        help_text="Empty for narration or an unregistered speaker.",
    )
    # Kept beside the link: narration, a speaker not (yet) registered, or a deleted character.
    speaker_name = models.CharField(max_length=100, blank=True)
    line = models.TextField(max_length=1000)
    emotion = models.CharField(max_length=50, blank=True)

    class Meta:
        ordering = ["scene", "order", "id"]

    def __str__(self) -> str:
        return f"{self.display_speaker}: {self.line[:40]}"

    @property
    def display_speaker(self) -> str:
        if self.speaker_id:
            return self.speaker.name
        return self.speaker_name or "Narrator"
