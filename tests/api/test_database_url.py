"""The run history on another SQLAlchemy database (e.g. PostgreSQL).  Runs only when
PLENA_TEST_DATABASE_URL names a database the test may fill and empty, e.g.
`postgresql+psycopg://plena@127.0.0.1:5432/plena`."""

from __future__ import annotations

import os

import pytest

from api.db import Base, make_engine
from tests.api.test_runs import load_request, x_values

URL = os.environ.get("PLENA_TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(not URL, reason="set PLENA_TEST_DATABASE_URL to test another database")


@pytest.fixture
def empty_database():
    engine = make_engine(URL)
    Base.metadata.drop_all(engine)
    engine.dispose()
    yield URL
    engine = make_engine(URL)
    Base.metadata.drop_all(engine)
    engine.dispose()


def test_history_blobs_and_retention_on_the_database(make_client, tmp_path, empty_database):
    with make_client(root=tmp_path, database_url=empty_database, blob_storage="db", retention_runs=2) as c:
        first = c.post("/v1/runs", json={**load_request(x_values()), "tag": "db", "trace": True})
        assert first.status_code == 200, first.text
        bad = c.post("/v1/runs", json={"program": {"asm": "S_ADDI_INT gp1, gp0, 3\nH_PREFETCH_V gp1, gp0, a0, 0, 0\n"},
                                       "tag": "db"})
        assert bad.status_code == 400
    with make_client(root=tmp_path, database_url=empty_database, blob_storage="db", retention_runs=2) as c:
        again = c.get(f"/v1/runs/{first.json()['id']}").json()
        assert again == first.json()
        assert c.get(again["links"]["trace"]).status_code == 200
        listed = c.get("/v1/runs", params={"tag": "db"}).json()
        assert [i["status"] for i in listed["items"]] == ["failed", "succeeded"]
        third = c.post("/v1/runs", json=load_request(x_values())).json()["id"]
        assert c.get("/v1/runs").json()["total"] == 2
        assert c.get(f"/v1/runs/{first.json()['id']}").status_code == 404
        assert c.get(f"/v1/runs/{third}").status_code == 200
