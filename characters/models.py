from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Lower

from characters.consistency import similarity_to_score


class VoiceProvider(models.TextChoices):
    """The speech service a character's voice id was chosen for."""

    STUDIO = "", "The studio's speech service"
    OFFLINE = "espeak-ng", "Offline voice (espeak-ng)"
    OPENAI = "openai", "OpenAI-compatible"
    ELEVENLABS = "elevenlabs", "ElevenLabs"


def voice_sample_upload_path(instance: "Character", filename: str) -> str:
    return f"voice_samples/{instance.pk}/{filename}"


class Character(models.Model):
    # A string reference: characters never imports the dramas package (DESIGN.md §2).
    drama = models.ForeignKey("dramas.Drama", on_delete=models.CASCADE, related_name="characters")
    name = models.CharField(max_length=100)
    appearance_notes = models.TextField(
        blank=True,
        max_length=2000,
        help_text="How they look: age, hair, build, wardrobe. Added to every render prompt.",
    )
    voice = models.CharField(max_length=200, blank=True, help_text="Voice notes for lip sync.")
    # The voice profile every line of theirs is spoken with (studio.providers.base.Voice).
    voice_provider = models.CharField(
        "voice service",
        max_length=20,
        choices=VoiceProvider,
        default=VoiceProvider.STUDIO,
        blank=True,
        help_text="The service the voice below belongs to. A service this studio is not set up "
        "for speaks with its own default voice instead, and the page says so.",
    )
    voice_id = models.CharField(
        "voice",
        max_length=100,
        blank=True,
        help_text="The service's voice (offline: an espeak-ng variant such as f3 or m2; "
        "ElevenLabs: a voice id); empty for its default voice, or, with a voice sample and "
        "ElevenLabs, a voice cloned from the sample.",
    )
    voice_language = models.CharField(
        "language", max_length=20, default="en", help_text="en, en-us, cmn, yue, es, fr, ..."
    )
    voice_speed = models.FloatField(
        "speed",
        default=1.0,
        validators=[MinValueValidator(0.5), MaxValueValidator(2.0)],
        help_text="0.5 to 2; 1 is the voice's own pace.",
    )
    voice_pitch = models.FloatField(
        "pitch",
        default=0.0,
        validators=[MinValueValidator(-12), MaxValueValidator(12)],
        help_text="Semitones, -12 to 12 (services without pitch ignore it).",
    )
    # A recording of the voice, for services that clone voices: a normalised mono WAV copy.
    voice_sample = models.FileField(upload_to=voice_sample_upload_path, blank=True)
    voice_sample_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    voice_sample_s = models.FloatField(null=True, blank=True, editable=False)
    # The sample the voice id was cloned from (sha256; "" for a voice chosen by hand): a new
    # sample makes the studio clone again.
    voice_cloned_from = models.CharField(max_length=64, blank=True, editable=False)
    # The profile: L2-normalised mean of the good references' face embeddings (float32 bytes).
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    embedding_model = models.CharField(max_length=100, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["drama", "name"]
        constraints = [
            models.UniqueConstraint(
                "drama",
                Lower("name"),
                name="character_name_per_drama",
                violation_error_message="This drama already has a character with this name.",
            )
        ]

    def __str__(self) -> str:
        return self.name

    # The properties below read `references.all()`, so a prefetch serves them all at once.

    @property
    def profile_references(self) -> list["ReferenceImage"]:
        """The references the profile is the mean of."""
        return [r for r in self.references.all() if r.quality == ReferenceQuality.GOOD]

    @property
    def flagged_references(self) -> list["ReferenceImage"]:
        return [r for r in self.references.all() if r.needs_attention]

    @property
    def has_profile(self) -> bool:
        return self.embedding is not None

    @property
    def reference_warnings(self) -> list[str]:
        """Short warnings for the drama board, worst first."""
        if not self.references.all():
            return []  # the board says "add one" already
        warnings = []
        if not self.profile_references:
            warnings.append("No usable face yet: renders cannot be checked.")
        flagged = self.flagged_references
        if flagged:
            labels = sorted({r.get_quality_display().lower() for r in flagged})
            warnings.append(
                f"{len(flagged)} reference{'s' if len(flagged) > 1 else ''} to check: "
                + ", ".join(labels)
            )
        return warnings


class ReferenceQuality(models.TextChoices):
    PENDING = "pending", "Not analysed yet"
    GOOD = "good", "Good"
    NO_FACE = "no_face", "No face found"
    SEVERAL_FACES = "several_faces", "Several faces"
    TOO_SMALL = "too_small", "Face too small"
    OUTLIER = "outlier", "May be a different person"


def reference_upload_path(instance: "ReferenceImage", filename: str) -> str:
    return f"references/{instance.character_id}/{instance.sha256[:16]}.jpg"


class ReferenceImage(models.Model):
    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="references")
    # The normalised copy: EXIF orientation applied, RGB, metadata stripped, JPEG.
    image = models.ImageField(upload_to=reference_upload_path)
    original_name = models.CharField(max_length=255)
    # sha256 of the uploaded bytes: the same file is stored once per character.
    sha256 = models.CharField(max_length=64)
    original_bytes = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    # The face the embedding comes from, in stored-image pixels.
    face_box = models.JSONField(null=True, blank=True, help_text="[left, top, right, bottom]")
    # Every detected face: {"box": [l, t, r, b], "score": detector confidence, "size": px}.
    faces = models.JSONField(default=list, blank=True)
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    # Cosine similarity to the mean of the character's other good references (None: no others).
    profile_similarity = models.FloatField(null=True, blank=True, editable=False)
    quality = models.CharField(
        max_length=20, choices=ReferenceQuality, default=ReferenceQuality.PENDING
    )
    quality_message = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["character", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["character", "sha256"], name="reference_once_per_character"
            )
        ]

    def __str__(self) -> str:
        return f"{self.character}: {self.original_name}"

    @property
    def needs_attention(self) -> bool:
        return self.quality not in (ReferenceQuality.GOOD, ReferenceQuality.PENDING)

    @property
    def profile_score(self) -> int | None:
        """Resemblance to the character's other references on the 0-100 scale."""
        if self.profile_similarity is None:
            return None
        return round(similarity_to_score(self.profile_similarity))

    @property
    def face_overlays(self) -> list[dict]:
        """Each detected face as x, y, w, h in image pixels, the embedded one marked `chosen`."""
        overlays = []
        for face in self.faces or []:
            left, top, right, bottom = face["box"]
            overlays.append(
                {
                    "x": left,
                    "y": top,
                    "w": right - left,
                    "h": bottom - top,
                    "chosen": face["box"] == self.face_box,
                }
            )
        return overlays
