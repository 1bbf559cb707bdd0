from django.apps import AppConfig


class CharactersConfig(AppConfig):
    name = "characters"
    verbose_name = "Characters"

    def ready(self) -> None:
        # Connects the receiver that deletes a deleted reference image's stored file.
        from characters import signals  # noqa: F401
