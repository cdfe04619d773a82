"""Every text boundary of the API, walked from its own OpenAPI document.

For each operation: each string query or path parameter set to a NUL, and each string of a
valid body (values and object keys) set to a NUL or a lone surrogate, one at a time, with
everything else valid and every path naming a contact or deal that exists, so that the request
would reach the database. Used by tests/crm_core/test_text_boundary.py and the OS 005 scenarios.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from crm_core.config import Settings
from crm_core.main import create_app

NUL = "a\x00b"

# A valid body for each operation that takes one; `{contact_id}` is filled in.
VALID_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/ingest/message"): {
        "source": "whatsapp",
        "sender_id": "5511999999999",
        "content": "oi",
        "metadata": {"message_id": "wamid.1", "profile_name": "Ana"},
    },
    ("POST", "/ingest/messages"): {
        "messages": [
            {
                "source": "whatsapp",
                "sender_id": "5511999999999",
                "content": "oi",
                "metadata": {"message_id": "wamid.2"},
            }
        ]
    },
    ("POST", "/deals"): {
        "contact_id": "{contact_id}",
        "title": "Consórcio",
        "pipeline": "rodobens",
        "stage": "novo",
        "amount": "10.00",
        "currency": "BRL",
        "attributes": {"origem": "site"},
    },
    ("POST", "/deals/{deal_id}/stage"): {"stage": "qualificacao"},
    # Signed by Meta (X-Hub-Signature-256): refused here before its text is read. A signed
    # delivery's text is made storable, never refused (tests/crm_core/test_whatsapp_webhook.py).
    ("POST", "/webhooks/whatsapp"): {"object": "whatsapp_business_account", "entry": []},
}

DOCUMENT: dict[str, Any] = create_app(Settings(database_url="sqlite://")).openapi()
"""The application's OpenAPI document."""

OPERATIONS = sorted(
    (method.upper(), path, operation)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
)


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema a `$ref` points to (the schema itself otherwise)."""
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = DOCUMENT["components"]["schemas"][name]
    return schema


def admits_string(schema: dict[str, Any]) -> bool:
    """Whether a schema admits a string (alone or as one of its options)."""
    schema = resolve(schema)
    options = schema.get("anyOf", []) + schema.get("oneOf", [])
    if options:
        return any(admits_string(option) for option in options)
    return schema.get("type") == "string"


def properties(schema: dict[str, Any]) -> dict[str, Any]:
    """The properties of an object schema (through a `$ref`)."""
    found: dict[str, Any] = resolve(schema).get("properties", {})
    return found


def string_fields(body: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every position in a JSON document that holds a string or could hold one (an object's
    keys included, as the position of the key itself)."""
    if isinstance(body, dict):
        for key, value in body.items():
            yield (*prefix, f"<key {key}>")
            yield from string_fields(value, (*prefix, key))
    elif isinstance(body, list):
        for index, value in enumerate(body):
            yield from string_fields(value, (*prefix, index))
    elif isinstance(body, str):
        yield prefix


def with_value(body: Any, where: tuple[str | int, ...], value: str) -> Any:
    """A copy of `body` with `value` at `where` (for `<key k>`, as the key k's new name)."""
    changed = copy.deepcopy(body)
    parent = changed
    for part in where[:-1]:
        parent = parent[part]
    last = where[-1]
    if isinstance(last, str) and last.startswith("<key "):
        old = last[5:-1]
        parent[value] = parent.pop(old)
    else:
        parent[last] = value
    return changed


def _check(response: Any, what: str) -> None:
    assert 400 <= response.status_code < 500, f"{what}: {response.status_code} {response.text}"
    assert response.headers["content-type"] == "application/problem+json", what


def existing_ids(client: TestClient) -> dict[str, str]:
    """A contact and a deal, so that every path parameter names something that exists."""
    body = VALID_BODIES[("POST", "/ingest/message")]
    response = client.post("/ingest/message", json=body)
    assert response.status_code in (200, 202), response.text
    contact_id = response.json()["contact_id"]
    deal = {"contact_id": contact_id, "title": "x", "pipeline": "rodobens"}
    created = client.post("/deals", json=deal)
    assert created.status_code == 201, created.text
    return {
        "contact_id": contact_id,
        "deal_id": created.json()["id"],
        "message_id": response.json()["id"],
    }


def _body(method: str, path: str, ids: dict[str, str]) -> Any:
    text = json.dumps(VALID_BODIES[(method, path)]).replace("{contact_id}", ids["contact_id"])
    return json.loads(text)


def check_parameters(client: TestClient, ids: dict[str, str]) -> int:
    """A NUL in each string query and path parameter of each operation: 4xx problem+json.
    The number of requests made."""
    tried = 0
    for method, path, operation in OPERATIONS:
        filled = path.format(**ids)
        body = _body(method, path, ids) if (method, path) in VALID_BODIES else None
        content = json.dumps(body) if body is not None else None
        headers = {"content-type": "application/json"} if content else {}
        for parameter in operation.get("parameters", []):
            if parameter["in"] not in ("query", "path"):
                continue
            if not admits_string(parameter.get("schema", {})):
                continue
            url = filled
            params: dict[str, str] = {}
            if parameter["in"] == "path":
                url = path.format(**{**ids, parameter["name"]: "%00"})
            else:
                params[parameter["name"]] = NUL
            response = client.request(method, url, params=params, content=content, headers=headers)
            _check(response, f"{method} {path} {parameter['in']} {parameter['name']}")
            tried += 1
    return tried


def check_fields(client: TestClient, ids: dict[str, str], method: str, path: str) -> int:
    """A NUL, then a lone surrogate, in each string of the operation's valid body (values and
    object keys): 4xx problem+json (a batch item: `rejected` with a 4xx problem). The number
    of requests made."""
    valid = _body(method, path, ids)
    url = path.format(**ids)
    tried = 0
    for where in string_fields(valid):
        for bad in (NUL, "\ud800"):
            # json.dumps writes both as \u escapes, as a client's JSON encoder would.
            content = json.dumps(with_value(valid, where, bad)).encode()
            response = client.request(
                method, url, content=content, headers={"content-type": "application/json"}
            )
            tried += 1
            if path == "/ingest/messages" and response.status_code == 200:
                (result,) = response.json()["results"]
                assert result["status"] == "rejected", (where, result)
                assert 400 <= result["problem"]["status"] < 500, (where, result)
                continue
            _check(response, f"{method} {path} {where} {bad!r}")
    return tried


def check_every_boundary(client: TestClient) -> int:
    """Every parameter and every body field of every operation (see the module's docstring);
    the number of requests made."""
    ids = existing_ids(client)
    tried = check_parameters(client, ids)
    for method, path in sorted(VALID_BODIES):
        tried += check_fields(client, ids, method, path)
    return tried
