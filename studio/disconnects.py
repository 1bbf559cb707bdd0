"""Quiet disconnects: a browser that goes away mid-request is one INFO line, not a traceback.

When a client closes its connection before the answer, Daphne tells the application
(`http.disconnect`) and Django cancels the view's task; what that cancellation leaves behind
(asgiref's "CurrentThreadExecutor already quit or is broken", a send on a closed connection)
then surfaces as "Exception inside application" with a full traceback, once per impatient
client: noise that hides real errors. `QuietDisconnects` wraps the ASGI application, notes
whether the client disconnected, and only then turns the failure into one INFO line. A failure
while the client is still there keeps its traceback.
"""

import asyncio
import logging

log = logging.getLogger("studio.access")


class QuietDisconnects:
    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.application(scope, receive, send)
        disconnected = answered = False

        async def receive_noting_disconnect():
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            return message

        async def send_noting_the_end(message):
            nonlocal answered
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered = True

        failure = None
        try:
            await self.application(scope, receive_noting_disconnect, send_noting_the_end)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not disconnected:
                raise
            failure = type(error).__name__
        if disconnected and not answered:
            log.info(
                "%s %s: the client went away before the answer%s",
                scope.get("method", ""),
                scope.get("path", ""),
                f" ({failure})" if failure else "",
            )
