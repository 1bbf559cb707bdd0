"""`manage.py seed_demo`: a demo producer and one small drama to look around in.

Idempotent: an existing demo user keeps their password, and a demo drama the user already
has is left alone. Everything is made through the service functions, like the UI does.
"""

from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from characters.services import character_create, reference_images_add
from dramas.keyframes import keyframes_enqueue
from dramas.models import Aspect, Drama, Genre, TimeOfDay
from dramas.services import (
    chapter_create,
    chapter_version_save,
    drama_create,
    line_create,
    scene_create,
)
from dramas.speech_jobs import chapter_speak_enqueue
from studio.providers import registry

FACES_DIR = Path(__file__).resolve().parents[2] / "demo" / "faces"
DEMO_TITLE = "Midnight Broadcast"

CHARACTERS = {
    "Marcus Hale": {
        "appearance_notes": (
            "Man in his fifties, short greying hair, warm tired eyes; rolled-up white shirt, "
            "loosened dark tie, studio headphones around his neck."
        ),
        "voice": "Low, unhurried radio baritone.",
        # The offline voice: an espeak-ng variant, a little slower and lower than its default.
        "voice_profile": {"voice_id": "m3", "voice_speed": 0.9, "voice_pitch": -3},
        "faces": ["obama.jpg", "obama2.jpg"],
    },
    "Dr. Ada Quinn": {
        "appearance_notes": (
            "Woman in her seventies, short white hair, sharp gaze; dark navy uniform jacket "
            "with brass buttons, reading glasses on a chain."
        ),
        "voice": "Crisp and precise, dry humour.",
        "voice_profile": {"voice_id": "f3", "voice_speed": 1.05, "voice_pitch": 2},
        "faces": ["grace_hopper.jpg"],
    },
}

# (scene fields, characters in the scene, dialog as (speaker, line, emotion))
SCENES = [
    (
        {
            "location": "Radio station booth, WNHT 88.1",
            "time_of_day": TimeOfDay.NIGHT,
            "action": (
                "Marcus leans into the microphone under a red ON AIR light; the switchboard "
                "blinks with one incoming call."
            ),
            "camera": "slow push-in, medium close-up",
            # Long enough for its lines in the offline voice (the chapter check measures it).
            "duration_s": 10.0,
            "mood": "quiet, intimate",
        },
        ["Marcus Hale"],
        [
            ("Marcus Hale", "It's three a.m., and you're listening to Midnight Line.", "calm"),
            ("Marcus Hale", "Line one, you're on the air. Who am I speaking with?", "curious"),
        ],
    ),
    (
        {
            "location": "University lab, rain on the windows",
            "time_of_day": TimeOfDay.NIGHT,
            "action": (
                "Ada holds an old telephone receiver beside a wall of humming computers, "
                "reading numbers off a printout."
            ),
            "camera": "static wide shot, then cut to close-up",
            "duration_s": 13.0,
            "mood": "tense",
        },
        ["Dr. Ada Quinn"],
        [
            (
                "Dr. Ada Quinn",
                "Mr. Hale, your broadcast carries a signal that isn't yours.",
                "urgent",
            ),
            ("Dr. Ada Quinn", "Someone is hiding a message inside your silence.", "grave"),
            ("Marcus Hale", "Ma'am, this is a talk show, not a spy novel.", "amused"),
        ],
    ),
    (
        {
            "location": "Radio station booth, WNHT 88.1",
            "time_of_day": TimeOfDay.NIGHT,
            "action": (
                "Marcus mutes the microphone and stares at the monitor as the waveform pulses "
                "in a slow, regular pattern."
            ),
            "camera": "over-the-shoulder onto the monitor, rack focus to his face",
            "duration_s": 8.0,
            "mood": "dread",
        },
        ["Marcus Hale", "Dr. Ada Quinn"],
        [
            ("Marcus Hale", "How do you know that?", "shaken"),
            (
                "Dr. Ada Quinn",
                "Because I wrote the code it's speaking in. Forty years ago.",
                "quiet",
            ),
        ],
    ),
]


class Command(BaseCommand):
    help = f"Create the demo user and the demo drama “{DEMO_TITLE}” if they are missing."

    def handle(self, *args, **options) -> None:
        username, password = settings.DEMO_USERNAME, settings.DEMO_PASSWORD
        with transaction.atomic():
            user, user_created = self.ensure_user(username, password)
            if Drama.objects.filter(title=DEMO_TITLE, memberships__user=user).exists():
                self.stdout.write(f"Demo drama “{DEMO_TITLE}” already exists; nothing to do.")
            else:
                self.create_drama(user)
                self.stdout.write(self.style.SUCCESS(f"Created the demo drama “{DEMO_TITLE}”."))
        if user_created:
            self.stdout.write(f"Demo login: {username} / {password}")
        else:
            self.stdout.write(f"Demo user {username} already exists; its password was left as is.")

    def ensure_user(self, username: str, password: str):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is not None:
            return user, False
        # Staff and superuser so the admin (usage ledger, prices) works for the demo producer.
        return User.objects.create_superuser(username=username, email="", password=password), True

    def create_drama(self, user) -> Drama:
        drama = drama_create(
            creator=user,
            title=DEMO_TITLE,
            logline=(
                "A late-night radio host takes a call from a retired computer scientist who "
                "claims his show is carrying a hidden signal."
            ),
            genre=Genre.THRILLER,
            style="photoreal, moody neon night, shallow depth of field",
            aspect=Aspect.VERTICAL,
            budget_usd=Decimal("25.00"),
        )
        characters = {}
        for name, spec in CHARACTERS.items():
            character = character_create(
                drama=drama,
                name=name,
                appearance_notes=spec["appearance_notes"],
                voice=spec["voice"],
                **spec["voice_profile"],
            )
            self.add_references(character, spec["faces"])
            characters[name] = character

        chapter = chapter_create(
            drama=drama,
            title="The Caller",
            synopsis="A stranger calls the late show with a warning hidden in the static.",
        )
        for fields, names, dialog in SCENES:
            scene = scene_create(
                chapter=chapter, characters=[characters[n] for n in names], **fields
            )
            for speaker, line, emotion in dialog:
                line_create(scene=scene, speaker=characters[speaker], line=line, emotion=emotion)
        chapter_version_save(chapter=chapter, user=user, note="Demo script")
        if registry.speech().name == "local":
            # The offline voice is free: the demo's lines are voiced on the first start (jobs on
            # the board), so the editor plays them and the script check measures them.
            chapter_speak_enqueue(chapter=chapter)
        if registry.image().name == "local":
            # Offline keyframes are free too: the demo chapter's storyboard is made on the first
            # start, scored against the cast, and its renders start from the chosen stills.
            keyframes_enqueue(drama=drama, scenes=list(chapter.scenes.select_related("chapter")))
        return drama

    def add_references(self, character, filenames: list[str]) -> None:
        with ExitStack() as stack:
            files = [
                File(stack.enter_context((FACES_DIR / n).open("rb")), name=n) for n in filenames
            ]
            results = reference_images_add(character=character, files=files)
        failed = [f"{r.filename}: {r.error}" for r in results if r.error]
        if failed:
            raise CommandError("Demo reference images were refused: " + "; ".join(failed))
