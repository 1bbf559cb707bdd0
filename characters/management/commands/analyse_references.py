"""`python manage.py analyse_references [--all]`: run the face model over stored references.

Uploads are analysed as they arrive; this catches up on references stored before face
analysis existed, or left "Not analysed yet" by a failure, and with --all redoes every one
(e.g. after a model change). Profiles are recomputed per character.
"""

from django.core.management.base import BaseCommand

from characters.models import Character, ReferenceQuality
from characters.services import reference_images_analyse


class Command(BaseCommand):
    help = "Detect and embed faces of reference images not analysed yet (--all: every one)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--all", action="store_true", help="re-analyse every reference")

    def handle(self, *args, all: bool, **options) -> None:
        characters = Character.objects.order_by("id")
        if not all:
            characters = characters.filter(references__quality=ReferenceQuality.PENDING)
        total = 0
        for character in characters.distinct():
            references = character.references.all()
            if not all:
                references = references.filter(quality=ReferenceQuality.PENDING)
            references = list(references)
            reference_images_analyse(character=character, references=references)
            total += len(references)
            flags = ", ".join(r.get_quality_display().lower() for r in references)
            self.stdout.write(f"{character.name} (drama {character.drama_id}): {flags}")
        self.stdout.write(f"Analysed {total} reference image{'s' if total != 1 else ''}.")
