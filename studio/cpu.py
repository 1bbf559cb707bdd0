"""One process pool for CPU-heavy steps (decode, face embedding, encoding).

They never run on the event loop: `await run_cpu(fn, *args)` from async code, or
`cpu_pool().submit(fn, *args).result()` from sync code. Functions must be importable top-level
callables with picklable arguments; each worker process loads its models once, lazily, and
keeps them (module-level caches in the function's module).
"""

import asyncio
import atexit
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor

_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()


def cpu_workers() -> int:
    return max(1, int(os.environ.get("STUDIO_CPU_WORKERS", "0")) or os.cpu_count() or 1)


def cpu_pool() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            # spawn, not fork: the parent runs threads and an event loop that must not be cloned.
            _pool = ProcessPoolExecutor(
                max_workers=cpu_workers(), mp_context=multiprocessing.get_context("spawn")
            )
            atexit.register(shutdown_cpu_pool)
        return _pool


def shutdown_cpu_pool() -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


async def run_cpu(function, *args):
    return await asyncio.wrap_future(cpu_pool().submit(function, *args))
