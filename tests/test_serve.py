"""`closeloop run` as a real process: answers /healthz quickly, stops cleanly, refuses a taken port."""

from __future__ import annotations

import signal
import subprocess

from sqlalchemy import func, select
from support.server import CLOSELOOP, free_port, get_health, server_env, start, stop, wait_healthy

from store import Database
from store.models import Branch, StaffRole, StaffUser
from web.passwords import check_password


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


async def test_the_first_start_prints_a_one_time_admin_password_that_signs_in(database_url, tmp_path):
    port = free_port()
    env = server_env(tmp_path, port, database_url)
    outputs = []
    for _ in range(2):
        process = start(env, cwd=tmp_path)
        try:
            wait_healthy(process, port)
        finally:
            outputs.append(stop(process))
    [line] = [x for x in outputs[0].splitlines() if "one-time password" in x]
    password = line.rsplit(" ", 1)[1]
    assert "one-time password" not in outputs[1], "printed only while there are no users"
    db = Database(database_url)
    try:
        async with db.sessions() as session:
            [admin] = (await session.scalars(select(StaffUser))).all()
    finally:
        await db.dispose()
    assert (admin.username, admin.role) == ("admin", StaffRole.ADMIN)
    assert check_password(admin.password_hash, password).is_match
    assert password not in admin.password_hash
