"""Property-based tests: no markdown, YAML or byte sequence makes the parser raise."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gates import ClosureImportError, ParsedDocument, parse_work_order_bytes
from gates.orders.closure_import import convert_closure
from gates.orders.metadata import KNOWN_KEYS
from tests.gates.specs import SPEC_ID, VALID_SPEC

ROOT = Path("/nonexistent-root")
PATH = ROOT / "vault" / "demo" / "os" / f"{SPEC_ID}.md"
SHOWN = f"vault/demo/os/{SPEC_ID}.md"
BODY = VALID_SPEC.split("---\n", 2)[2]
FRONT_MATTER = VALID_SPEC.split("---\n", 2)[1]

fuzz = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

markdown_lines = st.lists(
    st.one_of(
        st.text(max_size=40),
        st.sampled_from(
            [
                "---",
                "## Critérios de Aceite",
                "## 5️⃣ Entregáveis Implementados",
                "## Evidências",
                "# Título",
                "```",
                "~~~",
                "- [x] **AC-01** critério",
                "- [ ] AC-1",
                "- [x]",
                "- [ ] AC-02 x (gates: lint, nada)",
                "- `../fora.py`",
                "- `/abs.py` `a/b.py` `x.md`",
                "id: OS-X-004",
                "number: 4",
                "  - item",
                "\ufeff",
                "\r",
            ]
        ),
    ),
    max_size=30,
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.dates(),
    st.datetimes(),
)
yaml_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    ),
    max_leaves=12,
)
front_matters = st.dictionaries(
    st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=12)), yaml_values, max_size=16
)


def check(parsed: ParsedDocument) -> None:
    assert (parsed.document is None) == bool(parsed.errors)
    for error in parsed.errors:
        assert error.line >= 1
        assert error.message
        assert error.fix
        assert str(error).startswith(f"{SHOWN}:{error.line}: ")


@fuzz
@given(st.text(max_size=2000))
def test_any_text_parses_without_raising(text: str) -> None:
    check(parse_work_order_bytes(text.encode("utf-8", "surrogatepass"), path=PATH, root=ROOT))


@fuzz
@given(st.binary(max_size=2000))
def test_any_bytes_parse_without_raising(data: bytes) -> None:
    check(parse_work_order_bytes(b"---\n" + data, path=PATH, root=ROOT))
    check(parse_work_order_bytes(data, path=PATH, root=ROOT))


@fuzz
@given(markdown_lines)
def test_any_markdown_body_parses_without_raising(lines: list[str]) -> None:
    text = "---\n" + FRONT_MATTER + "---\n" + "\n".join(lines)
    check(parse_work_order_bytes(text.encode("utf-8", "surrogatepass"), path=PATH, root=ROOT))


@fuzz
@given(st.text(max_size=400))
def test_any_yaml_text_as_front_matter_parses_without_raising(yaml_text: str) -> None:
    text = "---\n" + yaml_text.replace("---", "- -") + "\n---\n" + BODY
    check(parse_work_order_bytes(text.encode("utf-8", "surrogatepass"), path=PATH, root=ROOT))


@fuzz
@given(front_matters)
def test_any_front_matter_mapping_parses_without_raising(mapping: dict[str, object]) -> None:
    dumped = yaml.safe_dump(mapping, allow_unicode=True)
    text = "---\n" + dumped.replace("\n---", "\n- - -") + "---\n" + BODY
    check(parse_work_order_bytes(text.encode("utf-8", "surrogatepass"), path=PATH, root=ROOT))


@fuzz
@given(markdown_lines)
def test_crlf_and_bom_never_change_the_outcome(lines: list[str]) -> None:
    text = VALID_SPEC + "\n".join(line.replace("\r", "") for line in lines)
    lf = parse_work_order_bytes(text.encode("utf-8", "surrogatepass"), path=PATH, root=ROOT)
    crlf = parse_work_order_bytes(
        ("\ufeff" + text.replace("\n", "\r\n")).encode("utf-8", "surrogatepass"),
        path=PATH,
        root=ROOT,
    )

    assert lf == crlf


@fuzz
@given(markdown_lines)
def test_import_closure_either_converts_or_explains(lines: list[str]) -> None:
    header = ["**OS ID:** OS-X-20260103-004", "- **Executor:** x", "- **Data:** 2026-01-03"]
    text = "\n".join([*header, *lines])
    outcome: str
    try:
        outcome = convert_closure(text, source=Path("legacy.md"), project="demo").text
    except ClosureImportError as exc:
        outcome = str(exc)
    assert outcome.startswith(("---\n", "legacy.md: "))
