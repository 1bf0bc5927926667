"""Private services for fault tests: a Kafka broker and a Redis server that one test may freeze, kill or
restart without disturbing the shared ones (deploy/services.sh) that other tests use at the same time.

- `private_kafka(folder)`: a single-node KRaft broker (broker + controller) from the jars
  `deploy/services.sh jars` resolves into .cache/kafka-*/lib, with services.sh's server.properties, on two
  free loopback ports, data under `folder`. It can be frozen (SIGSTOP/SIGCONT), stopped and started again
  on the same data folder and port.
- `private_redis(folder, password=None)`: Debian's redis-server (services.sh installs it) on a free port,
  AOF on with `appendfsync always` (so a SIGKILL loses nothing that was acknowledged), optional
  `--requirepass`. It can be killed and started again on the same folder (the AOF brings the data back).

Every wait is bounded, every child gets SIGKILL if the test process dies (PR_SET_PDEATHSIG), and the
context managers stop what they started and remove its files, pass or fail.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "deploy" / "services.sh"
POM = ROOT / "deploy" / "kafka" / "pom.xml"
HOST = "127.0.0.1"
CLUSTER_ID = "4L6g3nShT-eMCtK--X86sw"
KAFKA_START_TIMEOUT_S = 90.0
KAFKA_STOP_TIMEOUT_S = 45.0
REDIS_START_TIMEOUT_S = 20.0
JARS_TIMEOUT_S = 600.0
LOG_TAIL_CHARS = 4000


# ------------------------------------------------------------------------------------------------ ports


# Ports for the servers and endpoints tests start: below the kernel's ephemeral range (32768-60999 here),
# so no client socket of any process can take one as its local port while a test has its server stopped
# (a broker restarted on its port), and one slice per parallel test process (pytest-xdist's gwN).
PORT_BASE, PORT_SLICE = 20_000, 1_500
_next_port: list[int] = []


def free_ports(n: int = 1) -> list[int]:
    """`n` distinct loopback ports that nothing listens on right now (held together while chosen), from
    this test process's slice of the range below the ephemeral ports."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    low = PORT_BASE + (index % 8) * PORT_SLICE
    if not _next_port:
        _next_port.append(low + (os.getpid() * 7) % PORT_SLICE)
    socks: list[socket.socket] = []
    try:
        for _ in range(PORT_SLICE):
            if len(socks) == n:
                break
            port = _next_port[0]
            _next_port[0] = low + (port + 1 - low) % PORT_SLICE
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((HOST, port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        if len(socks) < n:
            raise AssertionError(f"no {n} free ports in {low}-{low + PORT_SLICE - 1}")
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole block: bound by us, never listening, so no
    other process can start listening on it meanwhile."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        yield s.getsockname()[1]
    finally:
        s.close()


def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies (Linux prctl PR_SET_PDEATHSIG)."""
    with suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def _tail(path: Path) -> str:
    if not path.exists():
        return f"(no file {path})"
    text = path.read_text(errors="replace")
    return text if len(text) <= LOG_TAIL_CHARS else "...\n" + text[-LOG_TAIL_CHARS:]


def _end(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """SIGCONT + SIGTERM, wait `timeout`, then SIGKILL; what happened, for logs."""
    if proc.poll() is not None:
        return f"had exited ({proc.returncode})"
    with suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGCONT)  # a stopped process would not act on SIGTERM
        proc.terminate()
    try:
        proc.wait(timeout)
        return f"stopped ({proc.returncode})"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return f"killed after {timeout:.0f}s"


# ------------------------------------------------------------------------------------------------ Kafka


def kafka_lib() -> Path:
    """The broker's jars, as `deploy/services.sh jars` resolves them (run it if they are missing)."""
    cache = Path(os.environ.get("PORTSCAN_CACHE") or ROOT / ".cache")
    lib = cache / f"kafka-{hashlib.sha256(POM.read_bytes()).hexdigest()[:12]}" / "lib"
    if not (lib / ".complete").exists():
        try:
            done = subprocess.run(
                [str(SERVICES), "jars"], capture_output=True, timeout=JARS_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"`deploy/services.sh jars` did not finish in {JARS_TIMEOUT_S:.0f}s"
            ) from exc
        if done.returncode != 0 or not (lib / ".complete").exists():
            raise AssertionError(
                f"`deploy/services.sh jars` exited {done.returncode} without jars in {lib}:\n"
                + done.stderr.decode(errors="replace")[-LOG_TAIL_CHARS:]
            )
    return lib


def server_properties(port: int, controller_port: int, data: Path) -> str:
    """deploy/services.sh's server.properties, on these ports and this data folder."""
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{controller_port}
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}
advertised.listeners=PLAINTEXT://{HOST}:{port}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
default.replication.factor=1
min.insync.replicas=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
num.partitions=1
auto.create.topics.enable=true
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
log.cleaner.dedupe.buffer.size=2097152
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.initial.task.delay.ms=100
log.delete.delay.ms=1000
"""


class PrivateKafka:
    """One single-node KRaft broker in `folder`: start, freeze/thaw, stop, start again (same data, port)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port, self.controller_port = free_ports(2)
        self.properties = folder / "server.properties"
        self.log = folder / "broker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False
        self.starts = 0
        self._lib = kafka_lib()
        folder.mkdir(parents=True, exist_ok=True)
        self.properties.write_text(server_properties(self.port, self.controller_port, folder / "data"))

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def _java(self, main: str, *args: str) -> list[str]:
        heap = os.environ.get("KAFKA_HEAP_OPTS", "-Xms256m -Xmx512m").split()
        return [
            "java",
            *heap,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={ROOT / 'deploy' / 'kafka' / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.folder / 'logs'}",
            "-cp",
            f"{self._lib}/*",
            main,
            *args,
        ]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = KAFKA_START_TIMEOUT_S) -> None:
        """Format the storage (first start only), start the broker, wait until it answers metadata."""
        assert not self.running(), "the private broker is already running"
        t0 = time.monotonic()
        if not (self.folder / "data" / "meta.properties").exists():
            fmt = self._java(
                "kafka.tools.StorageTool",
                "format",
                "--config",
                str(self.properties),
                f"--cluster-id={CLUSTER_ID}",
            )
            done = subprocess.run(fmt, capture_output=True, timeout=timeout, check=False)
            assert done.returncode == 0, "Kafka storage format failed:\n" + (
                done.stdout + done.stderr
            ).decode(errors="replace")
        with self.log.open("ab") as fh:
            fh.write(f"\n===== {time.strftime('%X')} start on {self.address}\n".encode())
            self.proc = subprocess.Popen(
                self._java("kafka.Kafka", str(self.properties)),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        self.frozen = False
        self.starts += 1
        deadline = t0 + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the private Kafka broker exited ({self.proc.returncode}) during start-up:\n"
                    + _tail(self.log)
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise AssertionError(
                    f"the private Kafka broker did not open {self.address} in {timeout:.0f}s"
                )
            time.sleep(0.1)
        self.wait_ready(deadline - time.monotonic())

    def wait_ready(self, timeout: float) -> None:
        """Until a metadata request lists the broker (its port may open a little before)."""
        client = AdminClient({"bootstrap.servers": self.address, "socket.connection.setup.timeout.ms": 3000})
        deadline = time.monotonic() + max(timeout, 1.0)
        while True:
            try:
                if client.list_topics(timeout=min(5.0, max(0.5, deadline - time.monotonic()))).brokers:
                    return
            except KafkaException:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError(f"the private Kafka broker at {self.address} does not answer metadata")
            time.sleep(0.2)

    def freeze(self) -> None:
        """SIGSTOP: the broker keeps its sockets but answers nothing."""
        assert self.proc is not None and self.running(), "the private broker is not running"
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.proc is not None and self.frozen:
            with suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self, timeout: float = KAFKA_STOP_TIMEOUT_S) -> str:
        """SIGTERM (a controlled shutdown) and wait, SIGKILL after `timeout`; the data folder stays."""
        if self.proc is None:
            return "not started"
        what = _end(self.proc, timeout)
        self.frozen = False
        with self.log.open("ab") as fh:
            fh.write(f"\n===== {time.strftime('%X')} {what}\n".encode())
        return what

    def ensure_running(self) -> None:
        """Thawed and started (after a test that left it frozen or stopped)."""
        self.thaw()
        if not self.running():
            self.start()
        else:
            self.wait_ready(30.0)

    def log_tail(self) -> str:
        return _tail(self.log)


@contextmanager
def private_kafka(folder: Path) -> Iterator[PrivateKafka]:
    """A started private broker; stopped and its folder removed when the block ends."""
    broker = PrivateKafka(folder)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ Redis


def redis_server_bin() -> str:
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(path, os.X_OK):
        raise AssertionError(
            "redis-server is not installed; `deploy/services.sh up` installs Debian's package"
        )
    return path


class PrivateRedis:
    """A redis-server on a free port with its files in `folder`: start, kill (SIGKILL), start again."""

    def __init__(self, folder: Path, password: str | None = None, appendonly: bool = True) -> None:
        self.folder = folder
        self.password = password
        self.appendonly = appendonly
        self.port = free_ports(1)[0]
        self.log = folder / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._bin = redis_server_bin()
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def url(self, db: int = 0, password: str | None = None) -> str:
        """redis://[:password@]127.0.0.1:PORT/db (no password unless given)."""
        auth = f":{password}@" if password is not None else ""
        return f"redis://{auth}{self.address}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host=HOST, port=self.port, password=self.password, socket_connect_timeout=2, socket_timeout=5
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = REDIS_START_TIMEOUT_S) -> None:
        """Start (loading the AOF, if any) and wait until it answers PING."""
        assert not self.running(), "the private redis-server is already running"
        argv = [
            self._bin,
            "--bind", HOST,
            "--port", str(self.port),
            "--dir", str(self.folder),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--logfile", str(self.log),
        ]  # fmt: skip
        if self.password is not None:
            argv += ["--requirepass", self.password]
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        client = self.client()
        try:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"the private redis-server exited ({self.proc.returncode}):\n{_tail(self.log)}"
                    )
                try:
                    if client.ping():
                        return
                except redis.BusyLoadingError:
                    pass  # loading its AOF
                except redis.ConnectionError:
                    pass
                if time.monotonic() >= deadline:
                    raise AssertionError(f"the private redis-server on {self.address} did not answer PING")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final write (the AOF has every acknowledged write)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> str:
        if self.proc is None:
            return "not started"
        return _end(self.proc, timeout)

    def log_tail(self) -> str:
        return _tail(self.log)


@contextmanager
def private_redis(
    folder: Path, password: str | None = None, appendonly: bool = True
) -> Iterator[PrivateRedis]:
    """A started private redis-server; stopped and its folder removed when the block ends."""
    server = PrivateRedis(folder, password, appendonly)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
