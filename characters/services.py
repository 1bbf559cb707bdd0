"""What the studio does to characters and their reference images.

Reference images are analysed on upload (`reference_images_analyse`: face detection and
embedding in the shared process pool, then a quality flag each) and the character's profile
is recomputed whenever its references change (`character_profile_refresh`).
"""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from characters import consistency, faces
from characters.models import Character, ReferenceImage, ReferenceQuality
from characters.uploads import UploadRejected, normalise_image, read_limited
from characters.voices import VoiceSample
from studio.files import delete_after_commit

logger = logging.getLogger(__name__)

# A face narrower than this (in stored-image pixels) is upscaled so much into the model's
# 150 px chip that its embedding is unreliable.
MIN_REFERENCE_FACE_PX = 60
# With several faces, the largest is used only when it is at least this many times as wide
# as the next one (a portrait with people far behind); otherwise we cannot tell who is meant.
DOMINANCE = 2.0
LEFT_OUT = "Left out of the profile."


@transaction.atomic
def character_create(
    *,
    drama,
    name: str,
    appearance_notes: str = "",
    voice: str = "",
    voice_sample: VoiceSample | None = None,
    **voice_profile,
) -> Character:
    """`voice_profile`: voice_provider, voice_id, voice_language, voice_speed, voice_pitch
    (model defaults). `voice_sample`: a checked recording (characters.voices)."""
    character = Character(
        drama=drama,
        name=" ".join(name.split()),
        appearance_notes=appearance_notes,
        voice=voice,
        **voice_profile,
    )
    character.full_clean()
    character.save()
    if voice_sample:
        _voice_sample_store(character=character, sample=voice_sample)
    return character


@transaction.atomic
def character_update(
    *, character: Character, voice_sample: VoiceSample | bool | None = None, **fields
) -> Character:
    """`voice_sample`: a new recording, False to remove the stored one, None to keep it."""
    stored_voice_id = (
        Character.objects.filter(pk=character.pk).values_list("voice_id", flat=True).first()
    )
    for name, value in fields.items():
        setattr(character, name, value)
    character.name = " ".join(character.name.split())
    if character.voice_id != stored_voice_id:
        character.voice_cloned_from = ""  # a voice chosen by hand, not the clone any more
    character.full_clean()
    character.save()
    if voice_sample is False:
        _voice_sample_remove(character=character)
    elif voice_sample:
        _voice_sample_store(character=character, sample=voice_sample)
    return character


SAMPLE_FIELDS = ["voice_sample", "voice_sample_sha256", "voice_sample_s", "updated_at"]


def _voice_sample_store(*, character: Character, sample: VoiceSample) -> None:
    """Store the sample as the character's; the one it replaces goes once this commits. A voice
    cloned from the old sample is cloned again from this one (dramas.speech.voicing)."""
    if sample.sha256 == character.voice_sample_sha256 and character.voice_sample:
        return
    replaced = character.voice_sample.name
    stored_name = None
    try:
        character.voice_sample.save(
            f"{sample.sha256[:16]}.wav", ContentFile(sample.content), save=False
        )
        stored_name = character.voice_sample.name
        character.voice_sample_sha256 = sample.sha256
        character.voice_sample_s = sample.seconds
        character.save(update_fields=SAMPLE_FIELDS)
    except Exception:
        if stored_name:
            # No committed row will ever name it: the transaction that would is failing.
            character.voice_sample.storage.delete(stored_name)
        raise
    if replaced and replaced != stored_name:
        delete_after_commit([replaced])


def _voice_sample_remove(*, character: Character) -> None:
    """The stored sample goes once this commits; a voice already cloned from it is kept."""
    replaced = character.voice_sample.name
    character.voice_sample = ""
    character.voice_sample_sha256 = ""
    character.voice_sample_s = None
    character.save(update_fields=SAMPLE_FIELDS)
    delete_after_commit([replaced])


@transaction.atomic
def character_delete(*, character: Character) -> None:
    """Its reference images' and voice sample's files follow their rows (characters/signals.py)."""
    character.delete()


@dataclass(frozen=True)
class UploadResult:
    filename: str
    reference: ReferenceImage | None = None
    error: str = ""
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return self.reference is not None and not self.duplicate


def reference_images_add(*, character: Character, files) -> list[UploadResult]:
    """Validate and store each file on its own: one bad file never blocks the others."""
    if len(files) > settings.UPLOAD_MAX_FILES:
        raise ValidationError(
            f"{len(files)} files at once is too many; upload at most "
            f"{settings.UPLOAD_MAX_FILES} per batch."
        )
    results = [_reference_image_add(character=character, upload=upload) for upload in files]
    added = [result.reference for result in results if result.ok]
    if added:
        reference_images_analyse(character=character, references=added)
    return results


def _reference_image_add(*, character: Character, upload) -> UploadResult:
    filename = (getattr(upload, "name", "") or "upload")[-255:]
    try:
        data = read_limited(upload, max_bytes=settings.UPLOAD_MAX_BYTES)
        image = normalise_image(data)
    except UploadRejected as rejected:
        return UploadResult(filename=filename, error=str(rejected))

    existing = character.references.filter(sha256=image.sha256).first()
    if existing is not None:
        return UploadResult(filename=filename, reference=existing, duplicate=True)

    reference = ReferenceImage(
        character=character,
        original_name=filename,
        sha256=image.sha256,
        original_bytes=image.original_bytes,
        width=image.width,
        height=image.height,
    )
    stored_name = None
    try:
        with transaction.atomic():
            reference.image.save(f"{image.sha256[:16]}.jpg", ContentFile(image.content), save=False)
            stored_name = reference.image.name
            reference.save()
    except IntegrityError:
        _delete_files([stored_name])
        existing = character.references.filter(sha256=image.sha256).first()
        if existing is None:
            raise
        # The same file arrived twice at once: the other request stored it.
        return UploadResult(filename=filename, reference=existing, duplicate=True)
    except Exception:
        _delete_files([stored_name])
        raise
    return UploadResult(filename=filename, reference=reference)


def reference_image_delete(*, reference: ReferenceImage) -> None:
    """Its file follows the row (characters/signals.py); the profile is rebuilt without it."""
    character = reference.character
    with transaction.atomic():
        reference.delete()
    character_profile_refresh(character=character)


# --- Faces and the profile ---------------------------------------------------------------------


@dataclass(frozen=True)
class FaceJudgement:
    quality: ReferenceQuality
    message: str
    face: faces.Face | None = None  # the face whose embedding represents the image


def judge_reference_faces(scan: faces.FaceScan) -> FaceJudgement:
    """The quality flag of a reference image from the faces found in it (outliers aside)."""
    found = consistency.considered_faces(scan.faces)
    if not found:
        return FaceJudgement(
            ReferenceQuality.NO_FACE,
            "No face found. Use a clear, front-facing portrait: faces turned away, covered "
            f"or narrower than about 40 px are not detected. {LEFT_OUT}",
        )
    main, others = found[0], found[1:]  # largest first
    if others and main.size < DOMINANCE * others[0].size:
        return FaceJudgement(
            ReferenceQuality.SEVERAL_FACES,
            f"{len(found)} faces of similar size: crop the photo to this character alone. "
            f"{LEFT_OUT}",
        )
    if main.size < MIN_REFERENCE_FACE_PX:
        return FaceJudgement(
            ReferenceQuality.TOO_SMALL,
            f"The face is {main.size} px wide; at least {MIN_REFERENCE_FACE_PX} px is needed to "
            f"recognise it. Use a closer or larger photo. {LEFT_OUT}",
            main,
        )
    return FaceJudgement(ReferenceQuality.GOOD, _good_message(main.size, len(others)), main)


def _good_message(size: int, ignored: int) -> str:
    message = f"One face, {size} px wide."
    if ignored:
        message += f" {ignored} much smaller face{'s' if ignored > 1 else ''} ignored."
    return message


def reference_images_analyse(*, character: Character, references) -> None:
    """Detect and embed the faces of these references, flag them, and refresh the profile.

    The one place reference images are analysed: synchronous in the process pool for now,
    so it can move into a job unchanged.
    """
    references = list(references)
    contents = []
    for reference in references:
        with reference.image.open("rb") as handle:
            contents.append(handle.read())
    try:
        scans: list[faces.FaceScan | None] = faces.scan_many_in_pool(contents)
    except Exception:  # the images are stored either way; the flag says what failed
        # A dead pool process (BrokenProcessPool) needs nothing more here: studio.cpu has
        # already dropped that pool, and the next call starts a fresh one.
        logger.exception("Face analysis failed for %d reference(s)", len(references))
        scans = [None] * len(references)
    with transaction.atomic():
        for reference, scan in zip(references, scans, strict=True):
            _apply_scan(reference, scan)
    character_profile_refresh(character=character)


def _apply_scan(reference: ReferenceImage, scan: faces.FaceScan | None) -> None:
    if scan is None:
        reference.quality = ReferenceQuality.PENDING
        reference.quality_message = (
            "The face model could not analyse this image. Delete it and upload it again."
        )
        reference.save(update_fields=["quality", "quality_message"])
        return
    judgement = judge_reference_faces(scan)
    reference.quality = judgement.quality
    reference.quality_message = judgement.message
    reference.faces = [face.to_dict() for face in scan.faces]
    reference.face_box = list(judgement.face.box) if judgement.face else None
    reference.embedding = (
        faces.embedding_to_bytes(judgement.face.embedding) if judgement.face else None
    )
    reference.profile_similarity = None
    reference.save(
        update_fields=[
            "quality",
            "quality_message",
            "faces",
            "face_box",
            "embedding",
            "profile_similarity",
        ]
    )


def character_profile_refresh(*, character: Character) -> Character:
    """Flag references that look like someone else, and store the mean of the good ones."""
    with transaction.atomic():
        locked = Character.objects.select_for_update().get(pk=character.pk)
        candidates = list(
            locked.references.filter(
                quality__in=[ReferenceQuality.GOOD, ReferenceQuality.OUTLIER],
                embedding__isnull=False,
            )
        )
        vectors = {r.id: faces.embedding_from_bytes(r.embedding) for r in candidates}
        outliers, similarities = consistency.find_outliers(vectors)
        for reference in candidates:
            _flag_outlier(reference, reference.id in outliers, similarities.get(reference.id))
        profile = consistency.mean_profile([vectors[i] for i in vectors if i not in outliers])
        locked.embedding = None if profile is None else faces.embedding_to_bytes(profile)
        locked.embedding_model = "" if profile is None else faces.MODEL_ID
        locked.save(update_fields=["embedding", "embedding_model", "updated_at"])
    character.embedding, character.embedding_model = locked.embedding, locked.embedding_model
    return locked


def _flag_outlier(reference: ReferenceImage, outlier: bool, similarity: float | None) -> None:
    if outlier:
        score = round(consistency.similarity_to_score(similarity))
        quality = ReferenceQuality.OUTLIER
        message = (
            f"May be a different person: resemblance {score} to this character's other "
            f"references (needs {consistency.SHIPPED_THRESHOLD}). {LEFT_OUT}"
        )
    else:
        quality = ReferenceQuality.GOOD
        found = [f for f in reference.faces if f["score"] >= consistency.MIN_CONFIDENCE]
        sizes = sorted((f["size"] for f in found or reference.faces), reverse=True)
        message = _good_message(sizes[0], len(sizes) - 1) if sizes else reference.quality_message
    if (reference.quality, reference.quality_message, reference.profile_similarity) != (
        quality,
        message,
        similarity,
    ):
        reference.quality, reference.quality_message = quality, message
        reference.profile_similarity = similarity
        reference.save(update_fields=["quality", "quality_message", "profile_similarity"])


def character_profile(*, character: Character) -> consistency.CharacterProfile | None:
    """The character's profile as plain data for frame scoring; None without a good face."""
    if character.embedding is None:
        return None
    return consistency.CharacterProfile(
        character_id=character.id,
        name=character.name,
        embedding=faces.embedding_from_bytes(character.embedding),
    )


def _delete_files(names) -> None:
    # After commit, like every media deletion (studio.files): a rollback keeps the files.
    delete_after_commit(names)
