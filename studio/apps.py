from django.apps import AppConfig


class StudioConfig(AppConfig):
    name = "studio"
    verbose_name = "Studio platform"

    def ready(self) -> None:
        # Every job worker publishes its providers' breakers and buckets for the health panel.
        from studio import provider_health
        from studio.jobs import registry

        registry.register_companion("provider-health", provider_health.publish_loop)
