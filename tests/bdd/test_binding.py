"""No scenario can exist unbound, a step without a definition fails, a malformed tag is refused.

Each rule is checked by running pytest, in a child process, on a scratch copy of the
specifications (settings, root conftest, tests/bdd steps and binder) whose features/ folder
holds only the feature file under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bdd import conftest as bdd_conftest
from tests.bdd.support.runner import BDD_DIR, copy_specifications, run_pytest

UNDEFINED_STEP = "um passo que nenhum módulo de passos define"

FEATURE_WITH_UNDEFINED_STEP = f"""\
# language: pt
Funcionalidade: Um passo sem definição

  @OS-999 @AC-01
  Cenário: Um cenário novo, com um passo que ninguém definiu
    Dado o model "Contact" do crm_core
    Quando {UNDEFINED_STEP}
    Então ele mapeia a tabela "crm_contacts"
"""

FEATURE_WITH_MALFORMED_TAG = """\
# language: pt
Funcionalidade: Uma marca mal formada

  @OS-999 @wip
  Cenário: Um cenário marcado para ser pulado
    Dado o model "Contact" do crm_core
"""


def test_a_new_feature_file_is_bound_and_its_undefined_step_fails(tmp_path: Path) -> None:
    project = copy_specifications(tmp_path, {"unbound.feature": FEATURE_WITH_UNDEFINED_STEP})

    result = run_pytest(project, "tests/bdd/test_features.py", "-rA")

    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "collected 1 item" in output, output  # bound without touching test_features.py
    assert f'Step definition is not found: When "{UNDEFINED_STEP}"' in output, output
    assert "1 failed" in output, output
    assert "skipped" not in output, output


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("tests/bdd/test_features.py",), id="bdd-conftest-loaded-first"),
        pytest.param((), id="bdd-conftest-loaded-while-collecting"),
    ],
)
def test_a_malformed_tag_stops_the_run_naming_file_and_line(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    project = copy_specifications(tmp_path, {"tagged.feature": FEATURE_WITH_MALFORMED_TAG})

    result = run_pytest(project, *args)

    output = result.stdout + result.stderr
    assert result.returncode in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERRUPTED), output
    assert "features/tagged.feature:4: malformed tag @wip" in output, output
    assert " passed" not in output, output


def test_the_step_modules_are_every_module_of_the_steps_package() -> None:
    on_disk = {path.stem for path in (BDD_DIR / "steps").glob("*.py") if path.name != "__init__.py"}
    listed = {module.__name__.rsplit(".", 1)[1] for module in bdd_conftest.STEP_MODULES}
    assert listed == on_disk


def test_well_formed_tags_are_registered_markers(pytestconfig: pytest.Config) -> None:
    registered = {line.split(":", 1)[0] for line in pytestconfig.getini("markers")}
    assert {"OS-004", "AC-01", "AC-02", "AC-03", "AC-04", "AC-05"} <= registered
