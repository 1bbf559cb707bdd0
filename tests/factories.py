"""Keyword-only factories: each states only what a test depends on."""

import io
import itertools
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from characters import services as character_services
from dramas import services
from dramas.models import Membership, Role

FACES_DIR = Path(__file__).resolve().parent.parent / "dramas" / "demo" / "faces"
PASSWORD = "a-long-test-password"
_counter = itertools.count(1)


def create_user(*, username: str | None = None, is_staff: bool = False):
    username = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(
        username=username, password=PASSWORD, is_staff=is_staff
    )


def create_drama(*, owner=None, title: str = "Neon Vows", **fields):
    owner = owner or create_user()
    return services.drama_create(creator=owner, title=title, **fields)


def add_member(*, drama, user=None, role: Role = Role.EDITOR):
    user = user or create_user()
    Membership.objects.create(drama=drama, user=user, role=role)
    return user


def create_character(*, drama, name: str | None = None, portrait: str | None = None, **fields):
    """A character; with `portrait` (a file in FACES_DIR) it also gets that reference image."""
    character = character_services.character_create(
        drama=drama, name=name or f"Character {next(_counter)}", **fields
    )
    if portrait:
        [result] = character_services.reference_images_add(
            character=character, files=[face_upload(portrait)]
        )
        assert result.ok, result.error
    return character


def create_chapter(*, drama, title: str = "The Contract", synopsis: str = ""):
    return services.chapter_create(drama=drama, title=title, synopsis=synopsis)


def create_scene(
    *,
    chapter,
    location: str = "Rooftop bar",
    action: str = "She turns away.",
    characters=(),
    **fields,
):
    return services.scene_create(
        chapter=chapter, location=location, action=action, characters=characters, **fields
    )


def create_line(*, scene, line: str = "You came back.", speaker=None, emotion: str = ""):
    return services.line_create(scene=scene, line=line, speaker=speaker, emotion=emotion)


def image_bytes(*, size=(64, 48), color=(200, 120, 80), format: str = "PNG", **save_args) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=format, **save_args)
    return out.getvalue()


def upload(
    *, name: str = "face.png", content: bytes | None = None, content_type: str = "image/png"
) -> SimpleUploadedFile:
    return SimpleUploadedFile(
        name, image_bytes() if content is None else content, content_type=content_type
    )


def face_upload(name: str) -> SimpleUploadedFile:
    """One of the public-domain portraits shipped with the demo drama."""
    path = FACES_DIR / name
    content_type = "image/png" if path.suffix == ".png" else "image/jpeg"
    return SimpleUploadedFile(name, path.read_bytes(), content_type=content_type)


def create_take(*, scene, status: str = "done", score: float | None = 88.0, **fields):
    """A finished take with a (tiny, not playable) video, a poster and one scored frame;
    no render runs. Scores name the scene's first character."""
    from django.core.files.base import ContentFile

    from dramas.models import Frame, Take

    number = scene.takes.count() + 1
    take = Take.objects.create(
        scene=scene,
        number=number,
        status=status,
        idempotency_key=f"take-test-{next(_counter)}",
        prompt="She turns away.",
        verdict="accept" if score is not None and score >= 65 else "reject",
        score=score,
        **fields,
    )
    if status == "done":
        take.video.save("video.mp4", ContentFile(b"\x00\x00\x00\x18ftypmp42"), save=False)
        take.poster.save("poster.jpg", ContentFile(image_bytes(format="JPEG")), save=False)
        take.save()
        character = scene.characters.first()
        characters = (
            [{"name": character.name, "score": score, "verdict": "match", "box": [8, 8, 40, 40]}]
            if character
            else []
        )
        frame = Frame(
            take=take,
            index=0,
            time_s=0.0,
            width=64,
            height=48,
            score=score,
            scores={
                "width": 64,
                "height": 48,
                "face_count": len(characters),
                "characters": characters,
                "unknown_faces": [],
            },
        )
        frame.image.save("000.jpg", ContentFile(image_bytes(format="JPEG")), save=False)
        frame.save()
    return take


def create_keyframes(
    *, scene, scores: tuple[float | None, ...] = (88.0, 72.0, 40.0), chosen: int | None = 0
):
    """A finished keyframe round of the scene with one candidate per score (a small JPEG each;
    no image service runs), candidate `chosen` picked by the studio. A score below 65 is an
    inconsistent candidate. Returns the round."""
    from django.core.files.base import ContentFile

    from dramas.models import Keyframe, KeyframeRound

    number = scene.keyframe_rounds.count() + 1
    round_ = KeyframeRound.objects.create(
        scene=scene,
        number=number,
        prompt="First frame of the shot.",
        candidates=len(scores),
        status="done",
        provider="local",
        model="composed-still",
        consistent=any(score is not None and score >= 65 for score in scores),
    )
    character = scene.characters.first()
    for index, score in enumerate(scores):
        verdict = "" if score is None else ("accept" if score >= 65 else "reject")
        keyframe = Keyframe(
            round=round_,
            scene=scene,
            index=index,
            status="done",
            width=90,
            height=160,
            verdict=verdict,
            score=score,
            chosen=index == chosen,
            scores={
                "characters": [
                    {"name": character.name, "score": score, "verdict": "match", "box": None}
                ]
                if character and score is not None
                else []
            },
        )
        picture = image_bytes(size=(90, 160), color=(40 * index, 90, 160), format="JPEG")
        keyframe.image.save(f"keyframe-{index + 1}.jpg", ContentFile(picture), save=False)
        keyframe.save()
    return round_


def create_usage(
    *,
    provider: str = "deepseek",
    model: str = "deepseek-chat",
    operation: str = "chat.complete",
    drama=None,
    cost_usd=None,
    created_at=None,
    **fields,
):
    """A UsageRecord as the ledger writes it; `cost_usd=None` is an unpriced call."""
    from decimal import Decimal

    from django.utils import timezone

    from studio.models import UsageRecord

    return UsageRecord.objects.create(
        provider=provider,
        model=model,
        operation=operation,
        drama_id=drama.id if drama is not None else fields.pop("drama_id", None),
        cost_usd=None if cost_usd is None else Decimal(str(cost_usd)),
        created_at=created_at or timezone.now(),
        **fields,
    )


def create_board(*, owner=None, scenes: int) -> dict:
    """A drama (owned by `owner`) with one chapter of `scenes` scenes and three takes each, in
    every state the board shows: frames, reviews, approvals, jobs, failures, booked usage. The
    data of `manage.py bench page`, inserted in bulk. Returns the drama, chapter and counts."""
    from dramas.bench.page import build_board

    return build_board(owner=owner or create_user(), scenes=scenes)


def create_rendered_scene(*, chapter, characters=(), last: str = "done", user=None, **fields):
    """A scene with two dialog lines and three takes through the real services: a rejected
    one, a finished one, and a last one that is `done`, `approved`, `rendering` (queued with
    its render job), `failed` or `none` (only two takes)."""
    from dramas import takes as take_services

    scene = create_scene(chapter=chapter, characters=characters, **fields)
    for k in range(2):
        create_line(scene=scene, speaker=characters[k % len(characters)] if characters else None)
    user = user or chapter.drama.created_by
    take_services.take_reject(take=create_take(scene=scene, score=40.0), user=user)
    create_take(scene=scene, score=70.0)
    if last in ("done", "approved"):
        take = create_take(scene=scene, score=90.0)
        if last == "approved":
            take_services.take_approve(take=take, user=user)
    elif last == "rendering":
        take_services.take_enqueue(drama=chapter.drama, scenes=[scene], user=user)
    elif last == "failed":
        create_take(scene=scene, status="failed", score=None, error="Provider timed out.")
    return scene
