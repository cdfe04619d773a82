"""An in-toto Statement v1 per closure (test-result predicate), for tools other than gates."""

from __future__ import annotations

import json
from typing import Any

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://in-toto.io/attestation/test-result/v0.1"


def statement(
    *,
    repository: str,
    commit: str,
    concluded: bool,
    configuration: dict[str, str],
    scenarios: list[dict[str, Any]],
    gates: list[dict[str, Any]],
) -> dict[str, Any]:
    """configuration: path -> sha256 of the spec and the gate configuration."""
    passed: list[str] = []
    failed: list[str] = []
    for scenario in scenarios:
        name = f"{scenario['feature']}:{scenario['line']} {scenario['name']}"
        (passed if scenario["outcome"] == "passed" else failed).append(name)
    for gate in gates:
        (passed if gate["status"] == "PASS" else failed).append(f"gate:{gate['name']}")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": repository, "digest": {"gitCommit": commit}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "result": "PASSED" if concluded else "FAILED",
            "configuration": [
                {"name": name, "digest": {"sha256": digest}}
                for name, digest in sorted(configuration.items())
            ],
            "passedTests": passed,
            "failedTests": failed,
            "warnedTests": [],
        },
    }


def encode(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
