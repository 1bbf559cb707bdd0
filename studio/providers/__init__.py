"""Clients for generation services: what the studio asks of a writer, a video model and a lip
sync model, with offline stand-ins, resilience, a usage ledger and a loopback simulator.

Nothing here knows about dramas or characters (DESIGN.md §2): callers pass plain dataclasses
(`base.py`) and store the results. Modules by job:

- `base.py` protocols and dataclasses; `errors.py` typed errors (retryable or not)
- `openai_chat.py` OpenAI-compatible chat; `video_http.py`, `lipsync_http.py` job adapters;
  `transport.py` what the HTTP adapters share
- `writer.py` the chapter brief and how it travels in messages; `local_writer.py` the offline
  writer
- `animatic.py`, `frames.py`, `yuv.py` the offline renderer; `local_animatic.py` it as a job
  provider
- `resilience.py` bucket, cap, breaker, retries, live stats; `ledger.py` usage and costs
- `registry.py` the providers chosen by settings
- `sim/` provider_sim, the loopback vendor simulator (`sim/server.py`)

Their benchmarks (`ratelimit`, `animatic`) live in studio/bench.
"""
