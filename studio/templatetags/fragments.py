"""`{% fragment key %}…{% endfragment %}`: a part of a page drawn once per key.

The key names everything the part shows (the view computes it from the rows it has read, see
`dramas/page_parts.py`), so an entry is never stale: changed data is a new key, and the
old entry ages out of the bounded cache (`CACHES["fragments"]`, in each process). No key
(empty, None) draws the part every time.

A part may hold forms: it is drawn with a placeholder for the CSRF token, which each answer
fills with its own visitor's token, so one visitor's token never reaches another.
"""

import hashlib
import secrets

from django import template
from django.core.cache import caches
from django.utils.safestring import mark_safe

register = template.Library()

CACHE = "fragments"
# Not a token anyone could send: a fresh one per process.
_TOKEN_PLACEHOLDER = f"csrf-placeholder-{secrets.token_hex(16)}"


def fragment_key(*parts) -> str:
    """A cache key for `parts` (their reprs: plain values, tuples of them)."""
    return "fragment:" + hashlib.blake2b(repr(parts).encode(), digest_size=20).hexdigest()


def row_values(instance) -> tuple:
    """A model instance's stored values, every column: for keys of parts that draw a row."""
    return tuple(getattr(instance, field.attname) for field in instance._meta.concrete_fields)


class FragmentNode(template.Node):
    def __init__(self, key: template.base.FilterExpression, nodelist: template.NodeList):
        self.key = key
        self.nodelist = nodelist

    def render(self, context):
        key = self.key.resolve(context)
        token = str(context.get("csrf_token") or "")
        if not key or token in ("", "NOTPROVIDED"):  # drawn outside a visitor's request
            return self.nodelist.render(context)
        cache = caches[CACHE]
        drawn = cache.get(key)
        if drawn is None:
            with context.push(csrf_token=_TOKEN_PLACEHOLDER):
                drawn = str(self.nodelist.render(context))
            cache.set(key, drawn)
        if _TOKEN_PLACEHOLDER in drawn:
            drawn = drawn.replace(_TOKEN_PLACEHOLDER, token)
        return mark_safe(drawn)


@register.tag
def fragment(parser, token):
    bits = token.split_contents()
    if len(bits) != 2:
        raise template.TemplateSyntaxError("{% fragment %} takes one argument: the key.")
    nodelist = parser.parse(("endfragment",))
    parser.delete_first_token()
    return FragmentNode(parser.compile_filter(bits[1]), nodelist)
