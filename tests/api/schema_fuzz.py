"""A bounded schemathesis fuzz of an ASGI app's OpenAPI schema through schemathesis' Python API.

Deliberately not the schemathesis pytest plugin: the plugin reads pytest internals that change
between pytest releases (pytest 9.2 removed `Function._nodeid`, which broke it). Here hypothesis
drives each operation's case strategy directly, so only public schemathesis/hypothesis API is used.

`fuzz_schema(app)` returns one `OperationFailure` per operation that produced a failing response;
an empty list means every generated request got a documented, non-5xx response.
"""

from __future__ import annotations

from dataclasses import dataclass

import schemathesis
from hypothesis import HealthCheck, given, seed as hypothesis_seed, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python.asgi import shutdown_lifespans

# No 5xx for any input, and every response documented: status code, content type, body schema.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass(frozen=True)
class OperationFailure:
    operation: str      # e.g. "POST /v1/runs"
    error: BaseException

    def __str__(self) -> str:
        return f"{self.operation}: {self.error}"


def fuzz_schema(app, *, max_examples: int, seed: int = 0) -> list[OperationFailure]:
    """Generate up to `max_examples` valid requests per operation of `app`'s /openapi.json, send
    them in-process and run CHECKS on every response. Seeded, so a failure reproduces."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[OperationFailure] = []
    try:
        for result in schema.get_all_operations():
            operation = result.ok()

            @hypothesis_seed(seed)
            @settings(max_examples=max_examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy())
            def call_and_check(case):
                case.call_and_validate(checks=CHECKS)

            try:
                call_and_check()
            except (Exception, BaseExceptionGroup) as error:   # schemathesis raises a FailureGroup
                failures.append(OperationFailure(operation.label, error))
    finally:
        shutdown_lifespans()   # schemathesis started the app's lifespan (our worker pool): stop it
    return failures
