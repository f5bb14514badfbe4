"""``--workers``: several engine processes behind one gRPC port (server/workers.py).

Real ``asr-server`` processes on loopback (``asr_harness.ServerProcess``). Each stream goes
over a connection of its own (``own_connection``): the kernel spreads connections, not streams,
over the workers. Which worker served what is read from the workers' own metric files (the
parent logs their directory; prometheus_client's multiprocess mode keeps one file per process).
"""

from __future__ import annotations

import contextlib
import glob
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import jiwer
import pytest
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_harness import (
    REPO_ROOT,
    ServerProcess,
    config,
    finals,
    fixed_chunks,
    own_connection,
    requires_espeak,
    stream,
    synthesize,
    wait_until,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from server.api.admission import Admission, SharedStreamCount
from server.api.errors import RequestError
from server.main import torch_threads
from server.settings import cpu_cores, parse_settings

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TEXTS = [
    "the meeting was moved to friday afternoon",
    "open the window it is warm in here",
    "my phone number has changed since last year",
    "thank you for calling have a nice day",
]
# Greedy search on clean espeak-ng speech: test_server_streaming's bound for the bundled model.
MAX_WER = 0.14


class WorkerServer:
    """``asr-server --workers N`` with a metrics port: its worker pids and their metric files."""

    def __init__(self, model_dir: Path | None, *args: str, workers: int = 2, wait: bool = True, **options: float):
        self.server = ServerProcess(
            model_dir, workers=workers, args=["--metrics-port", "0", *args], wait=False, **options
        )
        started = self.server.wait_for(
            r"started (\d+) worker processes \(pids ([\d ]+)\) for .*; their metrics in (\S+)"
        )
        self.pids = [int(pid) for pid in started[2].split()]
        assert len(self.pids) == workers
        self.metrics_dir = started[3]
        metrics_port = self.server.wait_for(r"metrics on http://[\d.]+:(\d+)/metrics")[1]
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        if wait:
            self.server.port = int(self.server.wait_for(r"gRPC listening on [\d.]+:(\d+)")[1])
            with own_connection(self.target) as channel:
                self.server.wait_serving(channel)

    @property
    def target(self) -> str:
        return self.server.target

    @property
    def process(self) -> subprocess.Popen[str]:
        return self.server.process

    def worker_total(self, pid: int, name: str, **labels: str) -> float:
        """Sum of the samples ``name`` (with ``labels``) that worker ``pid`` recorded."""
        files = glob.glob(os.path.join(self.metrics_dir, f"*_{pid}.db"))
        return sum(
            sample.value
            for metric in MultiProcessCollector.merge(files)
            for sample in metric.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    def page(self) -> str:
        return urllib.request.urlopen(self.metrics_url, timeout=10).read().decode()

    def scraped(self, name: str, **labels: str) -> float:
        """Sum of the samples ``name`` (with ``labels``) on the server's /metrics page."""
        return sum(
            sample.value
            for family in text_string_to_metric_families(self.page())
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    def stop(self) -> None:
        """SIGTERM (the parent removes the metrics directory), else kill the parent: its workers
        see it die and exit (drained) by themselves."""
        for pid in self.pids:  # a test may have stopped one
            _signal_worker(pid, signal.SIGCONT)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(20)
        self.server.kill()
        if not wait_until(lambda: not any(map(_is_worker, self.pids)), 20):
            for pid in self.pids:
                _signal_worker(pid, signal.SIGKILL)


def _is_worker(pid: int) -> bool:
    """Is ``pid`` (still) a spawned worker process, not a process that reused its number?"""
    try:
        return b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _signal_worker(pid: int, sig: signal.Signals) -> None:
    if _is_worker(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _stub(channel: grpc.Channel) -> asr_pb2_grpc.RecognizerStub:
    return asr_pb2_grpc.RecognizerStub(channel)


def _health(target: str, timeout: float = 2) -> int | None:
    """The Recognizer's health over a new connection (a worker of the kernel's choice); None: no answer."""
    request = health_pb2.HealthCheckRequest(service="asr.v1.Recognizer")
    with own_connection(target) as channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout).status
        except grpc.RpcError:
            return None


# -- settings -----------------------------------------------------------------------------------
def test_workers_default_to_the_cores_and_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASR_WORKERS", raising=False)
    assert parse_settings([]).workers == cpu_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("ASR_WORKERS", "3")
    assert parse_settings([]).workers == 3
    assert parse_settings(["--workers", "1"]).workers == 1, "flags win over the environment"
    with pytest.raises(SystemExit) as exit_:
        parse_settings(["--workers", "0"])
    assert exit_.value.code == 2


def test_torch_threads_are_shared_by_the_workers() -> None:
    one = parse_settings(["--workers", "1"])
    assert torch_threads(one) == max(1, (os.cpu_count() or 2) - 1), "one process: as before"
    assert torch_threads(parse_settings(["--workers", "1", "--threads", "3"])) == 3
    assert torch_threads(parse_settings(["--workers", "2", "--threads", "4"])) == 2
    assert torch_threads(parse_settings(["--workers", "4", "--threads", "2"])) == 1
    cores = os.cpu_count() or 2
    assert torch_threads(parse_settings(["--workers", str(cores)])) == 1, "a worker per core: one thread each"


def test_admission_counts_streams_across_processes() -> None:
    """Two workers' admissions on one shared count: the limit holds for both together."""
    shared = multiprocessing.get_context("spawn").Value("i", 0)
    first, second = (Admission(3, SharedStreamCount(shared)) for _ in range(2))
    first.enter()
    second.enter()
    second.enter()
    for admission in (first, second):
        with pytest.raises(RequestError) as refused:
            admission.enter()
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (first.active, second.active, shared.value) == (1, 2, 3)
    second.leave()
    first.enter()  # the freed slot is anyone's
    assert (first.active, second.active, shared.value) == (2, 1, 3)


# -- servers ------------------------------------------------------------------------------------
@requires_espeak
def test_streams_over_several_connections_are_transcribed_by_both_workers() -> None:
    """The bundled model (greedy, to keep it quick) in two workers: every stream right, the same
    text whichever worker decoded it, and /metrics counting the streams of both."""
    clips = [synthesize(text) for text in TEXTS]
    server = WorkerServer(None, "--beam-size", "1")
    try:

        def run(index: int) -> str:
            pcm, rate = clips[index]
            with own_connection(server.target) as channel:
                return " ".join(finals(stream(_stub(channel), config(rate), fixed_chunks(pcm, 3200))))

        transcripts: list[set[str]] = [set() for _ in clips]
        sent = 0
        for round_ in range(10):
            with ThreadPoolExecutor(len(clips)) as pool:
                for index, text in enumerate(pool.map(run, range(len(clips)))):
                    transcripts[index].add(text)
            sent += len(clips)
            served = [server.worker_total(pid, "asr_streams_total") for pid in server.pids]
            if round_ and all(served):
                break
        assert all(served), f"one worker served every stream: {served}"
        assert sum(served) == sent
        assert server.scraped("asr_streams_total") == sent
        assert wait_until(lambda: server.scraped("asr_active_streams") == 0)
        assert all(len(texts) == 1 for texts in transcripts), transcripts
        hypotheses = [texts.pop() for texts in transcripts]
        assert jiwer.wer(TEXTS, hypotheses) <= MAX_WER, list(zip(TEXTS, hypotheses, strict=True))
        page = server.page()
        assert "_created" not in page
        build = [line for line in page.splitlines() if line.startswith("asr_build_info{")]
        assert len(build) == 1 and build[0].endswith(" 1.0") and "pid=" not in page
    finally:
        server.stop()


@requires_espeak
def test_max_streams_holds_for_the_server_as_a_whole(random_model_dir: Path) -> None:
    pcm, rate = synthesize("we will meet at the station at nine")
    server = WorkerServer(random_model_dir, "--max-streams", "3")
    release = threading.Event()

    def held() -> Iterator[asr_pb2.StreamingRecognizeRequest]:
        yield asr_pb2.StreamingRecognizeRequest(streaming_config=config(rate))
        yield asr_pb2.StreamingRecognizeRequest(audio_content=pcm[:16000])
        release.wait(60)

    channels = [own_connection(server.target) for _ in range(3)]
    try:
        calls = [_stub(channel).StreamingRecognize(held(), timeout=60) for channel in channels]
        assert wait_until(lambda: server.scraped("asr_active_streams") == 3, 20)
        # The 4th stream is refused by whichever worker its connection reaches: try new
        # connections until both workers have refused one.
        for _ in range(24):
            with own_connection(server.target) as channel, pytest.raises(grpc.RpcError) as refused:
                stream(_stub(channel), config(rate), fixed_chunks(pcm[:3200], 3200), timeout=10)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit of 3 concurrent streams" in refused.value.details()
            refusing = [server.worker_total(pid, "asr_errors_total", code="RESOURCE_EXHAUSTED") for pid in server.pids]
            if all(refusing):
                break
        assert all(refusing), f"only one worker was tried: {refusing}"
        release.set()
        for call in calls:
            list(call)
            assert call.code() == grpc.StatusCode.OK
        with own_connection(server.target) as channel:
            assert stream(_stub(channel), config(rate), fixed_chunks(pcm, 3200))  # slots free again
    finally:
        release.set()
        for channel in channels:
            channel.close()
        server.stop()


def _paced(pcm: bytes, rate: int, started: threading.Event) -> Iterator[asr_pb2.StreamingRecognizeRequest]:
    yield asr_pb2.StreamingRecognizeRequest(streaming_config=config(rate))
    for piece in fixed_chunks(pcm, rate // 10 * 2):  # 100 ms chunks in real time
        yield asr_pb2.StreamingRecognizeRequest(audio_content=piece)
        started.set()
        time.sleep(0.1)


@requires_espeak
def test_sigterm_drains_both_workers_and_the_parent_exits_0(random_model_dir: Path) -> None:
    pcm, rate = synthesize("we will meet at the station at nine")
    pcm = pcm * 2  # about 5 s at real-time pace: in flight at SIGTERM
    server = WorkerServer(random_model_dir, drain_timeout_s=30)
    outcomes: list[dict[str, object]] = []
    threads: list[threading.Thread] = []

    def live(outcome: dict[str, object]) -> None:
        started = threading.Event()
        outcome["started"] = started
        try:
            with own_connection(server.target) as channel:
                outcome["responses"] = list(_stub(channel).StreamingRecognize(_paced(pcm, rate, started), timeout=60))
        except grpc.RpcError as error:
            outcome["error"] = f"{error.code()}: {error.details()}"

    try:
        # Streams on connections of their own until both workers have one in flight.
        for count in range(1, 13):
            outcomes.append({})
            threads.append(threading.Thread(target=live, args=(outcomes[-1],)))
            threads[-1].start()
            assert wait_until(lambda n=count: server.scraped("asr_active_streams") == n, 20)
            if all(server.worker_total(pid, "asr_active_streams") for pid in server.pids):
                break
        assert all(server.worker_total(pid, "asr_active_streams") for pid in server.pids)
        server.process.send_signal(signal.SIGTERM)
        assert wait_until(lambda: _health(server.target) == NOT_SERVING, 10)
        with own_connection(server.target) as channel, pytest.raises(grpc.RpcError) as refused:
            stream(_stub(channel), config(rate), fixed_chunks(pcm[:3200], 3200), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        for thread in threads:
            thread.join(60)
        errors = [o["error"] for o in outcomes if "error" in o]
        assert not errors, (errors, "".join(server.server.log)[-3000:])
        for outcome in outcomes:
            responses = outcome["responses"]
            assert finals(responses), "a stream lost its final"  # type: ignore[arg-type]
            assert responses[-1].audio_processed.ToMilliseconds() > 4000  # type: ignore[index]
        assert server.process.wait(30) == 0, "".join(server.server.log)
        log = "".join(server.server.log)
        drained = dict(re.findall(r"\[worker (\d)\]: draining: (\d+) stream", log))
        assert drained.keys() == {"1", "2"} and all(int(n) >= 1 for n in drained.values()), drained
        assert len(re.findall(r"worker \d \(pid \d+\) exited with status 0", log)) == 2
        assert not glob.glob(server.metrics_dir), "the parent removes the metrics directory"
    finally:
        server.stop()


def test_health_is_serving_only_once_every_worker_is_ready(random_model_dir: Path) -> None:
    """Worker 2 is stopped (SIGSTOP) before it has loaded anything: worker 1 warms up and waits,
    NOT_SERVING, until worker 2 goes on and is ready too."""
    server = WorkerServer(random_model_dir, wait=False)
    try:
        os.kill(server.pids[1], signal.SIGSTOP)
        server.server.port = int(server.server.wait_for(r"\[worker 1\]: gRPC listening on [\d.]+:(\d+)")[1])
        server.server.wait_for(r"\[worker 1\]: worker 1 of 2 ready")
        answers = [_health(server.target) for _ in range(10)]
        assert SERVING not in answers and NOT_SERVING in answers, answers
        assert not any("all 2 workers ready" in line for line in server.server.log)
        os.kill(server.pids[1], signal.SIGCONT)
        server.server.wait_for("all 2 workers ready")
        assert wait_until(lambda: _health(server.target) == SERVING, 20)
        assert [_health(server.target) for _ in range(6)] == [SERVING] * 6
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0, "".join(server.server.log)
    finally:
        server.stop()


def test_sigterm_while_the_workers_start_stops_them_once_loaded(random_model_dir: Path) -> None:
    server = WorkerServer(random_model_dir, wait=False)
    try:
        server.process.send_signal(signal.SIGTERM)  # the workers are still importing
        assert server.process.wait(60) == 0, "".join(server.server.log)
        time.sleep(0.2)  # the log reader's last lines
        log = "".join(server.server.log)
        assert "all 2 workers ready" not in log and "serving models" not in log
        assert len(re.findall(r"\[worker \d\]: draining: 0 stream", log)) == 2, log
    finally:
        server.stop()


def test_a_worker_that_dies_stops_the_server(random_model_dir: Path) -> None:
    """Fail fast: the parent logs the death, drains the other worker and exits non-zero."""
    server = WorkerServer(random_model_dir)
    try:
        os.kill(server.pids[1], signal.SIGKILL)
        assert server.process.wait(30) == 128 + signal.SIGKILL
        time.sleep(0.2)  # the log reader's last lines
        log = "".join(server.server.log)
        assert f"worker 2 (pid {server.pids[1]}) was killed by SIGKILL unexpectedly" in log, log
        assert f"worker 1 (pid {server.pids[0]}) exited with status 0" in log, log
        assert not Path(f"/proc/{server.pids[0]}").exists()
    finally:
        server.stop()


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid``."""
    children = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(Path(stat).parent.name))
    return children


def test_one_worker_is_one_process(random_model_dir: Path) -> None:
    server = ServerProcess(random_model_dir, args=["--workers", "1"])
    try:
        with grpc.insecure_channel(server.target) as channel:
            server.wait_serving(channel)
        assert _children(server.process.pid) == []
        assert not any("worker processes" in line or "[worker" in line for line in server.log)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
    finally:
        server.kill()


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "another SO_REUSEPORT server"])
def test_a_port_in_use_is_refused_before_any_worker_starts(random_model_dir: Path, reuse_port: bool) -> None:
    with socket.socket() as taken:
        if reuse_port:  # what another --workers server on the port looks like
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "server.main", "--model-dir", str(random_model_dir)]
        command += ["--host", "127.0.0.1", "--port", str(port), "--metrics-port", "-1", "--workers", "2"]
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"asr-server: cannot listen on 127.0.0.1:{port} (--port)" in result.stderr
    assert "Traceback" not in result.stderr and "started" not in result.stderr
