"""Run `closeloop run` as a real child process for tests: start it, wait for /healthz, stop or kill it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

CLOSELOOP = str(Path(sys.executable).parent / "closeloop")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(tmp_path: Path, port: int, database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSELOOP_")}
    env |= {
        "CLOSELOOP_HTTP_PORT": str(port),
        "CLOSELOOP_DATA_DIR": str(tmp_path / "data"),
        "CLOSELOOP_NLP_WORKER": "false",  # the model is tested elsewhere; loading it here would only slow starts
        "NO_PROXY": "127.0.0.1",
    }
    if database_url:
        env["CLOSELOOP_DATABASE_URL"] = database_url
    return env


def get_health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def wait_healthy(process: Server, port: int, within: float = 30.0) -> dict:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}: {process.log()}")
        try:
            status, body = get_health(port)
        except OSError:
            time.sleep(0.1)
            continue
        assert status == 200
        return body
    pytest.fail(f"/healthz did not answer within {within} s")


class Server(subprocess.Popen):
    """A `closeloop run` child whose log goes to a file: a pipe nobody reads would fill up and stall it."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.log_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by log() once the process has exited
        self._final_log: str | None = None
        super().__init__([CLOSELOOP, "run"], env=env, cwd=cwd, stderr=self.log_file)

    def log(self) -> str:
        if self._final_log is not None:
            return self._final_log
        self.log_file.seek(0)
        text = self.log_file.read().decode(errors="replace")
        if self.poll() is not None:
            self.log_file.close()
            self._final_log = text
        return text


def start(env: dict[str, str], cwd: Path) -> Server:
    return Server(env, cwd)


def stop(process: Server, sig: int = signal.SIGTERM) -> str:
    process.send_signal(sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("server did not stop within 15 s")
    err = process.log()
    assert process.returncode == 0, err
    return err


async def wait_healthy_async(process: Server, port: int, within: float = 30.0) -> None:
    """Like wait_healthy, without blocking the event loop (an in-process Bot API stand-in must keep serving)."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}: {process.log()}")
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail(f"/healthz did not answer within {within} s")


async def stop_async(process: Server, sig: int = signal.SIGTERM, within: float = 15.0) -> str:
    """Signal the server and wait for it to exit, keeping the event loop free meanwhile."""
    process.send_signal(sig)
    deadline = time.monotonic() + within
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if process.poll() is None:
        process.kill()
        pytest.fail(f"server did not stop within {within} s")
    return process.log()
