import json
import logging

import pytest

from studio.providers.errors import (
    AuthError,
    BadRequest,
    MalformedResponse,
    ProviderConnectionError,
    ProviderTimeout,
    QuotaExceeded,
    RateLimited,
    ServerError,
    StreamError,
)
from studio.providers.ledger import MemoryLedger
from studio.providers.openai_chat import response_format_for, sse_data
from tests.providers_support import API_KEY, chat_for, fast_guard, running_sim


@pytest.fixture
async def sim():
    async with running_sim() as simulator:
        yield simulator


SYSTEM = {"role": "system", "content": "You are a terse assistant. " * 20}


def ask(text: str = "Say hello to the rooftop.") -> list[dict]:
    return [SYSTEM, {"role": "user", "content": text}]


async def collect(chat, messages, **kwargs):
    chunks = [chunk async for chunk in chat.stream(messages, **kwargs)]
    return "".join(chunk.text for chunk in chunks), chunks


async def test_it_completes_with_usage_and_cached_tokens(sim):
    ledger = MemoryLedger()
    chat = chat_for(sim, ledger=ledger)
    first = await chat.complete(ask())
    second = await chat.complete(ask("And again."))
    assert first.text.startswith("Simulated answer to: Say hello")
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    assert first.usage.cached_tokens == 0
    # The same system prompt again counts as cached, as prompt caching does.
    assert 0 < second.usage.cached_tokens <= second.usage.input_tokens
    assert [e.operation for e in ledger.entries] == ["chat.complete", "chat.complete"]
    assert ledger.entries[1].usage == second.usage and ledger.entries[1].ok


async def test_it_reads_deepseek_cache_hit_tokens(sim):
    sim.config.usage_style = "deepseek"
    chat = chat_for(sim)
    await chat.complete(ask())
    result = await chat.complete(ask())
    assert result.usage.cached_tokens > 0
    assert result.usage.input_tokens > result.usage.cached_tokens


async def test_it_asks_for_json_output_unless_the_server_rejects_it(sim):
    reply = await chat_for(sim).complete(ask(), json_output=True)
    assert json.loads(reply.text)["reply"].startswith("simulated answer")
    plain = await chat_for(sim, json_mode="none").complete(ask(), json_output=True)
    assert plain.text.startswith("Simulated answer")


async def test_it_sends_the_schema_where_the_server_takes_one(sim):
    schema = {"type": "object", "required": ["reply"], "properties": {"reply": {"type": "string"}}}
    reply = await chat_for(sim, json_mode="json_schema").complete(ask(), json_output=schema)
    assert json.loads(reply.text)["reply"].startswith("simulated answer")
    assert response_format_for(schema, mode="json_schema") == {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": False},
        }
    }
    # A server in json_object mode gets plain JSON mode, and "any JSON" never sends a schema.
    assert response_format_for(schema, mode="json_object") == {
        "response_format": {"type": "json_object"}
    }
    assert response_format_for(True, mode="json_schema") == {
        "response_format": {"type": "json_object"}
    }
    assert response_format_for(schema, mode="none") == {}


async def test_it_streams_text_with_usage_in_the_final_chunk(sim):
    ledger = MemoryLedger()
    chat = chat_for(sim, ledger=ledger)
    text, chunks = await collect(chat, ask("Tell me about the city at night, briefly."))
    assert text == "Simulated answer to: Tell me about the city at night, briefly."
    assert len([c for c in chunks if c.text]) > 2
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens > 0
    assert chunks[-1].finish_reason == "stop"
    [entry] = ledger.entries
    assert entry.operation == "chat.stream" and entry.ok and entry.ttft_ms is not None


async def test_it_streams_without_keepalives_and_without_usage(sim):
    sim.config.keepalive = False
    text, chunks = await collect(chat_for(sim, stream_usage=False), ask())
    assert text.startswith("Simulated answer")
    assert chunks[-1].usage.output_tokens == 0  # the server was not asked for usage


async def lines(*items):
    for item in items:
        yield item


async def test_it_parses_sse_edge_cases():
    events = [
        event
        async for event in sse_data(
            lines(
                ": keep-alive",
                "",
                "",
                'data: {"a": 1}',
                "",
                "event: error",
                'data: {"error":',
                'data: "boom"}',
                "",
                ":comment without space",
                "data:[DONE]",
            )
        )
    ]
    assert events == [
        ("message", '{"a": 1}'),
        ("error", '{"error":\n"boom"}'),
        ("message", "[DONE]"),  # delivered although the stream ended without a blank line
    ]


@pytest.mark.parametrize("fault", ["5xx", "429", "drop", "hang", "malformed", "lost_response"])
async def test_it_retries_each_transient_fault_on_complete(sim, fault):
    ledger = MemoryLedger()
    sim.queue_faults("chat", fault)
    result = await chat_for(sim, ledger=ledger).complete(ask())
    assert result.text.startswith("Simulated answer")
    assert sim.stats.requests["chat"] == 2
    assert [e.ok for e in ledger.entries] == [False, True]
    assert ledger.entries[0].error


@pytest.mark.parametrize("fault", ["5xx", "429", "drop", "hang", "malformed", "slow_stream"])
async def test_it_retries_a_stream_that_fails_before_any_text(sim, fault):
    sim.config.slow_stream_s = 0.8  # longer than the client's read timeout
    sim.queue_faults("chat", fault)
    text, _ = await collect(chat_for(sim), ask())
    assert text.startswith("Simulated answer")
    assert sim.stats.requests["chat"] == 2


async def test_it_survives_a_slow_stream_within_the_timeout(sim):
    sim.config.slow_stream_s = 0.05
    sim.queue_faults("chat", "slow_stream")
    text, _ = await collect(chat_for(sim), ask())
    assert text.startswith("Simulated answer")
    assert sim.stats.requests["chat"] == 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("stream_error", StreamError),
        ("cut_stream", ProviderConnectionError),
        ("no_done", StreamError),
    ],
)
async def test_it_raises_when_a_stream_breaks_after_text_arrived(sim, fault, error):
    ledger = MemoryLedger()
    sim.queue_faults("chat", fault)
    received = []
    with pytest.raises(error) as raised:
        async for chunk in chat_for(sim, ledger=ledger).stream(ask("A long enough question.")):
            received.append(chunk.text)
    assert "".join(received).startswith("Simulated answer")
    assert raised.value.retryable  # the job may try the whole step again...
    assert sim.stats.requests["chat"] == 1  # ...but the adapter never replays a partial answer
    assert [e.ok for e in ledger.entries] == [False]


async def test_it_gives_up_after_the_last_attempt(sim):
    sim.queue_faults("chat", "5xx", "5xx", "5xx")
    with pytest.raises(ServerError) as raised:
        await chat_for(sim, guard=fast_guard(attempts=3)).complete(ask())
    assert raised.value.status == 503 and raised.value.retryable
    assert sim.stats.requests["chat"] == 3


async def test_it_times_out_a_hanging_server(sim):
    sim.queue_faults("chat", "hang")
    with pytest.raises(ProviderTimeout):
        await chat_for(sim, guard=fast_guard(attempts=1)).complete(ask())


async def test_it_reports_a_malformed_body(sim):
    sim.queue_faults("chat", "malformed")
    with pytest.raises(MalformedResponse):
        await chat_for(sim, guard=fast_guard(attempts=1)).complete(ask())


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, BadRequest), (401, AuthError), (403, AuthError), (404, BadRequest), (422, BadRequest)],
)
async def test_it_never_retries_client_errors(sim, status, error):
    sim.queue_faults("chat", f"status:{status}")
    with pytest.raises(error) as raised:
        await chat_for(sim).complete(ask())
    assert not raised.value.retryable and raised.value.status == status
    assert sim.stats.requests["chat"] == 1


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503, 504])
async def test_it_retries_408_409_and_5xx(sim, status):
    sim.queue_faults("chat", f"status:{status}")
    result = await chat_for(sim).complete(ask())
    assert result.text and sim.stats.requests["chat"] == 2


async def test_it_does_not_retry_insufficient_quota(sim):
    sim.queue_faults("chat", "quota")
    with pytest.raises(QuotaExceeded) as raised:
        await chat_for(sim).complete(ask())
    assert not raised.value.retryable and raised.value.code == "insufficient_quota"
    assert sim.stats.requests["chat"] == 1


async def test_it_honours_retry_after_up_to_its_cap(sim):
    delays = []

    async def sleep(seconds):
        delays.append(seconds)

    sim.config.retry_after_s = 0.02
    sim.queue_faults("chat", "429")
    await chat_for(sim, guard=fast_guard(sleep=sleep), retry_after_cap_s=60).complete(ask())
    sim.config.retry_after_s = 90.0
    sim.queue_faults("chat", "429")
    await chat_for(sim, guard=fast_guard(sleep=sleep), retry_after_cap_s=60).complete(ask())
    # retry-after-ms is read first (20 ms); 90 s is capped by the adapter (60) and the policy.
    assert delays == [pytest.approx(0.02), 0.05]


async def test_it_raises_rate_limited_with_the_servers_hint(sim):
    sim.config.retry_after_s = 0.04
    sim.queue_faults("chat", "429")
    with pytest.raises(RateLimited) as raised:
        await chat_for(sim, guard=fast_guard(attempts=1)).complete(ask())
    assert raised.value.retry_after_s == pytest.approx(0.04)


async def test_it_never_shows_the_api_key(sim, caplog):
    caplog.set_level(logging.DEBUG)
    sim.config.api_key = "the-right-key"  # the simulator echoes the wrong key it was sent
    ledger = MemoryLedger()
    chat = chat_for(sim, ledger=ledger)
    with pytest.raises(AuthError) as raised:
        await chat.complete(ask())
    with pytest.raises(AuthError) as streamed:
        await collect(chat, ask())
    texts = [str(raised.value), repr(raised.value), str(streamed.value), repr(chat)]
    texts += [entry.error for entry in ledger.entries] + [caplog.text, repr(chat.config)]
    assert "Incorrect API key provided" in str(raised.value)
    assert all(API_KEY not in text for text in texts)
    assert "[redacted]" in str(raised.value)


async def test_it_keeps_one_pooled_client_per_event_loop(sim):
    chat = chat_for(sim)
    await chat.complete(ask())
    client = chat.client()
    await chat.complete(ask())
    assert chat.client() is client
    await chat.aclose()


async def test_it_books_a_stream_the_caller_abandoned(sim):
    ledger = MemoryLedger()
    stream = chat_for(sim, ledger=ledger).stream(ask("A question with a long enough answer."))
    first = await anext(stream)
    await stream.aclose()
    assert first.text
    [entry] = ledger.entries
    assert not entry.ok and "closed by the caller" in entry.error
