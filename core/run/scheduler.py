"""Where batch jobs run: here, one after another, or on a Dask cluster.

``SCHEDULER`` of ``fjord:batchcsc`` (and ``--scheduler`` of ``python -m fjord.core batchcsc``):

- empty: in this process, one job at a time;
- ``local:N``: a Dask ``LocalCluster`` of N worker processes on this machine, one thread each,
  started for the run and closed after it (also on cancel or error);
- ``tcp://host:port`` (or ``tls://``): an existing Dask scheduler, whose workers must import
  ``fjord`` (the plugin folder on their ``PYTHONPATH``) and see the job table's files under the
  same paths (a shared file system).

Only the coordinating process (the one that calls :meth:`Pool.run`) sees the results and
writes files that several jobs share. A worker process that dies mid-job is replaced by its
nanny and Dask reruns the job elsewhere (up to ``distributed.scheduler.allowed-failures``
times). Cancel sets a cluster-wide flag (a Dask ``Event``) that running jobs poll, releases
the pending jobs and closes a local cluster.
"""

import importlib
import logging
import math
import os
import socket
import time
import uuid

from ..errors import Cancelled, FjordError

POLL = 0.2  # seconds between looks at the futures and at the stop request
STOP_CHECK = 1.0  # seconds between a running job's looks at the cluster's stop flag


def parse_scheduler(spec):
    """``('here', None)``, ``('local', n)`` or ``('address', 'tcp://...')`` from a SCHEDULER
    text; FjordError for anything else."""
    spec = (spec or "").strip()
    if not spec or spec.lower() in ("here", "none"):
        return "here", None
    if spec.lower().startswith("local:"):
        count = spec.split(":", 1)[1].strip()
        if not count.isdigit() or int(count) < 1:
            raise FjordError(f"SCHEDULER {spec!r}: local:N needs a number of workers of at least "
                             "1, e.g. local:2.")
        return "local", int(count)
    if "://" in spec:
        if spec.split("://", 1)[0] not in ("tcp", "tls", "inproc", "ucx"):
            raise FjordError(f"SCHEDULER {spec!r}: a Dask scheduler address starts with tcp:// or "
                             "tls://, e.g. tcp://head-node:8786.")
        return "address", spec
    raise FjordError(f"SCHEDULER {spec!r} is not understood: leave it empty to run here, give "
                     "local:N for N worker processes on this machine, or the address of a Dask "
                     "scheduler (tcp://host:8786).")


#: Open files a local Dask worker process holds (its pipes, sockets, libraries and a job's rasters).
FILES_PER_WORKER = 64


def local_workers_cap():
    """The most worker processes ``local:N`` starts: the cores, and the open-file limit of this
    process over :data:`FILES_PER_WORKER` (Dask's own files counted as one worker's share)."""
    try:
        import resource

        files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        files = -1
    by_files = (files // FILES_PER_WORKER - 1) if files > 0 else os.cpu_count() or 1
    return max(1, min(os.cpu_count() or 1, by_files))


def open_pool(spec, progress=None):
    """The :class:`Pool` for a SCHEDULER text."""
    kind, value = parse_scheduler(spec)
    if kind == "here":
        return Here()
    return DaskPool(kind, value, progress)


class Here:
    """Jobs in this process, in order; each gets the run's progress and stop request."""

    description = "here, one job at a time"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, func, items, progress, should_stop):
        """Yield ``(item, func(item, progress=, should_stop=), None)`` for each item, in
        order."""
        for i, item in enumerate(items):
            if should_stop():
                raise Cancelled()
            lo, hi = i / len(items), (i + 1) / len(items)

            def span(fraction, message=None, lo=lo, hi=hi):
                progress(None if fraction is None else lo + (hi - lo) * fraction, message)

            yield item, func(item, progress=span, should_stop=should_stop), None


def _job_on_worker(func, item, stop_name):
    """What a Dask worker runs: ``func`` with a stop request read from the cluster's Event."""
    from distributed import Event

    event = Event(stop_name)
    state = {"at": 0.0, "stop": False}

    def should_stop():
        now = time.monotonic()
        if not state["stop"] and now - state["at"] >= STOP_CHECK:
            state["at"] = now
            try:
                state["stop"] = event.is_set()
            except Exception:  # the scheduler is gone: stop
                state["stop"] = True
        return state["stop"]

    result = func(item, progress=lambda *a, **k: None, should_stop=should_stop)
    result.setdefault("worker", f"{socket.gethostname()}:{os.getpid()}")
    return result


class DaskPool:
    """Jobs on a Dask cluster: a LocalCluster started here, or an existing scheduler."""

    def __init__(self, kind, value, progress=None):
        try:
            importlib.import_module("distributed")
        except ImportError:
            raise FjordError("A SCHEDULER other than empty needs the Python packages dask and "
                             "distributed in the worker environment; run 'Check environment' "
                             "with INSTALL=true (or pip install -r requirements.txt).") from None
        self.kind, self.value = kind, value
        self.progress = progress or (lambda *a, **k: None)
        if kind == "local" and value > local_workers_cap():
            self.progress(None, f"SCHEDULER local:{value} asks for more worker processes than "
                                f"this machine can run: capped at {local_workers_cap()} (its "
                                f"{os.cpu_count() or 1} cores and its limit of open files, "
                                f"{FILES_PER_WORKER} per worker).")
            self.value = value = local_workers_cap()
        self.cluster = self.client = None
        self.description = (f"a local Dask cluster of {value} worker process(es)" if kind == "local"
                            else f"the Dask cluster at {value}")

    def __enter__(self):
        from distributed import Client, LocalCluster

        try:
            if self.kind == "local":
                import dask

                # Dask's defaults are made for many small tasks; a Fjord job is one long,
                # numeric task. Each worker gets its share of the cores for OpenMP and BLAS
                # (Dask gives one), and neither the sampling profiler (a thread that walks the
                # stacks 100 times a second) nor malloc trimming at 64 kB (which returns every
                # large array's memory to the system): together they made a job a third slower
                # than in this process.
                share = str(max(1, math.ceil((os.cpu_count() or 1) / self.value)))
                environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
                environ.pop("MALLOC_TRIM_THRESHOLD_", None)
                environ.update({name: share for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                         "OPENBLAS_NUM_THREADS")})
                settings = {"distributed.nanny.pre-spawn-environ": environ,
                            "distributed.worker.profile.enabled": False}
                with dask.config.set(settings):
                    self.cluster = LocalCluster(n_workers=self.value, threads_per_worker=1,
                                                processes=True, dashboard_address=":0",
                                                silence_logs=logging.ERROR)
                self.client = Client(self.cluster)
            else:
                self.client = Client(self.value, timeout="20s")
        except OSError as exc:
            self.close()
            raise FjordError(f"Cannot reach the Dask scheduler {self.value}: {exc}. Start it "
                             "(dask scheduler, dask worker) or check the address.") from None
        except Exception as exc:  # what answered is not Dask: say what it was
            self.close()
            if self.kind == "local":
                raise
            raise FjordError(f"Something answers at {self.value}, but not as a Dask scheduler "
                             f"(its reply could not be read: {type(exc).__name__}). Check the "
                             "host and port: a Dask scheduler listens on 8786 unless told "
                             "otherwise.") from None
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        for thing in (self.client, self.cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception:
                    pass
        self.client = self.cluster = None

    def workers(self):
        return len(self.client.scheduler_info().get("workers", {})) if self.client else 0

    def run(self, func, items, progress, should_stop):
        """Yield ``(item, result, None)`` for each item as its job finishes (any order), or
        ``(item, None, exception)`` when Dask could not run it (its worker died too often)."""
        from distributed import Event

        stop_name = f"fjord-stop-{uuid.uuid4().hex}"
        event = Event(stop_name, client=self.client)
        futures = [self.client.submit(_job_on_worker, func, item, stop_name, pure=False,
                                      key=f"fjord-job-{i}-{uuid.uuid4().hex[:8]}")
                   for i, item in enumerate(items)]
        item_of = dict(zip(futures, items))
        pending = list(futures)
        try:
            while pending:
                if should_stop():
                    event.set()
                    self.client.cancel(pending)
                    raise Cancelled()
                finished = [f for f in pending if f.done()]
                if not finished:
                    time.sleep(POLL)
                    continue
                for future in finished:
                    pending.remove(future)
                    try:
                        result = future.result()
                    except Exception as exc:
                        yield item_of[future], None, exc
                    else:
                        yield item_of[future], result, None
        finally:
            if pending:
                event.set()
                self.client.cancel(pending)
