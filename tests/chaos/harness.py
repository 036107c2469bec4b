"""The chaos soak's moving parts, shared by ``tests/chaos`` (small N) and ``bench/chaos.py``.

A soak runs real workers (``celeriac worker -P prefork``, processes of their own session)
on a project folder whose ``tasks.py`` is ``TASKS``: one ``acks_late`` task that sleeps a
random 0-50 ms and appends a start and an end line (task id, pid, process group, time) to a
run log, written with ``O_APPEND`` so lines of concurrent processes never interleave. While
tasks run, the soak kills workers (``kill -9`` of the whole process group, then a restart) or
restarts the broker (cleanly, then with ``kill -9``), and writes down each disruption.

``Ledger`` reads the run log back and ``judge`` compares it with what was sent and what the
result store holds: executed (distinct ids), lost (sent, never started), results missing (no
SUCCESS stored), duplicates (runs beyond the first of an id) split into those explained by a
disruption (the earlier run's worker was killed after it started, or the broker went down
after it started: its acknowledgement may not have reached the broker) and those
unexplained, which must be none. Crashes are workers that exited without being killed, or
whose log says their consumer loop crashed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from celeriac.exceptions import OperationalError
from tests.support import amqp_support, redis_support
from tests.support.polling import poll
from tests.support.workers import WorkerProject

TASKS = """
import json
import os
import random
import time

from celeriac import Celery

app = Celery("chaos", broker=os.environ["CHAOS_BROKER"], backend=os.environ["CHAOS_BACKEND"])
app.conf.broker_transport_options = json.loads(os.environ.get("CHAOS_BROKER_OPTIONS", "{}"))
app.conf.result_backend_transport_options = json.loads(
    os.environ.get("CHAOS_BACKEND_OPTIONS", "{}")
)
app.conf.task_default_queue = os.environ.get("CHAOS_QUEUE", "chaos")
app.conf.worker_hijack_root_logger = False

_log = {"pid": None, "fd": None}


def _record(kind, task_id):
    pid = os.getpid()
    if _log["pid"] != pid:  # a forked pool child opens its own descriptor
        _log["fd"] = os.open(os.environ["CHAOS_RUNLOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        _log["pid"] = pid
    line = f"{kind} {task_id} {pid} {os.getpgid(0)} {time.time():.6f}\\n"
    os.write(_log["fd"], line.encode())


@app.task(name="chaos.work", bind=True, acks_late=True)
def work(self, max_ms=50):
    _record("S", self.request.id)
    time.sleep(random.uniform(0, max_ms) / 1000)
    _record("E", self.request.id)
    return self.request.id
"""


@dataclasses.dataclass(frozen=True)
class Broker:
    """Where a soak's messages and results go: URLs and transport options."""

    name: str  # redis, amqp, sqlite
    url: str
    backend: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    backend_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    cleanup: Callable[[], None] = lambda: None


def redis_broker(
    url: str,
    db: int,
    port: int = redis_support.PORT,
    *,
    same_results: bool = False,
    **options: Any,
) -> Broker:
    """The Redis broker at ``url`` under a fresh key prefix; results on the machine's Redis,
    or with ``same_results`` on the broker's server too (as most deployments have it)."""
    prefix = redis_support.unique_prefix()
    backend_db = db if same_results else redis_support.BACKEND_DB
    backend_port = port if same_results else redis_support.PORT
    backend = url if same_results else f"redis://{redis_support.HOST}:{backend_port}/{backend_db}"

    def cleanup() -> None:
        with contextlib.suppress(Exception):
            redis_support.delete_prefix(db, prefix, port)
        with contextlib.suppress(Exception):
            redis_support.delete_prefix(backend_db, prefix, backend_port)

    opts = {"global_keyprefix": prefix, "lease_timeout": 2, "recover_interval": 0.2, **options}
    return Broker("redis", url, backend, opts, {"global_keyprefix": prefix}, cleanup)


def sqlite_broker(folder: Path, **options: Any) -> Broker:
    """The embedded broker and result store in one file, as with no configuration at all."""
    url = f"sqlite:///{folder / 'celeriac.sqlite'}"
    return Broker("sqlite", url, url, {"lease_timeout": 5, **options})


def amqp_broker(url: str, results: Path) -> Broker:
    """RabbitMQ at ``url``; results in a SQLite file of the soak's."""
    return Broker("amqp", url, f"sqlite:///{results / 'results.sqlite'}")


class Soak:
    """A project folder, its workers, its run log and the disruptions made to it."""

    def __init__(self, root: Path, broker: Broker, *, queue: str = "chaos") -> None:
        self.root = root
        self.broker = broker
        self.runlog = root / "runs.log"
        env = {
            "CHAOS_BROKER": broker.url,
            "CHAOS_BACKEND": broker.backend,
            "CHAOS_BROKER_OPTIONS": json.dumps(broker.options),
            "CHAOS_BACKEND_OPTIONS": json.dumps(broker.backend_options),
            "CHAOS_QUEUE": queue,
            "CHAOS_RUNLOG": str(self.runlog),
        }
        self.project = WorkerProject(root, TASKS, env)
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)  # the client app, imported here, reads the same settings
        try:
            self.tasks = self.project.load_tasks()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        self.workers: dict[str, subprocess.Popen[bytes]] = {}  # slot -> current process
        self.names: dict[str, str] = {}  # slot -> current worker name (its log file)
        self.kills: list[tuple[int, float]] = []  # (process group, time)
        self.outages: list[tuple[float, float]] = []  # (down, up)
        self.crashes: list[str] = []
        self.sends: dict[str, tuple[float, float]] = {}  # id -> when its delay() ran
        self._generation = 0

    # -- workers ------------------------------------------------------------------------

    def start_workers(self, count: int, *args: str) -> None:
        for slot in range(count):
            self.start_worker(f"w{slot}", *args)

    def start_worker(self, slot: str, *args: str) -> subprocess.Popen[bytes]:
        self._generation += 1
        name = f"{slot}-{self._generation}"
        proc = self.project.start_worker("-P", "prefork", "-c", "2", *args, name=name)
        self.workers[slot], self.names[slot] = proc, name
        return proc

    def kill_and_restart(self, rng: random.Random) -> None:
        """``kill -9`` one worker's whole process group, then start a new one in its slot."""
        slot = rng.choice(sorted(self.workers))
        proc = self.workers[slot]
        self.check_alive()
        self.kills.append((proc.pid, time.time()))
        self.project.kill9(proc)
        self.start_worker(slot)

    def check_alive(self) -> None:
        """Note every worker that exited although nobody killed it (a crash)."""
        for slot, proc in self.workers.items():
            if proc.poll() is not None and not any(pid == proc.pid for pid, _ in self.kills):
                self.crashes.append(f"{self.names[slot]} exited with {proc.returncode}")
        for name in self._all_names():
            if "Consumer loop crashed" in self.project.log(name):
                self.crashes.append(f"{name}: consumer loop crashed")

    def _all_names(self) -> list[str]:
        return sorted(path.stem for path in self.root.glob("w*-*.log"))

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{self.project.log(n)[-3000:]}" for n in self._all_names())

    def close(self) -> None:
        self.project.stop_all()
        self.broker.cleanup()

    # -- sending and waiting ------------------------------------------------------------

    def send(self, count: int, max_ms: int = 50) -> list[str]:
        return [self.tasks.work.delay(max_ms).id for _ in range(count)]

    def finish(self, ids: Sequence[str], timeout: float, settle: float) -> None:
        """Until every id has run to its end (or ``timeout``: ``judge`` then counts what is
        lost), then ``settle`` seconds more for redeliveries still on their way (a lease that
        lapses, a requeue after a kill)."""
        wanted = set(ids)
        poll(lambda: wanted <= Ledger.read(self.runlog).finished(), timeout, 0.25)
        time.sleep(settle)

    def results(self, ids: Sequence[str]) -> dict[str, str]:
        """Each id's stored state (ids with nothing stored are absent)."""
        app = self.tasks.app
        states: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            found = app.results.backend.fetch_many(list(ids[start : start + 500]))
            states.update(
                (tid, app.results.decode(p).get("status", "?")) for tid, p in found.items()
            )
        return states


@dataclasses.dataclass
class Ledger:
    """The run log: every start and end of every task id."""

    starts: dict[str, list[tuple[int, int, float]]]  # id -> [(pid, pgid, time)] in order
    ends: dict[str, list[tuple[int, int, float]]]

    @classmethod
    def read(cls, path: Path) -> Ledger:
        starts: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
        ends: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
        if path.exists():
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) != 5:
                    continue  # a line cut short by a kill
                kind, tid, pid, pgid, at = parts
                (starts if kind == "S" else ends)[tid].append((int(pid), int(pgid), float(at)))
        return cls(dict(starts), dict(ends))

    def finished(self) -> set[str]:
        return set(self.ends)


@dataclasses.dataclass
class Report:
    """One soak's figures, as the report table shows them."""

    broker: str
    scenario: str
    sent: int
    executed: int = 0
    lost: int = 0
    results_missing: int = 0
    duplicates_explained: int = 0
    duplicates_unexplained: int = 0
    crashes: int = 0
    kills: int = 0
    outages: int = 0
    send_errors: int = 0  # delay() calls that raised (allowed: the broker was down)
    unclear_errors: int = 0  # of those, not an OperationalError saying what failed
    bad: int = 0  # malformed entries fed in (bad input only)
    dead_lettered: int = 0  # of those, in the dead-letter store with the right reason
    misfiled: int = 0  # bad ones missing there or with a wrong reason, unexpected letters
    seconds: float = 0.0
    details: list[str] = dataclasses.field(default_factory=list)

    COLUMNS = (
        "broker",
        "scenario",
        "sent",
        "executed",
        "lost",
        "results_missing",
        "duplicates_explained",
        "duplicates_unexplained",
        "crashes",
        "kills",
        "outages",
        "send_errors",
        "unclear_errors",
        "bad",
        "dead_lettered",
        "misfiled",
        "seconds",
    )

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.results_missing
            or self.duplicates_unexplained
            or self.crashes
            or self.misfiled
            or self.unclear_errors
        )

    def row(self) -> list[str]:
        values = [getattr(self, column) for column in self.COLUMNS]
        return [f"{v:.1f}" if isinstance(v, float) else str(v) for v in values]


def judge(soak: Soak, scenario: str, ids: Sequence[str], seconds: float) -> Report:
    """Compare what was sent with the run log and the result store (module docstring)."""
    soak.check_alive()
    ledger = Ledger.read(soak.runlog)
    report = Report(soak.broker.name, scenario, len(ids), seconds=seconds)
    report.kills, report.outages = len(soak.kills), len(soak.outages)
    report.crashes = len(set(soak.crashes))
    report.details += sorted(set(soak.crashes))
    report.executed = sum(1 for tid in ids if tid in ledger.starts)
    lost = [tid for tid in ids if tid not in ledger.starts]
    report.lost = len(lost)
    states = soak.results(ids)
    missing = [tid for tid in ids if states.get(tid) != "SUCCESS"]
    report.results_missing = len(missing)
    report.details += [f"lost: {tid}" for tid in lost[:10]]
    report.details += [f"result of {tid}: {states.get(tid, 'none')}" for tid in missing[:10]]
    for tid in ids:
        runs = ledger.starts.get(tid, [])
        for earlier, later in itertools.pairwise(runs):
            if _explained(soak, earlier, later):
                report.duplicates_explained += 1
            elif _published_twice(soak, tid):
                report.duplicates_explained += 1
                report.details.append(
                    f"duplicate of {tid}: its delay() ran while the broker went down (a publish"
                    " retried after the server had taken it, defect 2 of issue 11)"
                )
            else:
                report.duplicates_unexplained += 1
                report.details.append(f"unexplained duplicate of {tid}: {earlier} then {later}")
    return report


def _explained(soak: Soak, earlier: tuple[int, int, float], later: tuple[int, int, float]) -> bool:
    """Whether a disruption can have kept the earlier run's ack from the broker: its worker's
    process group was killed after it started and before the next run, or the broker was
    down (or going down) at some time between the two."""
    _, pgid, started = earlier
    _, _, again = later
    if any(killed == pgid and started <= at <= again for killed, at in soak.kills):
        return True
    return any(down <= again and started <= up for down, up in soak.outages)


def _published_twice(soak: Soak, task_id: str) -> bool:
    """Whether the id's ``delay()`` overlapped an outage: a publish whose reply was lost is
    retried, and the broker may then hold the message twice (at-least-once publishing)."""
    sent = soak.sends.get(task_id)
    return sent is not None and any(down <= sent[1] and sent[0] <= up for down, up in soak.outages)


# -- the scenarios -------------------------------------------------------------------------


def worker_kills(
    soak: Soak,
    count: int,
    *,
    workers: int = 2,
    every: tuple[float, float] = (3.0, 6.0),
    seed: int = 1,
    timeout: float = 600.0,
    settle: float = 4.0,
) -> Report:
    """``count`` tasks through ``workers`` prefork workers, one killed every ``every`` s.

    The first kill comes while three quarters of the tasks are still to be sent, as soon as
    one task has started, so a loaded machine that sends slowly still sees a worker die
    mid-run (a fixed first pause could outlast the whole drain)."""
    rng = random.Random(seed)
    soak.start_workers(workers)
    began = time.monotonic()
    deadline = time.monotonic() + timeout
    ids = soak.send(max(count // 4, 1))
    poll(lambda: bool(Ledger.read(soak.runlog).starts), timeout, 0.02)
    soak.kill_and_restart(rng)
    ids += soak.send(count - len(ids))
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(*every))
        if set(ids) <= Ledger.read(soak.runlog).finished():
            break
        soak.kill_and_restart(rng)
    soak.finish(ids, max(deadline - time.monotonic(), 1.0), settle)
    return judge(soak, "worker kills", ids, time.monotonic() - began)


class Restartable:
    """A broker a soak may stop and start again: clean stop, ``kill -9``, start."""

    def __init__(
        self, clean_stop: Callable[[], None], kill: Callable[[], None], start: Callable[[], None]
    ) -> None:
        self.clean_stop, self.kill, self.start = clean_stop, kill, start


def redis_restartable(server: redis_support.RedisServer) -> Restartable:
    def clean_stop() -> None:  # SHUTDOWN: Redis flushes its append-only file and exits
        assert server.process is not None
        conn = redis_support.client(0, server.port)
        with contextlib.suppress(Exception):
            conn.shutdown()
        conn.close()
        server.process.wait(30)
        server.process = None

    def kill() -> None:
        assert server.process is not None
        server.process.kill()
        server.process.wait(30)
        server.process = None

    return Restartable(clean_stop, kill, server.start)


def amqp_restartable(node: amqp_support.PrivateNode) -> Restartable:
    def kill() -> None:
        proc = node._proc
        assert proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the Erlang VM and everything it started
        proc.wait(30)
        node._proc = None

    def start() -> None:  # the old VM's last processes may still hold the port a moment
        deadline = time.monotonic() + 30
        while not _port_free(node.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        node.start()

    return Restartable(node.stop, kill, start)


def _port_free(port: int) -> bool:
    """Whether a listener could bind ``port`` now (with SO_REUSEADDR, as RabbitMQ binds)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((amqp_support.HOST, port))
        except OSError:
            return False
    return True


class _Sender(threading.Thread):
    """Sends ``count`` tasks at a steady pace, through outages; keeps what each call did."""

    def __init__(self, soak: Soak, count: int, pace: float) -> None:
        super().__init__(name="chaos-sender", daemon=True)
        self.soak, self.count, self.pace = soak, count, pace
        self.sent: list[str] = []
        self.errors: list[str] = []
        self.unclear: list[str] = []

    def run(self) -> None:
        for _ in range(self.count):
            began = time.time()
            try:
                task_id = self.soak.tasks.work.delay(50).id
                self.sent.append(task_id)
                self.soak.sends[task_id] = (began, time.time())
            except OperationalError as exc:  # allowed while the broker is down: noted
                self.errors.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
            except Exception as exc:  # not the documented error: a failure
                self.unclear.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc!r}")
            time.sleep(self.pace)


def broker_restarts(
    soak: Soak,
    broker: Restartable,
    count: int,
    *,
    workers: int = 2,
    duration: float = 20.0,
    down_for: float = 2.0,
    timeout: float = 300.0,
    settle: float = 4.0,
) -> Report:
    """``count`` tasks sent over ``duration`` s while the broker is stopped cleanly at a third
    of it and killed with ``kill -9`` at two thirds, each time down ``down_for`` s; the
    workers are never restarted, and must go on."""
    soak.start_workers(workers)
    pids = {slot: proc.pid for slot, proc in soak.workers.items()}
    began = time.monotonic()
    sender = _Sender(soak, count, duration / max(count, 1))
    sender.start()
    for stop in (broker.clean_stop, broker.kill):
        time.sleep(duration / 3)
        down = time.time()
        stop()
        time.sleep(down_for)
        broker.start()
        soak.outages.append((down, time.time()))
    sender.join(timeout)
    after = soak.send(max(count // 20, 5))  # sent once all is calm: the workers still consume
    ids = sender.sent + after
    soak.finish(ids, timeout, settle)
    report = judge(soak, "broker restarts", ids, time.monotonic() - began)
    report.send_errors = len(sender.errors) + len(sender.unclear)
    report.unclear_errors = len(sender.unclear)
    report.details += sorted(set(sender.unclear))[:5] + sorted(set(sender.errors))[:3]
    for slot, proc in soak.workers.items():
        if proc.pid != pids[slot] or proc.poll() is not None:
            report.crashes += 1
            report.details.append(f"worker {soak.names[slot]} did not survive the restarts")
    return report


@contextlib.contextmanager
def soak_in(root: Path, broker: Broker, queue: str = "chaos") -> Iterator[Soak]:
    soak = Soak(root, broker, queue=queue)
    try:
        yield soak
    finally:
        soak.close()


def table(reports: Sequence[Report]) -> str:
    """The reports as a Markdown table."""
    lines = ["| " + " | ".join(Report.COLUMNS) + " |", "|" + "---|" * len(Report.COLUMNS)]
    lines += ["| " + " | ".join(report.row()) + " |" for report in reports]
    return "\n".join(lines)
