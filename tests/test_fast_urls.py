"""The `{% url %}` builtin (studio/templatetags/urls.py) answers exactly as Django's reverse."""

import pytest
from django.template import Context, Template
from django.test import override_settings
from django.urls import NoReverseMatch, get_resolver, reverse, set_script_prefix
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.templatetags.urls import _patterns, fast_reverse


def _named_routes_by_id_count() -> list[tuple[str, int]]:
    """Every named route of the project with its number of path parameters."""
    resolver = get_resolver()
    routes = set()
    for name in resolver.reverse_dict:
        if not isinstance(name, str):
            continue
        for possibilities, *_ in resolver.reverse_dict.getlist(name):
            for _format, params in possibilities:
                routes.add((name, len(params)))
    return sorted(routes)


ROUTES = _named_routes_by_id_count()


def test_the_project_has_routes_with_ids():
    assert sum(1 for _, count in ROUTES if count >= 2) >= 10


@given(ids=st.lists(st.integers(min_value=0, max_value=10**12), min_size=4, max_size=4))
@settings(max_examples=30, deadline=None)
def test_every_route_reverses_as_django_does(ids):
    for name, count in ROUTES:
        try:
            expected = reverse(name, args=ids[:count])
        except NoReverseMatch:
            with pytest.raises(NoReverseMatch):
                fast_reverse(name, ids[:count])
            continue
        assert fast_reverse(name, ids[:count]) == expected, name


def test_the_tag_renders_what_djangos_tag_renders():
    page = Template(
        "{% url 'take_review' 3 41 %}|{% url 'drama_board' drama %}|"
        "{% url 'take_review' 3 41 as link %}[{{ link }}]|{% url 'nothing_named_so' 1 as gone %}"
        "[{{ gone }}]|{% url 'admin:index' %}|{% url 'drama_board' drama_id=7 %}"
    ).render(Context({"drama": 12}))
    assert page == (
        f"{reverse('take_review', args=[3, 41])}|{reverse('drama_board', args=[12])}|"
        f"[{reverse('take_review', args=[3, 41])}]|[]|{reverse('admin:index')}|"
        f"{reverse('drama_board', kwargs={'drama_id': 7})}"
    )


def test_a_missing_route_still_fails_loudly():
    with pytest.raises(NoReverseMatch):
        Template("{% url 'nothing_named_so' 1 %}").render(Context())


@pytest.mark.parametrize("odd", [-1, True, "12", 3.0, None])
def test_ids_that_are_not_plain_integers_go_through_django(odd):
    try:
        expected = reverse("drama_board", args=[odd])
    except NoReverseMatch:
        with pytest.raises(NoReverseMatch):
            fast_reverse("drama_board", [odd])
    else:
        assert fast_reverse("drama_board", [odd]) == expected


def test_the_script_prefix_is_kept():
    try:
        set_script_prefix("/studio/")
        assert fast_reverse("drama_board", [5]) == reverse("drama_board", args=[5])
        assert fast_reverse("drama_board", [5]).startswith("/studio/")
    finally:
        set_script_prefix("/")
    assert fast_reverse("drama_board", [5]) == reverse("drama_board", args=[5])


@override_settings(ROOT_URLCONF="tests.fast_urls_conf")
def test_another_urlconf_is_not_answered_from_the_projects_patterns():
    fast_reverse("drama_board", [5])
    assert fast_reverse("drama_board", [5]) == "/elsewhere/5/board/"
    assert fast_reverse("hex_route", [255]) == reverse("hex_route", args=[255]) == "/hex/ff/"
    assert _patterns
