"""The multi-node layout of docs/deploy.md, on this machine: PostgreSQL, Redis, a real gunicorn, several
`manage.py qcluster` processes (each as on its own host), an independent fake Rule process, and the sweeper.

Every process runs in its own session so a fault can SIGKILL it with all its children (a host going away)."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
LOG_DIR = ROOT / "var" / "faults"

# What the suite shortens, and why (docs/reliability.md): a Rule call is bounded by 1 s + 3 s; a claim outlives
# two of them; the retry schedule's first steps are seconds instead of 30 s, 2 min, 10 min.
SUITE_SETTINGS = {
    "RULE_CONNECT_TIMEOUT": "1",
    "RULE_READ_TIMEOUT": "3",
    "WORK_LEASE_SECONDS": "15",
    "RETRY_SCHEDULE": "2,4,8,15,30,60,120",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def suite_environment(database_url: str, redis_url: str) -> dict[str, str]:
    """The production settings (DEBUG off, keys set, Redis broker) plus the suite's shortened timings."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DEBUG": "false",
        "SECRET_KEY": base64.urlsafe_b64encode(os.urandom(40)).decode(),
        "FIELD_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "ALLOW_PRIVATE_UPSTREAMS": "1",  # the fake Rule listens on 127.0.0.1
        "SANDBOX": "1",  # ... and speaks plain http, which only the sandbox (tests, make run) accepts
        "Q_WORKERS": "2",
        "Q_CLUSTER_NAME": "faults",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **SUITE_SETTINGS,
    }


class Process:
    """One service process (and its children), started in its own session, logging to var/faults/<name>.log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.popen: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> Process:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = open(LOG_DIR / f"{self.name}.log", "a")  # noqa: SIM115 - the child keeps it open
        log.write(f"\n=== start {self.starts + 1} at {time.strftime('%H:%M:%S')}\n")
        log.flush()
        self.popen = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL the process and everything it started (a host lost, mid-call)."""
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def terminate(self, timeout: float = 60) -> float:
        """SIGTERM the main process only (systemd's KillMode=mixed); seconds until it exited."""
        started = time.monotonic()
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return time.monotonic() - started

    def alive(self) -> bool:
        return bool(self.popen and self.popen.poll() is None)


class Deployment:
    """The processes of one deployment: `web`, `workers[i]`, `rule`, `sweeper`."""

    def __init__(self, env: dict[str, str], workers: int = 3) -> None:
        self.env = env
        self.web_port, self.rule_port = free_port(), free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.rule_url = f"http://127.0.0.1:{self.rule_port}"
        self.rule_key = "faults-rule-key-" + base64.b32encode(os.urandom(10)).decode().lower()
        python = [sys.executable, "manage.py"]
        self.rule = Process(
            "fake-rule",
            [*python, "fakerule", "--port", str(self.rule_port), "--api-key", self.rule_key],
            {**env, "SANDBOX": "1"},
        )
        self.web = Process(
            "gunicorn",
            [
                str(VENV_BIN / "gunicorn"),
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                "2",
                "--graceful-timeout",
                "10",
            ],
            env,
        )
        self.workers = [Process(f"qcluster-{n + 1}", [*python, "qcluster"], env) for n in range(workers)]
        self.sweeper = Process("sweeper", [*python, "sweep", "--every", "2"], env)

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self) -> None:
        self.rule.start()
        self.web.start()
        for worker in self.workers:
            worker.start()
        self.sweeper.start()
        wait_until(lambda: ok(f"{self.rule_url}/_fake/requests"), 30, "the fake Rule did not start")
        self.wait_for_web()

    def wait_for_web(self) -> None:
        wait_until(lambda: ok(f"{self.web_url}/healthz"), 30, "gunicorn did not start")

    def stop(self) -> None:
        for process in [self.sweeper, *self.workers, self.web, self.rule]:
            if process.alive():
                process.terminate(timeout=30)

    # -- the fake Rule's controls (an HTTP API of the independent process) ---------------------------------------

    def rule_control(self, **body) -> None:
        requests.post(f"{self.rule_url}/_fake/control", json=body, timeout=5).raise_for_status()

    def rule_requests(self) -> list[dict]:
        return requests.get(f"{self.rule_url}/_fake/requests", timeout=30).json()

    def clear_rule_requests(self) -> None:
        requests.delete(f"{self.rule_url}/_fake/requests", timeout=5)


def ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_until(predicate, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError(message)


def connection_urls(output: str) -> dict:
    return json.loads(output)
