"""Text the databases can hold, at every boundary of every operation, on both databases.

PostgreSQL refuses NUL (U+0000) in text and JSONB, and no database stores a lone UTF-16
surrogate faithfully: such a string must be refused with a 4xx before it reaches SQL, wherever
it comes in. The operations and their string parameters and fields are read from the
application's own OpenAPI document (tests/bdd/support/text_walk.py), so a new operation or field
is covered as soon as it exists.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.bdd.support.text_walk import (
    OPERATIONS,
    VALID_BODIES,
    admits_string,
    check_fields,
    check_parameters,
    existing_ids,
    properties,
    string_fields,
)


@pytest.fixture
def ids(any_client: TestClient) -> dict[str, str]:
    return existing_ids(any_client)


def test_every_operation_with_a_body_has_a_valid_example() -> None:
    with_body = {(method, path) for method, path, op in OPERATIONS if "requestBody" in op}
    assert with_body == set(VALID_BODIES)


def test_every_string_field_of_a_body_is_in_its_example() -> None:
    """A new string field must be added to the example, or the walk would not try it."""
    for method, path, operation in OPERATIONS:
        if "requestBody" not in operation:
            continue
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        example = {str(where[0]) for where in string_fields(VALID_BODIES[(method, path)])}
        for name, field in properties(schema).items():
            if admits_string(field):
                assert name in example, f"{method} {path}: the example has no string {name!r}"


def test_nul_in_any_parameter_is_a_4xx(any_client: TestClient, ids: dict[str, str]) -> None:
    tried = check_parameters(any_client, ids)
    assert tried >= 5, tried  # source, sender_id, cursor, pipeline, stage at least


@pytest.mark.parametrize(("method", "path"), sorted(VALID_BODIES))
def test_nul_or_a_lone_surrogate_in_any_field_is_a_4xx(
    any_client: TestClient, ids: dict[str, str], method: str, path: str
) -> None:
    assert check_fields(any_client, ids, method, path) > 0
