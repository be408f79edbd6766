"""A distributed cluster of real processes for tests: `noetl-agent server --database
--nats` and `noetl-agent worker` processes on the machine's PostgreSQL and a NATS server.

``ProcessCluster`` owns a PostgreSQL schema and a JetStream stream of its own (removed by
``close``), tokens for an operator, a viewer and a worker, and the processes; the server
can be stopped (SIGTERM or SIGKILL) and started again on the same port, schema and stream.
``PrivateNats`` is a `nats-server -js` of the test's own on a free port, with its
storage in a temporary directory, that can be stopped and started again;
``PrivatePostgres`` is a PostgreSQL server of the test's own (``initdb`` and ``pg_ctl``),
that can be stopped (``immediate``: as a crash would) and started again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import asyncpg

from engine.adapters.nats.bus import NatsCommandBus
from engine.adapters.postgres import PostgresDatabase
from noetl_agent.client import Client
from noetl_agent.tokens import PostgresTokenStore
from tests.conformance.conftest import require_postgres
from tests.conftest import require_service
from tests.processes import (
    NATS_URL,
    NOETL_AGENT,
    free_port,
    port_open,
    stop,
    wait_for,
    wait_healthy,
)

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
POSTGRES_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=Path("/nonexistent"))
ROLES = {"operator": "operator", "viewer": "viewer", "worker": "worker"}


@dataclass
class PrivateNats:
    """`nats-server -js -p PORT -sd DIR`: its stream survives a stop and a start."""

    store: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        require_service(Path(NATS_SERVER).exists(), f"the nats-server binary ({NATS_SERVER})")
        self.process = subprocess.Popen(
            [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.port), 15, f"nats-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


@dataclass
class PrivatePostgres:
    """A PostgreSQL server in a new folder under the system's temporary directory (one
    the ``postgres`` user can reach: as root, its programs run as that user, since
    ``initdb`` refuses root) on a free port, user postgres, trust auth; ``remove`` stops
    it and deletes the folder."""

    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="noetl-pg-")))
    port: int = field(default_factory=free_port)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        command = [str(POSTGRES_BIN / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args[:2])} failed: {done.stderr[-1500:]}")

    def init(self) -> None:
        require_service((POSTGRES_BIN / "initdb").exists(), f"PostgreSQL's initdb ({POSTGRES_BIN})")
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.folder / "data"), "-U", "postgres", "-A", "trust")
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder}"
        data, log = str(self.folder / "data"), str(self.folder / "server.log")
        self._run("pg_ctl", "start", "-w", "-D", data, "-l", log, "-o", options)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.folder / "data"))

    def remove(self) -> None:
        if (self.folder / "data" / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class ProcessCluster:
    """A server and workers as processes; ``start`` them, ``close`` removes everything."""

    home: Path
    dsn: str
    nats_url: str = NATS_URL
    lease: float = 3.0
    workdir: Path | None = None  # the workers' working directory (relative script paths)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    port: int = field(default_factory=free_port)
    tokens: dict[str, str] = field(default_factory=dict)
    server: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _starts: int = 0

    @property
    def schema(self) -> str:
        return f"t_dist_{self.run_id}"

    @property
    def stream(self) -> str:
        return f"T_DIST_{self.run_id}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ, NOETL_HOME=str(self.home / "home"), COLUMNS="200")
        for name in ("NOETL_SERVER_URL", "NOETL_TOKEN", "NOETL_DATABASE_URL", "NOETL_NATS_URL"):
            env.pop(name, None)
        env.update(
            NOETL_DATABASE_SCHEMA=self.schema,
            NOETL_NATS_STREAM=self.stream,
            NOETL_NATS_SUBJECT_PREFIX=f"test.dist.{self.run_id}",
        )
        return env

    def create_tokens(self) -> None:
        """Migrate the schema and issue one token per role (in this process: fast)."""

        async def issue() -> None:
            db = await PostgresDatabase.open(self.dsn, schema=self.schema, max_size=2)
            try:
                await db.migrate()
                store = PostgresTokenStore(db)
                for name, role in ROLES.items():
                    self.tokens[name] = await store.create(name, "agent", [role])
            finally:
                await db.close()

        asyncio.run(issue())

    def start(self, workers: int = 2) -> None:
        self.create_tokens()
        self.start_server()
        for _ in range(workers):
            self.start_worker()
        for n in range(workers):
            wait_for(partial(self.worker_ready, n), 30, f"worker {n} taking notes", self.logs)

    def start_server(self) -> None:
        """Start the server (again) on the same port, schema and stream; wait for /health."""
        self._starts += 1
        log = self.home / f"server{self._starts}.log"
        with log.open("w") as sink:
            self.server = subprocess.Popen(
                [
                    NOETL_AGENT,
                    "server",
                    "--port",
                    str(self.port),
                    "--database",
                    self.dsn,
                    "--nats",
                    self.nats_url,
                    "--lease",
                    str(self.lease),
                    "--reap-interval",
                    "0.5",
                ],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        wait_healthy(self.url, self.server, log)

    def start_worker(self, token: str | None = None) -> subprocess.Popen[bytes]:
        """Start a worker with the worker token (or ``token``); its log is ``worker<n>.log``."""
        n = len(self.workers)
        with self.worker_log(n).open("w") as sink:
            worker = subprocess.Popen(
                [
                    NOETL_AGENT,
                    "--debug",
                    "worker",
                    "--server",
                    self.url,
                    "--token",
                    token or self.tokens["worker"],
                    "--nats",
                    self.nats_url,
                    "--worker-id",
                    f"w{n}",
                    "--concurrency",
                    "4",
                    "--lease",
                    str(self.lease),
                    "--grace",
                    "5",
                ],
                env=self.env,
                cwd=self.workdir,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        self.workers.append(worker)
        return worker

    def worker_ready(self, n: int) -> bool:
        """Worker ``n`` reached both services and takes notes now."""
        return "serving pool" in self.worker_log(n).read_text()

    def worker_log(self, n: int) -> Path:
        return self.home / f"worker{n}.log"

    def logs(self) -> str:
        """The tail of every process log, for assertion messages."""
        files = sorted(self.home.glob("*.log"))
        return "\n".join(f"--- {f.name}\n{f.read_text()[-3000:]}" for f in files)

    def client(self, who: str = "operator", timeout: float = 30.0) -> Client:
        return Client(self.url, self.tokens[who], timeout=timeout)

    def close(self) -> None:
        """Stop every process, then drop the schema and delete the stream."""
        for worker in self.workers:
            stop(worker)
        if self.server is not None:
            stop(self.server)
        asyncio.run(self._drop())

    async def _drop(self) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await connection.close()
        if port_open(int(self.nats_url.rsplit(":", 1)[1])):
            bus = await NatsCommandBus.connect(self.nats_url, stream=self.stream)
            try:
                await bus.delete_stream()
            finally:
                await bus.aclose()


def postgres_dsn() -> str:
    """The test PostgreSQL DSN; skips (fails under CI=true) when it is unreachable."""
    return asyncio.run(require_postgres())


def require_nats() -> None:
    require_service(port_open(4222), "NATS with JetStream at 127.0.0.1:4222")
