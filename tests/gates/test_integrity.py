"""The ledger and `gates verify`: every kind of tampering is caught, crashes are survived."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gates.cli import main
from gates.record import ledger
from gates.record.integrity import verify
from gates.record.publish import certify
from gates.signing import KEY_ENV, generate, load_public_key
from tests.gates.certify_project import SPEC, Project, make_project

LEDGER = "vault/ledger.jsonl"


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project certified once (CONCLUÍDA), with its records and ledger, never modified."""
    project = make_project(tmp_path_factory.mktemp("certified") / "demo")
    (result,) = certify(project.root)
    assert result.concluded, result.evaluation.reasons
    return project.root


@pytest.fixture
def copy(certified: Path, tmp_path: Path) -> Project:
    target = tmp_path / "copy"
    shutil.copytree(certified, target, symlinks=True)
    return Project(target)


def record_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "vault/demo/fechamentos").rglob("*") if p.is_file())


def errors(root: Path) -> list[str]:
    return verify(root).errors


def test_a_fresh_certification_verifies(copy: Project) -> None:
    report = verify(copy.root)
    assert report.intact, report.errors
    assert report.entries == 1
    assert report.warnings == []
    assert report.stale == []
    (entry,) = ledger.entries(copy.root / LEDGER)
    assert entry["seq"] == 1
    assert entry["prev"] == ledger.GENESIS
    assert entry["decision"] == "CONCLUÍDA"
    assert set(entry) >= {"record", "twin", "statement", "spec", "features", "steps", "config"}
    assert entry["steps"] == {"tests/bdd/test_demo.py": entry["steps"]["tests/bdd/test_demo.py"]}


def test_the_attestation_is_an_in_toto_statement(copy: Project) -> None:
    (statement_path,) = [p for p in record_files(copy.root) if p.name.endswith(".intoto.json")]
    statement = json.loads(statement_path.read_text(encoding="utf-8"))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://in-toto.io/attestation/test-result/v0.1"
    commit = copy.git("rev-parse", "HEAD").strip()
    assert statement["subject"][0]["digest"] == {"gitCommit": commit}
    assert statement["predicate"]["result"] == "PASSED"
    assert "gate:lint" in statement["predicate"]["passedTests"]
    names = [c["name"] for c in statement["predicate"]["configuration"]]
    assert names == ["pyproject.toml#tool.gates", SPEC]


@pytest.mark.parametrize("suffix", [".md", ".json", ".intoto.json"])
def test_an_edited_record_twin_or_statement_is_named(copy: Project, suffix: str) -> None:
    (target,) = [p for p in record_files(copy.root) if p.name.split(".", 1)[1] == suffix[1:]]
    target.write_bytes(target.read_bytes() + b" ")
    relative = target.relative_to(copy.root).as_posix()
    found = errors(copy.root)
    assert found[0] == f"{relative}: edited — its sha256 differs from ledger entry 1"
    if suffix != ".json":  # a record or statement is also not what its twin renders
        assert found[1].startswith(f"{relative}: differs from what its twin "), found
    assert len(found) == (1 if suffix == ".json" else 2), found


def test_a_deleted_record_is_named(copy: Project) -> None:
    (markdown,) = [p for p in record_files(copy.root) if p.suffix == ".md"]
    markdown.unlink()
    relative = markdown.relative_to(copy.root).as_posix()
    assert errors(copy.root) == [f"{relative}: deleted (named by ledger entry 1)"]


def _with_entries(project: Project, count: int) -> list[str]:
    """Append `count` more entries (certifying new commits) and return the ledger's lines."""
    for number in range(count):
        project.write("src/notes.txt", f"note {number}\n")
        project.commit(f"note {number}")
        (result,) = certify(project.root)
        assert result.concluded
    return (project.root / LEDGER).read_text(encoding="utf-8").splitlines()


def _write_lines(project: Project, lines: list[str]) -> None:
    (project.root / LEDGER).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_a_removed_entry_is_named_as_a_gap(copy: Project) -> None:
    lines = _with_entries(copy, 2)
    _write_lines(copy, [lines[0], lines[2]])
    found = errors(copy.root)
    assert (
        f"{LEDGER}:2 (entry 3): expected entry 2 here — an entry was removed, inserted or reordered"
        in found
    )
    assert f"{LEDGER}:2 (entry 3): prev does not match the hash of the entry before it" in found


def test_reordered_entries_are_caught(copy: Project) -> None:
    lines = _with_entries(copy, 2)
    _write_lines(copy, [lines[0], lines[2], lines[1]])
    assert any("expected entry 2 here" in error for error in errors(copy.root))


def test_an_inserted_entry_is_caught(copy: Project) -> None:
    lines = _with_entries(copy, 1)
    forged = json.loads(lines[1])
    forged["decision"] = "CONCLUÍDA"
    forged["seq"] = 2
    forged["hash"] = ledger.entry_hash(forged)
    _write_lines(copy, [lines[0], ledger.canonical(forged), lines[1]])
    assert any("expected entry 3 here" in error for error in errors(copy.root))


def test_an_edited_entry_is_caught_even_with_a_valid_json(copy: Project) -> None:
    (line,) = (copy.root / LEDGER).read_text(encoding="utf-8").splitlines()
    entry = json.loads(line)
    entry["decision"] = "REPROVADA"
    _write_lines(copy, [ledger.canonical(entry)])
    assert errors(copy.root) == [
        f"{LEDGER}:1 (entry 1): hash differs from its content (the entry was edited)"
    ]


def test_a_ledger_cut_below_what_was_committed_is_caught(copy: Project) -> None:
    lines = _with_entries(copy, 1)
    copy.commit("commit the ledger")
    _write_lines(copy, lines[:1])
    assert any("not a prefix" in error for error in errors(copy.root))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_changing_any_single_byte_is_detected(certified: Path, data: st.DataObject) -> None:
    files = [*record_files(certified)[:3], certified / LEDGER]
    target = data.draw(st.sampled_from(files), label="file")
    original = target.read_bytes()
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    replacement = data.draw(
        st.integers(0, 255).filter(lambda value: value != original[position]), label="byte"
    )
    changed = original[:position] + bytes([replacement]) + original[position + 1 :]
    try:
        target.write_bytes(changed)
        assert not verify(certified).intact
    finally:
        target.write_bytes(original)
    assert verify(certified).intact


def test_editing_the_spec_makes_the_os_stale(copy: Project) -> None:
    spec = copy.root / SPEC
    spec.write_text(spec.read_text(encoding="utf-8").replace("bandeira", "flâmula"), "utf-8")
    report = verify(copy.root)
    assert report.intact
    (stale,) = report.stale
    assert stale.changed == (SPEC,)
    assert main(["verify", "--root", str(copy.root)]) == 0
    assert main(["verify", "--root", str(copy.root), "--strict"]) == 1


def test_a_new_step_module_makes_the_os_stale(copy: Project) -> None:
    copy.write("tests/bdd/test_more.py", "X = 1\n")
    (stale,) = verify(copy.root).stale
    assert stale.changed == ("tests/bdd/test_more.py (added)",)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate(tmp_path / "keys" / "signing.key")


def test_signed_entries_verify_with_their_key_and_fail_with_another(
    keys: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private, public = keys
    monkeypatch.setenv(KEY_ENV, str(private))
    project = make_project(tmp_path / "signed")
    (result,) = certify(project.root)
    assert result.concluded
    (line,) = (project.root / LEDGER).read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["signature"]
    (envelope,) = [p for p in record_files(project.root) if p.name.endswith(".dsse.json")]
    assert json.loads(envelope.read_text())["payloadType"] == "application/vnd.in-toto+json"
    good = verify(project.root, public_key=load_public_key(public))
    assert good.intact, good.errors
    assert good.signed == 1
    _, other_public = generate(tmp_path / "other" / "other.key")
    bad = verify(project.root, public_key=load_public_key(other_public))
    assert any("not by the expected key" in error for error in bad.errors)
    assert main(["verify", "--root", str(project.root), "--public-key", str(public)]) == 0
    assert main(["verify", "--root", str(project.root), "--public-key", str(other_public)]) == 1


def test_a_forged_signature_is_caught_without_a_key(
    keys: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, str(keys[0]))
    project = make_project(tmp_path / "signed")
    certify(project.root)
    (line,) = (project.root / LEDGER).read_text(encoding="utf-8").splitlines()
    entry = json.loads(line)
    entry["decision"] = "REPROVADA"
    entry["hash"] = ledger.entry_hash(entry)  # a forger can rehash, but cannot re-sign
    _write_lines(Project(project.root), [ledger.canonical(entry)])
    assert "signature does not match" in " ".join(verify(project.root).errors)


def test_unsigned_entries_fail_when_a_key_is_given(copy: Project, keys: tuple[Path, Path]) -> None:
    report = verify(copy.root, public_key=load_public_key(keys[1]))
    assert report.errors == [f"{LEDGER}:1 (entry 1): not signed, but a public key was given"]


def test_keygen_refuses_to_write_into_the_vault(copy: Project) -> None:
    assert main(["keygen", "--root", str(copy.root), "--out", str(copy.root / "vault/k")]) == 2
    assert not (copy.root / "vault/k").exists()


def test_a_writer_killed_between_record_and_ledger_leaves_a_verifiable_vault(
    copy: Project,
) -> None:
    copy.write("src/notes.txt", "killed\n")
    commit = copy.commit("a commit whose certification is killed")
    script = (
        "import os, signal, sys; from pathlib import Path; import gates.record.ledger as l; "
        "l.append = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL); "
        "from gates.record.publish import certify; certify(Path(sys.argv[1]))"
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, str(copy.root)],
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -9
    assert (copy.root / f"vault/demo/fechamentos/{_spec_id()}/{commit[:12]}.md").is_file()
    report = verify(copy.root)
    assert report.intact, report.errors
    assert any("not in the ledger" in warning for warning in report.warnings)
    (result,) = certify(copy.root)
    assert result.written == "written"  # no ledger entry vouched for them: written anew
    after = verify(copy.root)
    assert after.intact
    assert after.entries == 2
    assert after.warnings == []


def test_certify_killed_at_random_points_never_breaks_the_vault(copy: Project) -> None:
    """SIGKILL at random moments of real `gates certify` runs, most of them near the end where
    the record, its twin, the attestation, the ledger and PLAN.md are written."""

    def run() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "gates", "certify", "--root", str(copy.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    copy.write("src/notes.txt", "timing\n")
    copy.commit("a commit to time a full run")
    started = time.monotonic()
    assert run().wait(timeout=300) == 0
    full = time.monotonic() - started
    rng = random.Random(8)
    killed = 0
    for attempt in range(6):
        copy.write("src/notes.txt", f"attempt {attempt}\n")
        # the developer commits their change, not what a killed run left half-written: a record
        # the ledger does not name, committed, is an error of `verify` (it is no verdict)
        copy.git("add", "src/notes.txt")
        copy.git("commit", "-q", "-m", f"attempt {attempt}")
        process = run()
        time.sleep(rng.uniform(0.3, 1.1) * full)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait(timeout=300)
        report = verify(copy.root)
        assert report.intact, (attempt, report.errors)
    assert killed >= 3, "too few runs were cut"
    (result,) = certify(copy.root)
    assert result.concluded
    assert verify(copy.root).intact


def _spec_id() -> str:
    from tests.gates.certify_project import SPEC_ID

    return SPEC_ID


def test_concurrent_certify_runs_do_not_interleave(copy: Project) -> None:
    copy.write("src/notes.txt", "concurrent\n")
    copy.commit("two runs at once")
    env = {**os.environ, "NO_COLOR": "1"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "gates", "certify", "--root", str(copy.root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        for _ in range(2)
    ]
    for run in runs:
        run.wait(timeout=300)
        assert run.returncode == 0, run.stdout.read() if run.stdout else ""
    report = verify(copy.root)
    assert report.intact, report.errors
    assert report.entries == 2
