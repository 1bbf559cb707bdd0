"""A urlconf for tests/test_fast_urls.py: a route named like the project's, another whose
converter transforms its id (the fast path must leave it to Django)."""

from django.http import HttpResponse
from django.urls import path, register_converter


class HexConverter:
    regex = "[0-9a-f]+"

    def to_python(self, value):
        return int(value, 16)

    def to_url(self, value):
        return f"{value:x}"


register_converter(HexConverter, "hex")


def _nothing(request, **_):
    return HttpResponse()


urlpatterns = [
    path("elsewhere/<int:drama_id>/board/", _nothing, name="drama_board"),
    path("hex/<hex:value>/", _nothing, name="hex_route"),
]
