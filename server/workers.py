"""Several engine processes behind one gRPC port (``--workers`` > 1).

The per-frame search, fbank and audio decoding run in Python and hold the GIL, so one process
keeps about one core busy however many torch threads it has. With ``--workers N`` the
``asr-server`` process becomes a small supervisor (grpc's examples/python/multiprocessing
pattern):

* it reserves the gRPC port (and ``--health-port``) with SO_REUSEPORT, then starts N worker
  processes with the "spawn" method: fresh interpreters, so none inherits a gRPC, torch or
  thread state of the parent (which creates no gRPC server and runs no model anyway);
* each worker loads the models, runs its own engines and event loop, and binds the same port
  with ``grpc.so_reuseport``: the kernel spreads incoming *connections* over the workers, and
  every stream of one connection stays on the worker that accepted it;
* ``--max-streams`` holds for the server as a whole: the workers count their streams in a
  ``multiprocessing.Value`` the parent created (``SharedStreamCount``);
* each worker reports to the parent once its models are warm and turns its health to SERVING
  only when the parent says that all of them are ready, so the health answer is the same
  whichever worker a probe reaches;
* metrics: the workers record with prometheus_client's multiprocess mode into a fresh
  directory (``PROMETHEUS_MULTIPROC_DIR``, set by the parent before they start) and the parent
  serves their sum on ``--metrics-port``;
* SIGTERM or SIGINT to the parent is passed on to every worker as a "stop" message over its
  control pipe (each drains as a single server does; a second signal stops them at once); the
  workers ignore signals themselves, so one sent to the whole process group or cgroup counts
  once. The parent waits for the workers and exits with their status. A worker that dies
  unexpectedly makes the parent log it and drain the others, then exit non-zero, so that the
  container is restarted (docs/decisions/0027-worker-processes.md). A worker whose parent
  dies (SIGKILL) drains and exits too.

With ``--workers 1`` none of this runs: ``server.main.serve`` is the whole server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from prometheus_client.multiprocess import mark_process_dead

from server.api.admission import SharedStreamCount
from server.metrics import multiprocess_registry, serve_metrics
from server.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """What the parent hands one worker process (pickled for the spawned interpreter)."""

    index: int  # 1..count
    count: int
    port: int  # the reserved gRPC port
    health_port: int | None  # the reserved --health-port, None: none
    streams: Synchronized[int]  # the server-wide count of streams in progress
    # Both ways: to the parent ("ready", pid); from it "serve" (all are ready) and "stop" (drain;
    # a second: stop now). End of file: the parent died.
    control: Connection


class WorkerLink:
    """A worker's side of its parent: the shared stream count, the ready hand-shake, the stops.

    A worker ignores SIGTERM and SIGINT (inherited from the parent as ignored): a signal sent to
    the whole process group or cgroup (a terminal's Ctrl-C, ``timeout``, systemd) would otherwise
    reach it twice, directly and through the parent, and the second would cut its drain short.
    """

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self._serve: asyncio.Future[bool] | None = None

    def shared_streams(self) -> SharedStreamCount:
        return SharedStreamCount(self.spec.streams)

    def listen(self, loop: asyncio.AbstractEventLoop, on_stop: Callable[[], None]) -> None:
        """Take the parent's messages on ``loop``: "serve" opens ``wait_all_ready``; "stop" calls
        ``on_stop``, as a signal does in a single process; so does the parent's death, once."""
        self._serve = loop.create_future()
        control = self.spec.control
        fd = control.fileno()

        def readable() -> None:
            try:
                message = control.recv()
            except (EOFError, OSError):
                loop.remove_reader(fd)
                log.warning("the parent process exited: shutting down")
                message = "stop"
            if message in ("serve", "stop") and self._serve is not None and not self._serve.done():
                self._serve.set_result(message == "serve")
            if message == "stop":
                on_stop()

        loop.add_reader(fd, readable)

    async def wait_all_ready(self) -> bool:
        """``AsrServer``'s ``before_serving``: tell the parent this worker is ready, then wait until
        all are (True) or a stop comes first (False)."""
        assert self._serve is not None, "listen() first"
        self.spec.control.send(("ready", os.getpid()))
        log.info("worker %d of %d ready; waiting for the others", self.spec.index, self.spec.count)
        return await self._serve


def worker_main(settings: Settings, spec: WorkerSpec) -> None:
    """A worker process's entry point (spawned): ``server.main.serve`` as worker ``spec.index``."""
    from server.main import STARTUP_ERRORS, serve

    # Started with SIGTERM and SIGINT ignored and blocked (Supervisor.run): unblocked, a pending
    # one is dropped; they stay ignored.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM, signal.SIGINT))
    logging.basicConfig(
        level=settings.log_level,
        format=f"%(asctime)s %(levelname)s %(name)s [worker {spec.index}]: %(message)s",
    )
    try:
        asyncio.run(serve(settings, WorkerLink(spec)))
    except STARTUP_ERRORS as error:
        log.error("asr-server: %s", error)
        raise SystemExit(1) from None


# -- the parent --------------------------------------------------------------------------------
def reserve_port(host: str, port: int, flag: str) -> socket.socket:
    """Bind ``host:port`` (0: a free port) with SO_REUSEPORT, without listening: the workers bind
    the same port beside this socket, and it keeps the port the server's until it exits.

    First a plain bind: a port where anything listens already, another server with
    SO_REUSEPORT included, is refused as it is with one process (it would share the traffic).
    """
    infos = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
            port = probe.getsockname()[1]
        reserved = socket.socket(family, kind, proto)
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserved.bind((address[0], port, *address[2:]))
    except OSError as error:
        raise OSError(f"cannot listen on {host}:{port} ({flag}): {error.strerror or error}") from None
    return reserved


def exit_status(exitcode: int | None) -> int:
    """A process's exit code as a shell reports it: 128 + N for a death by signal N."""
    if exitcode is None:
        return 1
    return 128 - exitcode if exitcode < 0 else exitcode


def describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with status {exitcode}"


@dataclass
class _Worker:
    spec: WorkerSpec
    process: SpawnProcess
    control: Connection | None  # the parent's end; None once the worker has exited
    ready: bool = False
    exited: bool = False  # ...and the parent has seen it (``Supervisor._exited``)

    def send(self, message: str) -> None:
        if self.control is not None and not self.exited:
            with contextlib.suppress(OSError):  # it is exiting: its exit comes next
                self.control.send(message)


@dataclass
class Supervisor:
    """Starts the workers, passes signals on, watches them; ``run`` returns the exit status."""

    settings: Settings
    port: int
    health_port: int | None
    metrics_dir: str
    context: SpawnContext = field(default_factory=lambda: multiprocessing.get_context("spawn"))
    workers: list[_Worker] = field(default_factory=list)
    signals: int = 0  # shutdown signals received
    handled: int = 0  # ...and passed on
    failed: _Worker | None = None

    @property
    def stopping(self) -> bool:
        return self.signals > 0 or self.failed is not None

    def run(self) -> int:
        handled = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.getsignal(sig) for sig in handled}
        # Ignored while the workers start, so that they inherit both ignored (WorkerLink): they stop
        # on the parent's word only. Blocked meanwhile, so that one sent now waits (Linux keeps a
        # blocked signal pending even when it is ignored) for the handler below. The handler only
        # counts; the loop passes the signals on, woken by the wakeup file descriptor.
        signal.pthread_sigmask(signal.SIG_BLOCK, handled)
        for sig in handled:
            signal.signal(sig, signal.SIG_IGN)
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        previous_wakeup = signal.set_wakeup_fd(wake_write)
        try:
            streams = self.context.Value("i", 0)
            for index in range(1, self.settings.workers + 1):
                parent_end, worker_end = self.context.Pipe(duplex=True)
                spec = WorkerSpec(index, self.settings.workers, self.port, self.health_port, streams, worker_end)
                process = self.context.Process(
                    target=worker_main, args=(self.settings, spec), name=f"asr-worker-{index}"
                )
                process.start()
                worker_end.close()
                self.workers.append(_Worker(spec, process, parent_end))
            for sig in handled:
                signal.signal(sig, self._on_signal)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
            log.info(
                "started %d worker processes (pids %s) for %s:%d; their metrics in %s",
                len(self.workers),
                " ".join(str(w.process.pid) for w in self.workers),
                self.settings.host,
                self.port,
                self.metrics_dir,
            )
            serve_metrics(self.settings.host, self.settings.metrics_port, multiprocess_registry(self.metrics_dir))
            self._watch(wake_read)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_read)
            os.close(wake_write)
        return self._status()

    def _watch(self, wake: int) -> None:
        """Until every worker has exited: signals, ready reports, exits."""
        while running := [w for w in self.workers if not w.exited]:
            sentinels = {w.process.sentinel: w for w in running}
            controls = {id(w.control): w for w in self.workers if w.control is not None}
            waitables: list[Any] = [wake, *sentinels, *(w.control for w in controls.values())]
            for item in multiprocessing.connection.wait(waitables):
                if isinstance(item, int) and item in sentinels:
                    self._exited(sentinels[item])
                elif isinstance(item, int):  # the wakeup fd: a signal came
                    os.read(wake, 512)
                elif (worker := controls[id(item)]).control is item:  # not closed by its exit just now
                    self._report(worker)
            self._pass_signals_on()

    def _report(self, worker: _Worker) -> None:
        assert worker.control is not None
        try:
            message = worker.control.recv()
        except (EOFError, OSError):  # it exited: its sentinel says so next
            worker.control.close()
            worker.control = None
            return
        if message[0] != "ready":
            return
        worker.ready = True
        if all(w.ready for w in self.workers) and not self.stopping:
            log.info("all %d workers ready: serving on %s:%d", len(self.workers), self.settings.host, self.port)
            for each in self.workers:
                each.send("serve")

    def _exited(self, worker: _Worker) -> None:
        process = worker.process
        process.join()
        worker.exited = True
        if worker.control is not None:
            worker.control.close()
            worker.control = None
        assert process.pid is not None
        mark_process_dead(process.pid, self.metrics_dir)
        how = describe_exit(process.exitcode)
        if self.stopping:
            log.info("worker %d (pid %d) %s", worker.spec.index, process.pid, how)
            return
        log.error(
            "worker %d (pid %d) %s unexpectedly: stopping the other workers (the server exits, to be restarted)",
            worker.spec.index,
            process.pid,
            how,
        )
        self.failed = worker
        self._stop_all()

    def _on_signal(self, _signum: int, _frame: types.FrameType | None) -> None:
        self.signals += 1

    def _pass_signals_on(self) -> None:
        while self.handled < self.signals:
            self.handled += 1
            alive = sum(1 for w in self.workers if not w.exited)
            if self.handled == 1:
                log.info("shutdown signal received: draining %d worker(s)", alive)
            else:
                log.warning("second shutdown signal: the workers stop now")
            self._stop_all()

    def _stop_all(self) -> None:
        """ "stop" to every worker still running: the first drains it, a second stops it at once."""
        for worker in self.workers:
            worker.send("stop")

    def _status(self) -> int:
        if self.failed is not None:
            return max(1, exit_status(self.failed.process.exitcode))
        for worker in self.workers:
            if worker.process.exitcode != 0:
                return exit_status(worker.process.exitcode)
        return 0


def run_workers(settings: Settings) -> int:
    """The supervisor of ``settings.workers`` worker processes; returns the exit status."""
    reserved = [reserve_port(settings.host, settings.port, "--port")]
    health_port = None
    try:
        if settings.health_port >= 0:
            reserved.append(reserve_port(settings.host, settings.health_port, "--health-port"))
            health_port = reserved[-1].getsockname()[1]
        metrics_dir = tempfile.mkdtemp(prefix="asr-metrics-")
        # Read by prometheus_client when a worker imports it: each records into files there.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        try:
            port = reserved[0].getsockname()[1]
            return Supervisor(settings, port, health_port, metrics_dir).run()
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    finally:
        for sock in reserved:
            sock.close()
