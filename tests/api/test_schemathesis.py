"""Property-based requests from the OpenAPI schema (schemathesis): no request gets a 5xx.

Runs against the app served by uvicorn over a filled SQLite database and a PostgreSQL one
(PostgreSQL refuses NUL in text, a classic source of 500s). Each operation gets its own
hypothesis run, so a failure names the request that caused it.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

EXAMPLES_PER_OPERATION = 40


def test_no_request_gets_a_server_error(live_server: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def no_server_error(case) -> None:
            response = case.call()
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} {case.query}: {response.text[:300]}")

        no_server_error()
