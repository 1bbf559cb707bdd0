from django.contrib.messages import get_messages
from django.template.loader import render_to_string


class HtmxMessagesMiddleware:
    """Deliver flash messages with htmx fragments as an out-of-band swap of #messages.

    A full page shows them in its layout; a fragment would otherwise leave them waiting
    until the next full reload.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            not getattr(request, "htmx", False)
            or response.streaming
            or "HX-Redirect" in response
            or not response.get("Content-Type", "").startswith("text/html")
        ):
            return response
        storage = get_messages(request)
        if not storage:
            return response
        html = render_to_string(
            "partials/messages_oob.html", {"messages": storage}, request=request
        )
        response.content += html.encode(response.charset or "utf-8")
        return response
