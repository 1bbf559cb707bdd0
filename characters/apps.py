from django.apps import AppConfig


class CharactersConfig(AppConfig):
    name = "characters"
    verbose_name = "Characters"

    def ready(self) -> None:
        # Connects the receivers that delete a deleted reference image's or voice sample's file.
        from characters import signals  # noqa: F401
