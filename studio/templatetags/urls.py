"""`{% url %}` without a resolver walk per link: a builtin that replaces Django's tag.

The chapter editor draws a few hundred links (each line's edit, move, delete and voice
actions); Django's `reverse` walks the resolver and checks the candidate against its pattern
for every one, a tenth of the page's time under load. The links of one view name differ only
in their ids, so the first link of a name is reversed with marker ids and split into a
pattern; the next ones are that pattern joined with their ids. Anything else (keyword
arguments, namespaces, ids that are not plain non-negative integers, a converter that
transforms its value) goes through Django's own `reverse`, as before.
"""

from django import template
from django.conf import settings
from django.core.signals import setting_changed
from django.template.defaulttags import URLNode
from django.template.defaulttags import url as django_url
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse
from django.utils.html import conditional_escape

register = template.Library()

# Ids no real link carries, so each shows exactly once in a reversed marker URL.
_MARKERS = (7_310_942_853_001, 7_310_942_853_002, 7_310_942_853_003, 7_310_942_853_004)
# (view name, number of ids, urlconf, script prefix) -> the URL's literal parts, or None when
# the name cannot take the fast path.
_patterns: dict[tuple, tuple[str, ...] | None] = {}


def fast_reverse(view_name: str, args: list) -> str:
    """`reverse(view_name, args=args)` for ids; the same answer, from a pattern kept per name."""
    if not (
        0 < len(args) <= len(_MARKERS)
        and ":" not in view_name
        and all(type(arg) is int and arg >= 0 for arg in args)
    ):
        return reverse(view_name, args=args)
    key = (view_name, len(args), get_urlconf() or settings.ROOT_URLCONF, get_script_prefix())
    if key not in _patterns:
        _patterns[key] = _split(view_name, len(args))
    parts = _patterns[key]
    if parts is None:
        return reverse(view_name, args=args)
    pieces = [parts[0]]
    for arg, literal in zip(args, parts[1:], strict=True):
        pieces += [str(arg), literal]
    return "".join(pieces)


def _split(view_name: str, count: int) -> tuple[str, ...] | None:
    markers = [str(marker) for marker in _MARKERS[:count]]
    try:
        reversed_url = reverse(view_name, args=list(_MARKERS[:count]))
    except NoReverseMatch:
        return None  # the name's ids are constrained: Django checks each one
    parts = []
    rest = reversed_url
    for marker in markers:
        if rest.count(marker) != 1:
            return None  # transformed or repeated by a converter
        before, _, rest = rest.partition(marker)
        parts.append(before)
    parts.append(rest)
    return tuple(parts)


def clear_patterns(**_) -> None:
    _patterns.clear()


setting_changed.connect(clear_patterns)  # a test's other urlconf or script prefix


class FastURLNode(URLNode):
    def render(self, context):
        if self.kwargs:
            return super().render(context)
        view_name = self.view_name.resolve(context)
        args = [arg.resolve(context) for arg in self.args]
        try:
            url = fast_reverse(view_name, args)
        except NoReverseMatch:
            if self.asvar is None:
                raise
            url = ""
        if self.asvar:
            context[self.asvar] = url
            return ""
        return conditional_escape(url) if context.autoescape else url


@register.tag
def url(parser, token):
    """Django's `{% url %}` (same syntax, same answers), faster for links by ids."""
    node = django_url(parser, token)
    return FastURLNode(node.view_name, node.args, node.kwargs, node.asvar)
