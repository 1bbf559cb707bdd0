"""Websocket routes (HTTP routes are in studio/urls.py): a composition root, so it names the
domain's consumers."""

from django.urls import re_path

from dramas.consumers import HealthConsumer, ProgressConsumer

websocket_urlpatterns = [
    # At most 18 digits, like the HTTP id converter: a giant number is refused, not an overflow.
    re_path(r"^ws/dramas/(?P<drama_id>[0-9]{1,18})/live/$", ProgressConsumer.as_asgi()),
    re_path(r"^ws/providers/health/$", HealthConsumer.as_asgi()),
]
