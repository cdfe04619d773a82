"""The `gates` command line: parse arguments, call the library, print, return an exit code.

Exit codes: 0 all good, 1 a document has errors (or a legacy one cannot be converted),
2 a usage or input/output error. A command is
one `Command` in `COMMANDS`; adding one means adding a row there.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gates.catalog import GATE_NAMES
from gates.certify.process import terminate_on_sigterm
from gates.exceptions import (
    ClosureImportError,
    GatesError,
    InputNotFound,
    InvalidSpecError,
    OutputExistsError,
    OutputWriteError,
)
from gates.orders.closure_import import import_closure
from gates.orders.vault import Vault, expand, find_root, load_documents, load_vault

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


@dataclass(frozen=True, slots=True)
class Command:
    """A subcommand: its name, one line of help, its arguments and what it runs."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _configure_lint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="OS spec files or folders (default: every vault/*/os/*.md of the repository)",
    )
    _add_root(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text")


def _add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        help="repository root (default: the nearest folder above the current one holding "
        "vault/ and pyproject.toml or .git)",
    )


def _root(given: Path | None, *, required: bool) -> Path:
    if given is not None:
        if not given.is_dir():
            raise InputNotFound(f"--root {given}: no such folder")
        return given
    try:
        return find_root(Path.cwd())
    except GatesError:
        if required:
            raise
        return Path.cwd()


def _run_lint(args: argparse.Namespace) -> int:
    root = _root(args.root, required=not args.paths)
    vault = load_documents(expand(args.paths), root=root) if args.paths else load_vault(root)
    print(_lint_json(vault) if args.format == "json" else _lint_text(vault))
    return EXIT_OK if vault.ok else EXIT_INVALID


def _lint_text(vault: Vault) -> str:
    lines = [str(error) for error in vault.errors]
    noun = "document" if vault.checked == 1 else "documents"
    if vault.ok:
        lines.append(f"gates lint: {vault.checked} {noun} checked, no errors")
    else:
        count = len(vault.errors)
        errors = f"{count} error{'s' if count != 1 else ''}"
        if vault.failing <= vault.checked:
            lines.append(f"gates lint: {errors} in {vault.failing} of {vault.checked} {noun}")
        else:  # some are in files of the vault that are not specs (see vault.gate_inputs)
            lines.append(
                f"gates lint: {errors} in {vault.failing} files of the vault "
                f"({vault.checked} {noun} checked)"
            )
    return "\n".join(lines)


def _lint_json(vault: Vault) -> str:
    report = {
        "ok": vault.ok,
        "root": str(vault.root.resolve()),
        "checked": vault.checked,
        "documents": [
            {
                "id": order.id,
                "short_id": order.short_id,
                "path": order.path.as_posix(),
                "criteria": [criterion.id for criterion in order.criteria],
            }
            for order in vault.documents.values()
        ],
        "errors": [
            {
                "path": error.path.as_posix(),
                "line": error.line,
                "message": error.message,
                "fix": error.fix,
            }
            for error in vault.errors
        ],
    }
    return json.dumps(report, ensure_ascii=False, indent=2)


def _configure_import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE", help="a legacy closure document")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="where to write the spec; a folder gets <ID>.md (default: standard output)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.add_argument(
        "--project", help="the vault project (default: from the Registro no Vault path)"
    )
    parser.add_argument(
        "--gates",
        type=_gate_list,
        default=GATE_NAMES,
        metavar="NAMES",
        help=f"comma-separated gates the OS requires (default: {','.join(GATE_NAMES)})",
    )
    parser.add_argument(
        "--feature",
        dest="features",
        action="append",
        metavar="PATH",
        help="a feature file proving the OS, repeatable (default: features/os_<NNN>.feature)",
    )


def _gate_list(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in GATE_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown gate {', '.join(unknown)}; known: {', '.join(GATE_NAMES)}"
        )
    return names


def _run_import(args: argparse.Namespace) -> int:
    spec = import_closure(args.file, project=args.project, gates=args.gates, features=args.features)
    if spec.errors:
        for error in spec.errors:
            print(error)
        print(f"gates import-closure: the spec has {len(spec.errors)} error(s); nothing written")
        return EXIT_INVALID
    if args.out is None:
        sys.stdout.write(spec.text)
        return EXIT_OK
    out: Path = args.out / f"{spec.id}.md" if args.out.is_dir() else args.out
    if out.exists() and not args.force:
        raise OutputExistsError(f"{out} exists; pass --force to overwrite it")
    try:
        out.write_text(spec.text, encoding="utf-8", newline="\n")
    except OSError as exc:
        raise OutputWriteError(f"{out}: cannot write: {exc.strerror or exc}") from None
    ids = ", ".join(criterion.id for criterion in spec.criteria)
    print(f"wrote {out}: {spec.id} with {len(spec.criteria)} criteria ({ids})")
    return EXIT_OK


def _configure_certify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "ids",
        nargs="*",
        metavar="OS-ID",
        help="OSes to certify: full id, OS-004, 004 or 4 (default: every OS in the vault)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="decide without writing records or PLAN.md; exit 1 if an OS would not be CONCLUÍDA",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="run every gate again, even those with evidence kept for this commit's tree",
    )
    _add_root(parser)


def _run_certify(args: argparse.Namespace) -> int:
    from gates.certify.run import environment
    from gates.progress import progress_for
    from gates.record.publish import certify

    root = _root(args.root, required=True)
    _refuse_broken_specs(root, args.ids)
    results = certify(
        root,
        args.ids,
        check=args.check,
        fresh=args.fresh,
        progress=progress_for(sys.stdout),
        env=environment(),
    )
    concluded = sum(result.concluded for result in results)
    mode = " (check: nothing written)" if args.check else ""
    print(f"gates certify: {concluded} of {len(results)} OS CONCLUÍDA{mode}")
    return EXIT_OK if concluded == len(results) else EXIT_INVALID


def _configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "gates",
        nargs="*",
        metavar="GATE",
        choices=[name for name in GATE_NAMES if name != "deliverables"],
        help="gates to run (default: every gate the vault's OSes require)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="run them even when evidence is kept for this tree"
    )
    _add_root(parser)


def _run_run(args: argparse.Namespace) -> int:
    from gates.certify.run import environment, run_gates
    from gates.progress import PlainProgress

    root = _root(args.root, required=True)
    outcome = run_gates(
        root, args.gates, fresh=args.fresh, progress=PlainProgress(sys.stdout), env=environment()
    )
    passed = sum(gate.passed for gate in outcome.gates)
    if outcome.commit is None:
        where = "on the working tree, which differs from HEAD: nothing kept as evidence"
    else:
        where = f"on commit {outcome.commit[:12]}: what passed is kept as evidence"
    print(f"gates run: {passed} of {len(outcome.gates)} gates PASS, {where}")
    return EXIT_OK if outcome.passed else EXIT_INVALID


def _refuse_broken_specs(root: Path, wanted: Sequence[str]) -> None:
    """A spec that does not parse cannot be certified: say so in one line, not a record."""
    vault = load_vault(root)
    if vault.ok:
        return
    broken = {error.path.as_posix() for error in vault.errors}
    if not wanted or any(name in path for name in wanted for path in broken):
        first = vault.errors[0]
        raise InvalidSpecError(
            f"{first} ({len(vault.errors)} error(s) in {len(broken)} spec(s); run `gates lint`)"
        )


def _configure_status(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json"), default="text")
    _add_root(parser)


def _run_status(args: argparse.Namespace) -> int:
    from gates.certify.config import load_config
    from gates.record.drift import Drift, DriftFinder
    from gates.record.integrity import stale_ids
    from gates.record.records import latest_record, unvouched_records

    root = _root(args.root, required=True)
    vault = load_vault(root)
    stale = stale_ids(root)
    drifts = DriftFinder(root, load_config(root))
    rows = []
    drifted: list[Drift | None] = []
    for order in sorted(vault.documents.values(), key=lambda o: (o.number, o.id)):
        spec = PurePosixPath(order.path.as_posix())
        record = latest_record(root, spec, order.id)
        outside = unvouched_records(root, spec, order.id)
        drift = drifts.drift(order, record.commit if record else None)
        rows.append(
            {
                "os": order.short_id,
                "id": order.id,
                "decision": record.decision if record else "NÃO CERTIFICADA",
                "commit": record.commit if record else None,
                "certified_at": record.certified_at.isoformat() if record else None,
                "stale": order.id in stale,
                "regressed": bool(record and record.decision == "REGREDIDA"),
                "record": record.markdown.as_posix() if record else None,
                "outside_ledger": [r.twin.as_posix() for r in outside],
                "drift": drift.as_json() if drift is not None else None,
            }
        )
        drifted.append(drift)
    if args.format == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return EXIT_OK
    for row, drift in zip(rows, drifted, strict=True):
        when = f"{str(row['commit'])[:12]}  {row['certified_at']}" if row["commit"] else "—"
        flag = "  DESATUALIZADA" if row["stale"] else ""
        unlisted = row["outside_ledger"]
        if isinstance(unlisted, list) and unlisted:  # never a verdict: shown as what they are
            flag += f"  ({len(unlisted)} registro(s) fora do livro-razão: {', '.join(unlisted)})"
        print(f"{row['os']}  {row['decision']:<16} {when}  {row['id']}{flag}")
        if drift is not None and drift.drifted:  # never a verdict read without it
            print(f"    ⚠ mudou desde a certificação: {drift.describe()}")
    if not rows:
        print("gates status: the vault has no OS")
    return EXIT_OK


def _configure_verify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--public-key",
        type=Path,
        metavar="FILE",
        help="check every ledger entry's ed25519 signature against this public key (PEM)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="also fail (exit 1) when a certification is DESATUALIZADA or a record is unlisted",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    _add_root(parser)


def _run_verify(args: argparse.Namespace) -> int:
    from gates.record.integrity import verify
    from gates.signing import load_public_key

    root = _root(args.root, required=True)
    public = load_public_key(args.public_key) if args.public_key else None
    report = verify(root, public_key=public)
    failed = not report.intact or (args.strict and bool(report.stale or report.warnings))
    if args.format == "json":
        print(
            json.dumps(
                {
                    "ok": not failed,
                    "ledger": report.ledger,
                    "entries": report.entries,
                    "signed": report.signed,
                    "errors": report.errors,
                    "warnings": report.warnings,
                    "stale": [
                        {"os": s.os_id, "entry": s.seq, "commit": s.commit, "changed": s.changed}
                        for s in report.stale
                    ],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return EXIT_INVALID if failed else EXIT_OK
    for error in report.errors:
        print(f"error: {error}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    for stale in report.stale:
        level = "error" if args.strict else "warning"
        print(
            f"{level}: {stale.os_id} DESATUALIZADA — changed since its CONCLUÍDA closure "
            f"(entry {stale.seq}, commit {stale.commit[:12]}): {', '.join(stale.changed)}"
        )
    signatures = (
        f", {report.signed} signed" + (" and checked" if public is not None else " (not checked)")
        if report.signed
        else ""
    )
    verdict = "BROKEN" if not report.intact else ("FAILED (--strict)" if failed else "verified")
    noun = "entry" if report.entries == 1 else "entries"
    print(f"gates verify: {report.ledger}: {report.entries} {noun}{signatures} — {verdict}")
    return EXIT_INVALID if failed else EXIT_OK


def _configure_keygen(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="where to write the private key (FILE.pub gets the public key); never in the vault",
    )
    _add_root(parser)


def _run_keygen(args: argparse.Namespace) -> int:
    from gates.signing import KEY_ENV, generate

    vault = None
    try:
        vault = _root(args.root, required=True) / "vault"
    except GatesError:
        vault = None
    private, public = generate(args.out, forbidden=vault)
    print(f"wrote {private} (private, keep it secret) and {public} (public)")
    print(f"sign with: export {KEY_ENV}={private}; verify with: gates verify --public-key {public}")
    return EXIT_OK


def _configure_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder to write the static site into (created if needed; open DIR/index.html)",
    )
    parser.add_argument(
        "--public-key",
        type=Path,
        metavar="FILE",
        help="check every ledger entry's ed25519 signature against this public key (PEM)",
    )
    _add_root(parser)


def _run_report(args: argparse.Namespace) -> int:
    from gates.report.site import write_report
    from gates.signing import load_public_key

    root = _root(args.root, required=True)
    public = load_public_key(args.public_key) if args.public_key else None
    site, written = write_report(root, args.out, public_key=public)
    ledger_state = "verified" if site.verification.intact else "BROKEN (the site shows why)"
    print(
        f"gates report: wrote {len(written)} files for {len(site.orders)} OS to {args.out} "
        f"(open {args.out / 'index.html'}); ledger {ledger_state}"
    )
    return EXIT_OK


COMMANDS: tuple[Command, ...] = (
    Command("lint", "check OS specs; exit 1 if any has an error", _configure_lint, _run_lint),
    Command(
        "import-closure",
        "turn a legacy closure document into an OS spec",
        _configure_import,
        _run_import,
    ),
    Command(
        "certify",
        "run the gates, decide each OS and write its closure record into the vault",
        _configure_certify,
        _run_certify,
    ),
    Command(
        "run",
        "run gates on the commit (as certify would) and keep what passes as evidence",
        _configure_run,
        _run_run,
    ),
    Command(
        "status", "show each OS's last verdict, commit and date", _configure_status, _run_status
    ),
    Command(
        "verify",
        "check the ledger, the records it names and their signatures; report stale OSes",
        _configure_verify,
        _run_verify,
    ),
    Command("keygen", "make an ed25519 key pair for signing", _configure_keygen, _run_keygen),
    Command(
        "report",
        "render the auditors' static site (HTML, no JavaScript) of the vault and the ledger",
        _configure_report,
        _run_report,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gates", description="Vault-first governance of work orders (OS)."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `gates`; returns the exit code instead of raising for any expected failure."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        with terminate_on_sigterm():
            code: int = args.run(args)
        sys.stdout.flush()
    except (ClosureImportError, InvalidSpecError) as exc:
        print(f"gates: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except GatesError as exc:
        print(f"gates: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("gates: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("GATES_DEBUG"):
            raise
        print(
            f"gates: internal error ({type(exc).__name__}: {exc}); "
            "run again with GATES_DEBUG=1 to see the traceback",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return code
