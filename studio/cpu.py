"""One process pool for CPU-heavy steps (decode, face embedding, encoding).

They never run on the event loop: `await run_cpu(fn, *args)` from async code, or
`cpu_pool().submit(fn, *args).result()` from sync code. Functions must be importable top-level
callables with picklable arguments; each worker process loads its models once, lazily, and
keeps them (module-level caches in the function's module).

Pool processes never outlive the process that started them: each one watches its parent and
exits within `PARENT_POLL_S` once it is gone, however it died (SIGKILL, the OOM killer); one
busy in a single C call that holds the GIL exits when that call returns (a face scan: about
half a second). multiprocessing's resource tracker then ends too: it exits when every holder
of its pipe (the parent and the pool processes) has closed it.

A pool process that dies (killed, out of memory) breaks the whole pool: the executor fails
every call it held and refuses new ones. `CpuPool` holds the one rule for that: the broken pool
is dropped (if it is still the current one) so the next call starts a fresh pool. A call that
finds the pool already broken never reached a process, so it is submitted once more to the
fresh pool; a call that was running or queued when the process died fails with
BrokenProcessPool (`CpuPoolBroken`, retryable, from `run_cpu`), because it may be the very call
that exhausted memory, and only its caller knows whether running it again is wise.
"""

import asyncio
import atexit
import functools
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

PARENT_POLL_S = 0.5

_pool: "CpuPool | None" = None
# Broken pools whose manager thread may still be failing their futures. Holding them here keeps
# the executor alive until that thread is done: were its last reference to go while it holds the
# pool's shutdown lock (a future's done callback), the executor's weakref callback would take
# that same lock on the same thread, and the interpreter would hang at exit (CPython 3.12).
_retired: "list[CpuPool]" = []
_lock = threading.Lock()


class CpuPoolBroken(BrokenProcessPool):
    """A pool process died while this call was running or waiting; the pool is replaced, and
    the call may be tried again."""

    retryable = True


def cpu_workers() -> int:
    return max(1, int(os.environ.get("STUDIO_CPU_WORKERS", "0")) or os.cpu_count() or 1)


# Maths libraries' own threads: the pool already has a process per core.
ONE_THREAD = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def cpu_nice() -> int:
    """How much lower than the studio's own processes the pool's run (`STUDIO_CPU_NICE`,
    default 10; 0 keeps the same priority)."""
    try:
        return max(0, min(19, int(os.environ.get("STUDIO_CPU_NICE", "10"))))
    except ValueError:
        return 10


def start_worker(parent_pid: int) -> None:
    """Pool initializer. It runs before the process imports numpy (only the standard library
    is loaded by then), so the BLAS threads setting takes effect; one set by the user stays.

    The pool does the heavy work (encoding, scoring, mixing) and runs at a lower priority:
    when both share the cores, pages and websockets answer first and renders take what is left,
    which on an idle machine is everything."""
    for name, value in ONE_THREAD.items():
        os.environ.setdefault(name, value)
    if nice := cpu_nice():
        os.nice(nice)
    watch_parent(parent_pid)


def watch_parent(parent_pid: int) -> None:
    """Pool initializer: a daemon thread that ends this process once its parent is gone.

    Without it a pool process waits forever for work after its parent was SIGKILLed (it holds
    both ends of its call queue, so it never reads end-of-file). The parent's death reparents
    the process, which `os.getppid()` shows. Not prctl(PR_SET_PDEATHSIG): that fires when the
    *thread* that spawned the process exits, and pools are often started from short-lived
    threads (sync_to_async), so it would kill healthy pools.
    """
    threading.Thread(
        target=_exit_once_orphaned, args=(parent_pid,), name="cpu-pool-parent-watch", daemon=True
    ).start()


def _exit_once_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


class CpuPool(ProcessPoolExecutor):
    """The studio's pool: spawned processes that watch their parent, replaced when broken."""

    def __init__(self, max_workers: int) -> None:
        # spawn, not fork: the parent runs threads and an event loop that must not be cloned.
        super().__init__(
            max_workers=max_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=start_worker,
            initargs=(os.getpid(),),
        )

    def submit(self, fn, /, *args, **kwargs) -> Future:
        try:
            return self._submit_watched(fn, args, kwargs)
        except BrokenProcessPool:
            _discard(self)
        # The call never reached a process: once more on a fresh pool is safe.
        fresh = cpu_pool()
        try:
            return fresh._submit_watched(fn, args, kwargs)
        except BrokenProcessPool as error:
            _discard(fresh)
            raise CpuPoolBroken("the process pool broke again as soon as it started") from error

    def _submit_watched(self, fn, args, kwargs) -> Future:
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(functools.partial(_discard_if_broken, self))
        return future


def _discard_if_broken(pool: CpuPool, future: Future) -> None:
    # Runs in the pool's manager thread, which holds the pool's shutdown lock while it fails the
    # futures: dropping the reference is all there is to do (the executor itself terminates the
    # pool's other processes), never `pool.shutdown()` here.
    if not future.cancelled() and isinstance(future.exception(), BrokenProcessPool):
        _discard(pool)


def _discard(pool: CpuPool) -> None:
    """Forget this broken pool if it is still the current one: the next call starts another.
    The pool is kept among the retired until its manager thread has finished."""
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
        if not any(retired is pool for retired in _retired):
            _retired.append(pool)


def _manager_running(pool: CpuPool) -> bool:
    manager = pool._executor_manager_thread
    return manager is not None and manager.is_alive()


def _prune_retired() -> None:
    # Called with _lock held, from a thread that is no pool's manager.
    _retired[:] = [pool for pool in _retired if _manager_running(pool)]


def cpu_pool() -> CpuPool:
    global _pool
    with _lock:
        _prune_retired()
        if _pool is None:
            _pool = CpuPool(max_workers=cpu_workers())
        return _pool


def shutdown_cpu_pool() -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


atexit.register(shutdown_cpu_pool)


async def run_cpu(function, *args):
    try:
        return await asyncio.wrap_future(cpu_pool().submit(function, *args))
    except CpuPoolBroken:
        raise
    except BrokenProcessPool as error:
        raise CpuPoolBroken(
            f"a CPU pool process died (killed, or out of memory) while running "
            f"{getattr(function, '__qualname__', function)}; the pool is restarted for the next "
            "call"
        ) from error
