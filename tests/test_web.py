"""The web app through the real app factory: health report, JSON errors on API paths, request log lines."""

import logging

import pytest
from sqlalchemy import text

from config.app import VERSION, create_app, load_catalog
from config.settings import load_settings
from store import Database


@pytest.fixture
def settings(database_url, tmp_path):
    return load_settings(
        {
            "CLOSELOOP_DATABASE_URL": database_url,
            "CLOSELOOP_DATA_DIR": str(tmp_path / "data"),
            "CLOSELOOP_NLP_WORKER": "false",  # these tests need no model
        }
    )


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings, load_catalog(settings)))


async def test_healthz_reports_database_and_version(client, database_url):
    response = await client.get("/healthz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok"
    assert body["version"] == VERSION
    assert body["database"]["ok"] is True
    assert body["database"]["dialect"] == Database(database_url).dialect


async def test_unknown_api_path_gets_a_json_404(client):
    response = await client.get("/api/v0/nothing-here")
    assert response.status == 404
    assert response.content_type == "application/json"
    assert (await response.json())["error"]["status"] == 404


async def test_an_api_path_without_a_token_gets_a_json_401_whether_or_not_it_exists(client):
    for path in ("/api/v1/cases", "/api/v1/nothing-here"):
        response = await client.get(path)
        assert (response.status, response.content_type) == (401, "application/json")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_wrong_method_on_api_path_gets_a_json_405(client):
    response = await client.post("/healthz")
    assert response.status == 405
    assert (await response.json())["error"]["reason"] == "Method Not Allowed"


async def test_pages_outside_the_api_keep_plain_errors(client):
    response = await client.get("/no-such-page")
    assert response.status == 404
    assert response.content_type != "application/json"


async def test_each_request_logs_one_line(client, caplog):
    with caplog.at_level(logging.INFO, logger="web.middleware"):
        await client.get("/healthz?secret=abc")
        await client.get("/api/missing")
    lines = [r.getMessage() for r in caplog.records if r.name == "web.middleware"]
    assert len(lines) == 2
    assert lines[0].startswith("GET /healthz 200 ")
    assert lines[1].startswith("GET /api/missing 404 ")
    assert "secret" not in " ".join(lines), "query strings may hold customer data"


@pytest.mark.postgres  # SQLite is a file inside this process: there is no server to lose
async def test_healthz_says_503_when_the_database_goes_away(aiohttp_client, settings, database_url):
    client = await aiohttp_client(create_app(settings, load_catalog(settings)))
    assert (await client.get("/healthz")).status == 200
    admin = Database(database_url)
    try:
        async with admin.engine.connect() as conn:
            name = (await conn.execute(text("select current_database()"))).scalar_one()
    finally:
        await admin.dispose()
    # Kill every server connection to this database; the next ping must notice and say so, not hang.
    other = Database(database_url.rsplit("/", 1)[0] + "/postgres")
    try:
        async with other.engine.connect() as conn:
            await conn.execute(
                text(
                    "select pg_terminate_backend(pid) from pg_stat_activity"
                    " where datname = :d and pid <> pg_backend_pid()"
                ),
                {"d": name},
            )
            await conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            await conn.commit()
    finally:
        await other.dispose()
    response = await client.get("/healthz")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "error"
    assert body["database"]["ok"] is False
