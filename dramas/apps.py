from django.apps import AppConfig


class DramasConfig(AppConfig):
    name = "dramas"
    verbose_name = "Dramas"

    def ready(self) -> None:
        # The platform's cost review keeps plain drama ids; this app tells it their titles.
        from studio import costs

        costs.name_dramas(self.drama_titles)
        # Connects the receivers that delete a deleted take's or frame's stored files.
        from dramas import signals  # noqa: F401

    def drama_titles(self, ids: list[int]) -> dict[int, str]:
        drama = self.get_model("Drama")
        return dict(drama.objects.filter(id__in=ids).values_list("id", "title"))
