"""What the studio does to characters and their reference images."""

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from characters.models import Character, ReferenceImage
from characters.uploads import UploadRejected, normalise_image, read_limited


@transaction.atomic
def character_create(*, drama, name: str, appearance_notes: str = "", voice: str = "") -> Character:
    character = Character(
        drama=drama, name=" ".join(name.split()), appearance_notes=appearance_notes, voice=voice
    )
    character.full_clean()
    character.save()
    return character


@transaction.atomic
def character_update(*, character: Character, **fields) -> Character:
    for name, value in fields.items():
        setattr(character, name, value)
    character.name = " ".join(character.name.split())
    character.full_clean()
    character.save()
    return character


def character_delete(*, character: Character) -> None:
    files = [reference.image.name for reference in character.references.all()]
    with transaction.atomic():
        character.delete()
    _delete_files(files)


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
    return [_reference_image_add(character=character, upload=upload) for upload in files]


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
    name = reference.image.name
    with transaction.atomic():
        reference.delete()
    _delete_files([name])


def _delete_files(names) -> None:
    for name in names:
        if name:
            default_storage.delete(name)
