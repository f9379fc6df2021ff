"""A bounded schemathesis run against the OpenAPI schema, in-process: no input may produce a
server error (5xx).  Budgets are small so that random programs end quickly."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python.asgi import shutdown_lifespans

from api.main import create_app
from tests.api.conftest import settings_for

MAX_EXAMPLES = 60


@pytest.fixture(scope="package")
def api_schema(tmp_path_factory):
    root = tmp_path_factory.mktemp("schemathesis")
    app = create_app(settings_for(root, max_wall_seconds=2.0, max_instructions=2_000_000, max_trace_events=10_000,
                                  max_output_bytes=8 * 1024 * 1024, max_body_bytes=4 * 1024 * 1024))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    shutdown_lifespans()   # schemathesis started the app's lifespan: stop its worker pool


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    # No 5xx for any input; and every response is documented (status, content type, schema).
    case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                   response_schema_conformance])
