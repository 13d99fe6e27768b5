"""`closeloop run` as a real process: answers /healthz quickly, stops cleanly, refuses a taken port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select

from store import Database
from store.models import Branch

CLOSELOOP = str(Path(sys.executable).parent / "closeloop")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(tmp_path: Path, port: int, database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSELOOP_")}
    env |= {"CLOSELOOP_HTTP_PORT": str(port), "CLOSELOOP_DATA_DIR": str(tmp_path / "data"), "NO_PROXY": "127.0.0.1"}
    if database_url:
        env["CLOSELOOP_DATABASE_URL"] = database_url
    return env


def get_health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def wait_healthy(process: subprocess.Popen, port: int, within: float = 10.0) -> dict:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}: {process.stderr.read()}")
        try:
            status, body = get_health(port)
        except OSError:
            time.sleep(0.1)
            continue
        assert status == 200
        return body
    pytest.fail(f"/healthz did not answer within {within} s")


def start(env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([CLOSELOOP, "run"], env=env, cwd=cwd, stderr=subprocess.PIPE, text=True)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> str:
    process.send_signal(sig)
    try:
        _, err = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("server did not stop within 15 s")
    assert process.returncode == 0, err
    return err


def test_run_on_embedded_defaults_answers_healthz(tmp_path):
    port = free_port()
    env = server_env(tmp_path, port)
    env.pop("CLOSELOOP_DATA_DIR")
    process = start(env, cwd=tmp_path)
    try:
        body = wait_healthy(process, port)
    finally:
        err = stop(process)
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True, "dialect": "sqlite", "latency_ms": body["database"]["latency_ms"]}
    assert (tmp_path / "data" / "closeloop.db").is_file(), "the default data directory is created on first start"
    assert "GET /healthz 200" in err, "one log line per request"
    assert "Traceback" not in err


def test_server_restarts_on_the_same_database_and_stops_on_ctrl_c_or_sigterm(database_url, tmp_path):
    port = free_port()
    env = server_env(tmp_path, port, database_url)
    for sig in (signal.SIGINT, signal.SIGTERM):
        process = start(env, cwd=tmp_path)
        try:
            wait_healthy(process, port)
        finally:
            err = stop(process, sig)
        assert "stopping" in err


async def test_branches_from_the_file_are_in_the_database_after_start(database_url, tmp_path):
    port = free_port()
    process = start(server_env(tmp_path, port, database_url), cwd=tmp_path)
    try:
        wait_healthy(process, port)
    finally:
        stop(process)
    database = Database(database_url)
    try:
        async with database.sessions() as session:
            codes = set((await session.scalars(select(Branch.code))).all())
            count = await session.scalar(select(func.count()).select_from(Branch))
    finally:
        await database.dispose()
    assert codes == {"MAIN", "EAST"}
    assert count == 2


def test_second_server_on_the_same_port_is_a_clear_error(tmp_path):
    port = free_port()
    env = server_env(tmp_path, port)
    first = start(env, cwd=tmp_path)
    try:
        wait_healthy(first, port)
        second = subprocess.run([CLOSELOOP, "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert second.returncode == 2
        assert f"closeloop: cannot listen on 127.0.0.1:{port}" in second.stderr
        assert "Traceback" not in second.stderr
        assert get_health(port)[0] == 200, "the first server keeps running"
    finally:
        stop(first)
