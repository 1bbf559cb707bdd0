import secrets
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
    # A take scoring below the threshold is rendered again with a new seed, up to
    # `max_attempts` takes per scene and within the budget.
    auto_regenerate = models.BooleanField(
        default=False,
        help_text="Render a take again with a new seed when it scores below the threshold.",
    )
    max_attempts = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text="Most takes of one scene that auto-regenerate may reach.",
    )
    # Storyboard keyframes (dramas/keyframes.py): a few stills per scene, scored by the face
    # engine before any video is paid for; the chosen one is the render's first frame.
    keyframe_candidates = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(6)],
        help_text="Keyframe candidates generated per scene each time (each billed as an image).",
    )
    keyframe_gate = models.BooleanField(
        default=True,
        help_text=(
            "Render a scene that has keyframes only once its chosen keyframe is consistent "
            "(a producer can still render it anyway)."
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
    """A chapter's stage, derived from its scenes, takes and writer jobs (dramas/stages.py):
    never stored, so nothing can leave it behind."""

    DRAFT = "draft", "Draft"
    GENERATING = "generating", "Generating"
    READY = "ready", "Ready to render"
    APPROVED = "approved", "Approved"
    EXPORTED = "exported", "Exported"


class ChapterSource(models.TextChoices):
    WRITTEN = "written", "Written"
    GENERATED = "generated", "Generated"


class Chapter(models.Model):
    drama = models.ForeignKey(Drama, on_delete=models.CASCADE, related_name="chapters")
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    synopsis = models.TextField(blank=True, max_length=5000)
    source = models.CharField(max_length=10, choices=ChapterSource, default=ChapterSource.WRITTEN)
    # The episode's cover, picked on the Cut page (none: the cut's best-scoring frame).
    cover_frame = models.ForeignKey(
        "Frame", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
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
SCENE_KEY_LENGTH = 32


def new_scene_key() -> str:
    return secrets.token_hex(6)


class LiveScenes(models.Manager):
    """The scenes of the chapters' current scripts: what every page and render sees. Archived
    scenes (gone from the script, kept with their takes) are reached through `all_objects`."""

    def get_queryset(self):
        return super().get_queryset().filter(archived_at__isnull=True)


class Scene(models.Model):
    chapter = models.ForeignKey(Chapter, on_delete=models.CASCADE, related_name="scenes")
    # Who the scene is across script versions: a replaced script updates the scene with the
    # same key in place, so its takes stay its takes (dramas.services.chapter_script_replace).
    key = models.CharField(max_length=SCENE_KEY_LENGTH, default=new_scene_key, editable=False)
    # Set when a new script no longer has the scene: hidden, never deleted, back on restore.
    archived_at = models.DateTimeField(null=True, blank=True)
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

    # Archived scenes too (cascades and a take's `scene` use the plain base manager anyway).
    all_objects = models.Manager()
    objects = LiveScenes()

    class Meta:
        ordering = ["chapter", "order", "id"]
        default_manager_name = "objects"
        constraints = [
            models.UniqueConstraint(fields=["chapter", "key"], name="scene_key_per_chapter")
        ]

    def __str__(self) -> str:
        return f"Scene {self.order}: {self.location}"

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


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


# --- Rendering: takes, their sampled frames, and review -----------------------------------------


class SpeechOwner(models.TextChoices):
    STUDIO = "studio", "Studio dialog track"
    VIDEO = "video", "Video service's own audio"


class LineAudio(models.Model):
    """One spoken line, kept by a hash of everything that made it (text, voice profile,
    service, model): an unchanged line is never synthesised, or paid for, twice."""

    key = models.CharField(max_length=64, unique=True)
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=100)
    text = models.TextField(max_length=4000)
    voice = models.JSONField(default=dict, help_text="The voice profile it was spoken with.")
    audio = models.FileField(upload_to="line_audio/")
    sample_rate = models.PositiveIntegerField()
    duration_s = models.FloatField()
    words = models.JSONField(default=list, help_text="[text, start_s, end_s] per word.")
    timed = models.BooleanField(default=True, help_text="False: timings estimated from text.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}: {self.text[:40]}"


class TakeStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    WAITING = "waiting_for_provider", "Waiting for provider"
    RENDERING = "rendering", "Rendering"
    LIPSYNC = "lipsync", "Lip sync"
    SCORING = "scoring", "Scoring"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


# A take has ended (done, failed or cancelled) or is still on its way: the one definition of
# "active". An active take holds its estimate against the budget, keeps batch renders off its
# scene, and can be cancelled.
TAKE_FINISHED = (TakeStatus.DONE, TakeStatus.FAILED, TakeStatus.CANCELLED)
TAKE_ACTIVE = tuple(status for status in TakeStatus if status not in TAKE_FINISHED)


class Verdict(models.TextChoices):
    NONE = "", "Not scored"
    ACCEPT = "accept", "Consistent"
    REJECT = "reject", "Inconsistent"


class ReviewState(models.TextChoices):
    NONE = "", "Not reviewed"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


def _tokened(filename: str) -> str:
    # A fresh name on every save: a re-rendered video or frame never takes an old file's name,
    # so copies cached by name (studio.media, object storage) can never go stale.
    stem, dot, extension = filename.rpartition(".")
    if not dot:
        stem, extension = filename, ""
    return f"{stem}-{secrets.token_hex(4)}{dot}{extension}"


def take_upload_path(instance: "Take", filename: str) -> str:
    return f"takes/{instance.scene.chapter.drama_id}/{instance.id}/{_tokened(filename)}"


def frame_upload_path(instance: "Frame", filename: str) -> str:
    take = instance.take
    return f"takes/{take.scene.chapter.drama_id}/{take.id}/frames/{_tokened(filename)}"


class Take(models.Model):
    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="takes")
    number = models.PositiveIntegerField(help_text="Attempt number within the scene.")
    status = models.CharField(max_length=24, choices=TakeStatus, default=TakeStatus.QUEUED)
    priority = models.IntegerField(default=0)
    progress = models.FloatField(default=0.0, help_text="0 to 1.")
    note = models.CharField(max_length=300, blank=True, help_text="What the pipeline is doing.")
    provider = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=100, blank=True)
    seed = models.BigIntegerField(default=0)
    # Empty until the pipeline builds it; a regenerate may set an edited prompt beforehand.
    prompt = models.TextField(blank=True, max_length=8000)
    prompt_edited = models.BooleanField(default=False)
    references = models.JSONField(default=list, blank=True)
    # Saved before polling, so a restarted worker polls this job instead of submitting again.
    remote_handle = models.JSONField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=80, unique=True)
    video = models.FileField(upload_to=take_upload_path, blank=True)
    poster = models.FileField(upload_to=take_upload_path, blank=True)
    lipsync_note = models.CharField(max_length=300, blank=True)
    # The video service's render as it came, kept when lip sync replaced `video` (paid for,
    # and what a producer compares the sync against).
    # The storyboard keyframe the render started from (sent as its first frame), if any.
    keyframe = models.ForeignKey(
        "Keyframe", on_delete=models.SET_NULL, null=True, blank=True, related_name="takes"
    )
    # Rendered although the scene's keyframe failed the consistency gate: a producer's call.
    gate_override = models.BooleanField(default=False)
    unsynced_video = models.FileField(upload_to=take_upload_path, blank=True)
    # Who speaks the dialog in this take: the studio's dialog track (speech per line, mixed and
    # muxed into the video, then lip sync) or the video service's own audio; empty: no dialog.
    speech_owner = models.CharField(max_length=10, choices=SpeechOwner, blank=True, default="")
    # The dialog track as placed: one entry per line (line id, speaker, text, start_s, end_s,
    # words, the LineAudio key), in order.
    dialog_track = models.JSONField(default=list, blank=True)
    consistency = models.JSONField(default=dict, blank=True)
    verdict = models.CharField(max_length=10, choices=Verdict, blank=True, default="")
    score = models.FloatField(null=True, blank=True, help_text="Worst frame's worst character.")
    estimate_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # From the usage ledger; NULL while unknown (no price) or not booked yet.
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    error = models.TextField(blank=True)
    review_state = models.CharField(max_length=10, choices=ReviewState, blank=True, default="")
    locked = models.BooleanField(default=False, help_text="Approved: batch renders skip it.")
    job_id = models.BigIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scene", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["scene", "number"], name="take_number_per_scene"),
            # Double clicks and concurrent batch renders queue one paid render, not two.
            models.UniqueConstraint(
                fields=["scene"],
                condition=models.Q(status__in=[status.value for status in TAKE_ACTIVE]),
                name="one_active_take_per_scene",
            ),
        ]
        indexes = [models.Index(fields=["status"], name="take_status")]

    def __str__(self) -> str:
        return f"{self.scene} take {self.number}"

    @property
    def progress_percent(self) -> int:
        return round(max(0.0, min(1.0, self.progress)) * 100)

    @property
    def active(self) -> bool:
        return self.status in TAKE_ACTIVE


class Frame(models.Model):
    take = models.ForeignKey(Take, on_delete=models.CASCADE, related_name="frames")
    index = models.PositiveIntegerField()
    time_s = models.FloatField()
    image = models.FileField(upload_to=frame_upload_path)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    # characters.consistency.FrameScore.to_dict(): per-character score, verdict and face box.
    scores = models.JSONField(default=dict, blank=True)
    verdict = models.CharField(max_length=10, choices=Verdict, blank=True, default="")
    score = models.FloatField(null=True, blank=True)
    review_state = models.CharField(max_length=10, choices=ReviewState, blank=True, default="")
    comment = models.TextField(blank=True, max_length=2000)

    class Meta:
        ordering = ["take", "index"]
        constraints = [
            models.UniqueConstraint(fields=["take", "index"], name="frame_index_per_take")
        ]

    def __str__(self) -> str:
        return f"{self.take} frame {self.index}"


class ReviewAction(models.TextChoices):
    APPROVE = "approve", "Approved"
    REJECT = "reject", "Rejected"
    REGENERATE = "regenerate", "Regenerated"
    COMMENT = "comment", "Commented"


class Review(models.Model):
    take = models.ForeignKey(Take, on_delete=models.CASCADE, related_name="reviews")
    frame = models.ForeignKey(
        Frame, on_delete=models.CASCADE, null=True, blank=True, related_name="reviews"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    action = models.CharField(max_length=12, choices=ReviewAction)
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        target = f"frame {self.frame.index}" if self.frame_id else "take"
        return f"{self.user} {self.action} {target} of {self.take}"


# --- The cut and its exports (dramas/delivery/) ------------------------------------------------


class Transition(models.TextChoices):
    CUT = "cut", "Cut"
    FADE = "fade", "Fade through black"
    DISSOLVE = "dissolve", "Dissolve"


class CutEntry(models.Model):
    """What the chapter's cut plays for one scene: a chosen take (none: the scene's approved
    take), its in and out points, and the transition into the next scene. A scene without a
    row plays its approved take whole, with a cut."""

    scene = models.OneToOneField(Scene, on_delete=models.CASCADE, related_name="cut_entry")
    take = models.ForeignKey(
        Take, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    in_s = models.FloatField(default=0.0, validators=[MinValueValidator(0)])
    out_s = models.FloatField(
        null=True, blank=True, help_text="Seconds into the take; empty: its end."
    )
    transition = models.CharField(max_length=10, choices=Transition, default=Transition.CUT)
    transition_s = models.FloatField(
        default=0.5, validators=[MinValueValidator(0), MaxValueValidator(2)]
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Cut entry of {self.scene}"


class ExportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Exporting"
    DONE = "done", "Exported"
    FAILED = "failed", "Failed"


def export_folder(chapter: "Chapter", input_hash: str) -> str:
    return f"exports/{chapter.drama_id}/{chapter.id}/{input_hash[:16]}"


class Export(models.Model):
    """One delivery package of a chapter's cut, identified by the hash of everything that went
    in: an unchanged cut is never exported twice."""

    chapter = models.ForeignKey(Chapter, on_delete=models.CASCADE, related_name="exports")
    input_hash = models.CharField(max_length=64, db_index=True)
    inputs = models.JSONField(default=dict, blank=True, help_text="What the hash was made of.")
    status = models.CharField(max_length=10, choices=ExportStatus, default=ExportStatus.QUEUED)
    progress = models.FloatField(default=0.0)
    note = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    job_id = models.BigIntegerField(null=True, blank=True)
    folder = models.CharField(max_length=200, blank=True, help_text="Storage prefix of its files.")
    # name -> {"sha256", "bytes", "duration_s"?, "width"?, "height"?}: the manifest's files.
    files = models.JSONField(default=dict, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    loudness_target_lufs = models.FloatField(default=-14.0)
    loudness_lufs = models.FloatField(null=True, blank=True)
    true_peak_dbtp = models.FloatField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One package per input hash that is on its way or done; failed ones may repeat.
            models.UniqueConstraint(
                fields=["chapter", "input_hash"],
                condition=~models.Q(status="failed"),
                name="one_export_per_input",
            )
        ]

    def __str__(self) -> str:
        return f"Export {self.input_hash[:8]} of {self.chapter}"


# --- Storyboard keyframes ------------------------------------------------------------------------


def keyframe_upload_path(instance: "Keyframe", filename: str) -> str:
    scene = instance.round.scene
    return f"keyframes/{scene.chapter.drama_id}/{scene.id}/{_tokened(filename)}"


class KeyframeStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    GENERATING = "generating", "Generating"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


KEYFRAME_ACTIVE = (KeyframeStatus.QUEUED, KeyframeStatus.GENERATING)


class KeyframeRound(models.Model):
    """One request for a scene's keyframes: N candidates from one prompt, generated by one
    job. The round remembers whether it found a consistent candidate: a round without one,
    under the gate, is a video render the studio did not pay for."""

    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="keyframe_rounds")
    number = models.PositiveIntegerField()
    prompt = models.TextField(max_length=8000)
    prompt_edited = models.BooleanField(default=False)
    candidates = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=12, choices=KeyframeStatus, default=KeyframeStatus.QUEUED)
    provider = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=100, blank=True)
    estimate_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # Set when the round ends: a consistent candidate was found, or not (None: nobody to check).
    consistent = models.BooleanField(null=True)
    # The video render the gate kept from being paid for (the scene's render estimate then),
    # when the round found no consistent candidate with the gate on.
    render_avoided_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    error = models.TextField(blank=True)
    job_id = models.BigIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["scene", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["scene", "number"], name="keyframe_round_per_scene"),
            # A double click queues one round, not two.
            models.UniqueConstraint(
                fields=["scene"],
                condition=models.Q(status__in=[s.value for s in KEYFRAME_ACTIVE]),
                name="one_active_keyframe_round_per_scene",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scene} keyframes {self.number}"

    @property
    def active(self) -> bool:
        return self.status in KEYFRAME_ACTIVE


class Keyframe(models.Model):
    """One candidate still of a scene, scored like a frame (per character, verdict, boxes)."""

    round = models.ForeignKey(KeyframeRound, on_delete=models.CASCADE, related_name="keyframes")
    index = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=12, choices=KeyframeStatus, default=KeyframeStatus.QUEUED)
    seed = models.BigIntegerField(default=0)
    image = models.FileField(upload_to=keyframe_upload_path, blank=True)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    scores = models.JSONField(default=dict, blank=True)
    verdict = models.CharField(max_length=10, choices=Verdict, blank=True, default="")
    score = models.FloatField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    error = models.TextField(blank=True)
    # The scene's keyframe for its renders: one per scene (picked by a producer or the studio).
    chosen = models.BooleanField(default=False)
    chosen_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="keyframes")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["round", "index"]
        constraints = [
            models.UniqueConstraint(fields=["round", "index"], name="keyframe_index_per_round"),
            models.UniqueConstraint(
                fields=["scene"], condition=models.Q(chosen=True), name="one_chosen_keyframe"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.round} #{self.index + 1}"

    @property
    def consistent(self) -> bool:
        return self.verdict == Verdict.ACCEPT
