"""docs/operations.md covers every procedure of the operations page, and its commands are ones
that exist: every `cariosan` command line parses, every compose command names real services."""

from __future__ import annotations

import re
import shlex
import uuid
from pathlib import Path

import pytest

from cariosan.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
SERVICES = {"postgres", "minio", "redis", "cariosan-server", "minio-tls"}


def _commands() -> list[str]:
    """Shell commands of the doc's code blocks, continuation lines joined."""
    blocks = re.findall(r"```(?:sh|cron)\n(.*?)```", DOC, flags=re.S)
    lines: list[str] = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        pending = ""
        for line in joined.splitlines():
            pending = f"{pending} {line.strip()}".strip()
            try:  # a quoted argument may span lines
                shlex.split(pending.replace("\\%", "%"))
            except ValueError:
                continue
            if pending:
                lines.append(pending)
            pending = ""
        assert not pending, f"unbalanced quotes in: {pending}"
    return [line for line in lines if not line.startswith("#")]


def _cariosan_invocations() -> list[list[str]]:
    found = []
    for line in _commands():
        lexer = shlex.shlex(line.replace("\\%", "%"), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
        for i, word in enumerate(words):
            at_start = i == 0 or words[i - 1] in ("&&", ";", "|", "||")
            is_program = word == "/cariosan" or (word == "cariosan" and at_start)
            if is_program and i + 1 < len(words):
                args = []
                for w in words[i + 1 :]:
                    if w in ("&&", ";", "|", ">", "||"):
                        break
                    args.append(w)
                found.append(args)
    return found


def test_every_procedure_of_the_operations_page_is_covered() -> None:
    headings = [h.lower() for h in re.findall(r"^#+ (.+)$", DOC, flags=re.M)]
    for needed in (
        "daily dump and rotation",
        "restore",
        "point-in-time recovery",
        "mirror",
        "upgrade",
        "rollback",
        "carios_jwt_secret",
        "workspace api secret",
        "minio_root_password",
        "postgres_password",
        "monitoring",
    ):
        assert any(needed in h for h in headings), needed
    for phrase in (
        "Stop the server first",
        "mc mirror --remove",
        "cariosan attachments mirror",
        "CARIOSAN_IMAGE",
        "CARIOS_JWT_SECRET_PREVIOUS",
        "rotate-secret --workspace",
        "--grace",
        "ALTER USER",
        "/healthz",
        "/readyz",
        "/metrics",
        "HEALTHCHECK",
        "archive_mode=on",
    ):
        assert phrase in DOC, phrase


@pytest.mark.parametrize("args", _cariosan_invocations(), ids=" ".join)
def test_every_cariosan_command_in_the_doc_parses(args: list[str]) -> None:
    args = [str(uuid.uuid4()) if a == "WORKSPACE_ID" else a for a in args]
    parsed = build_parser().parse_args(args)
    assert callable(parsed.func)


def test_the_doc_runs_cariosan_backup_restore_and_rotation() -> None:
    commands = {" ".join(a[:2]) for a in _cariosan_invocations()}
    for needed in ("backup create", "backup verify", "backup list", "backup prune"):
        assert needed in commands
    assert any(a[0] == "restore" for a in _cariosan_invocations())
    assert any(a[0] == "rotate-secret" for a in _cariosan_invocations())


def test_compose_commands_name_real_services() -> None:
    takes_value = {"--user", "-f", "--env-file", "-u"}
    for line in _commands():
        if line.startswith("alias ") or not ("docker compose" in line or line.startswith("dc ")):
            continue
        words = shlex.split(line.replace("\\%", "%"))
        verbs = [i for i, w in enumerate(words) if w in ("exec", "run", "stop", "start", "pull")]
        if not verbs:
            assert " up -d" in line, line
            continue
        i = verbs[0] + 1
        while words[i].startswith("-"):
            i += 2 if words[i] in takes_value else 1
        assert words[i] in SERVICES, f"{words[i]!r} in: {line}"


def test_crontab_lines_escape_percent_signs() -> None:
    for block in re.findall(r"```cron\n(.*?)```", DOC, flags=re.S):
        for line in block.splitlines():
            assert re.search(r"(?<!\\)%", line) is None, line
