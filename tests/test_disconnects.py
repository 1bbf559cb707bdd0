"""QuietDisconnects: a client gone mid-request is one INFO line; a real failure keeps its
traceback (the end-to-end case against a real studio is in tests/test_studio_processes.py)."""

import asyncio
import logging

import pytest

from studio.disconnects import QuietDisconnects

SCOPE = {"type": "http", "method": "GET", "path": "/dramas/1/"}


def messages(*items):
    queue = list(items)

    async def receive():
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)

    return receive


async def sent_to(application, receive, scope=SCOPE):
    sent = []

    async def send(message):
        sent.append(message)

    await QuietDisconnects(application)(scope, receive, send)
    return sent


async def broken_after_disconnect(scope, receive, send):
    await receive()  # the body
    await receive()  # the client left
    raise RuntimeError("CurrentThreadExecutor already quit or is broken")


async def answers(scope, receive, send):
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def answers_after_disconnect(scope, receive, send):
    await receive()
    await receive()
    await answers(scope, messages({"type": "http.request"}), send)


REQUEST = {"type": "http.request", "body": b""}
DISCONNECT = {"type": "http.disconnect"}


async def test_a_failure_after_the_client_left_is_one_info_line_without_traceback(caplog):
    caplog.set_level(logging.INFO, logger="studio.access")

    await sent_to(broken_after_disconnect, messages(REQUEST, DISCONNECT))

    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "GET /dramas/1/: the client went away before the answer (RuntimeError)"
    )
    assert record.exc_info is None


async def test_a_client_that_left_before_an_answer_that_did_not_fail_is_noted_once(caplog):
    caplog.set_level(logging.INFO, logger="studio.access")

    async def gives_up(scope, receive, send):
        await receive()
        await receive()

    await sent_to(gives_up, messages(REQUEST, DISCONNECT))

    assert [r.getMessage() for r in caplog.records] == [
        "GET /dramas/1/: the client went away before the answer"
    ]


async def test_a_failure_while_the_client_waits_keeps_its_exception():
    async def broken(scope, receive, send):
        await receive()
        raise RuntimeError("a real bug")

    with pytest.raises(RuntimeError, match="a real bug"):
        await sent_to(broken, messages(REQUEST))


async def test_an_answered_request_logs_nothing_and_passes_every_message_through(caplog):
    caplog.set_level(logging.INFO, logger="studio.access")

    sent = await sent_to(answers, messages(REQUEST))

    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert caplog.records == []


async def test_an_answer_finished_after_the_disconnect_is_not_noted(caplog):
    caplog.set_level(logging.INFO, logger="studio.access")

    await sent_to(answers_after_disconnect, messages(REQUEST, DISCONNECT))

    assert caplog.records == []


async def test_cancellation_is_not_swallowed():
    async def cancelled(scope, receive, send):
        await receive()
        await receive()
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await sent_to(cancelled, messages(REQUEST, DISCONNECT))


async def test_websockets_pass_through_untouched():
    async def refuses(scope, receive, send):
        raise RuntimeError("websocket failure")

    with pytest.raises(RuntimeError, match="websocket failure"):
        await sent_to(refuses, messages(), scope={"type": "websocket", "path": "/ws/"})
