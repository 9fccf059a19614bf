"""The shell blocks of README.md and docs/: every command they show exists as written.

tests/test_docs.py runs the Python blocks; shell blocks name commands that need a machine set
up (a Redis, a certificate, a port 80), so they are checked rather than run: each
``fullduplex ...`` line parses with the real argument parser, each ``make`` target is in the
Makefile, each ``pip install 'fullduplex[extra]'`` names a declared extra, and each script or
module path exists in the checkout.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import tomllib
from dataclasses import dataclass

import pytest

from fullduplex.cli import build_parser
from tests.test_docs import DOCUMENTS, ROOT

_SHELL_FENCE = re.compile(r"^```(?:sh|bash|shell)[^\n]*\n(?P<body>.*?)^```\s*$", re.M | re.S)
# What separates the commands of one line: pipes, lists, background.
_SEPARATORS = frozenset({"|", "||", "&&", ";", "&"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Command:
    """One simple command of a shell block: where it is and its words."""

    where: str
    words: tuple[str, ...]


def _lexer(text: str) -> shlex.shlex:
    lexer = shlex.shlex(text, posix=True, punctuation_chars="|&;")
    lexer.whitespace_split = True
    return lexer


def _commands() -> list[Command]:
    found = []
    for path in DOCUMENTS:
        text = path.read_text()
        for match in _SHELL_FENCE.finditer(text):
            first = text.count("\n", 0, match.start("body")) + 1
            body = match["body"].replace("\\\n", " ")
            pending, start = "", 0
            for offset, line in enumerate(body.splitlines()):
                pending, start = (pending + "\n" + line, start) if pending else (line, offset)
                try:
                    lexed = list(_lexer(pending))
                except ValueError:  # a quotation that goes on on the next line
                    continue
                pending = ""
                words: list[str] = []
                for word in [*lexed, ";"]:
                    if word in _SEPARATORS:
                        while words and _ASSIGNMENT.match(words[0]):
                            words.pop(0)  # VAR=value before a command
                        if words:
                            where = f"{path.relative_to(ROOT)}:{first + start}"
                            found.append(Command(where, tuple(words)))
                        words = []
                    else:
                        words.append(word)
            assert not pending, f"{path}: an unclosed quotation in a shell block"
    return found


COMMANDS = _commands()


def _of(program: str) -> list[Command]:
    return [command for command in COMMANDS if command.words[0] == program]


def _fullduplex_arguments(command: Command) -> list[str] | None:
    words = list(command.words)
    if words[0] == "fullduplex":
        return words[1:]
    if words[0] == "python" and words[1:3] == ["-m", "fullduplex"]:
        return words[3:]
    return None


FULLDUPLEX = [c for c in COMMANDS if _fullduplex_arguments(c) is not None]


def test_the_documents_show_commands() -> None:
    """The collector finds what the documents show (a broken pattern would find nothing)."""
    assert len(FULLDUPLEX) >= 10
    assert _of("make") and _of("pip")


@pytest.mark.parametrize("command", FULLDUPLEX, ids=lambda command: command.where)
def test_fullduplex_command_parses(command: Command) -> None:
    arguments = _fullduplex_arguments(command)
    assert arguments is not None
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(arguments)
        except SystemExit as exc:
            assert exc.code == 0, (
                f"{command.where}: {shlex.join(command.words)}\n{errors.getvalue()}"
            )


@pytest.mark.parametrize("command", _of("make"), ids=lambda command: command.where)
def test_make_target_exists(command: Command) -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in command.words[1:]:
        if "=" in target:
            continue  # a variable given on the command line
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), command.where


@pytest.mark.parametrize("command", _of("pip"), ids=lambda command: command.where)
def test_pip_extras_exist(command: Command) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(project["optional-dependencies"])
    for word in command.words:
        named = re.fullmatch(r"fullduplex\[(?P<extras>[\w,-]+)\]", word)
        if named:
            assert set(named["extras"].split(",")) <= extras, command.where


@pytest.mark.parametrize(
    "command",
    [c for c in _of("python") if len(c.words) > 1 and c.words[1].endswith(".py")],
    ids=lambda command: command.where,
)
def test_python_script_exists(command: Command) -> None:
    assert (ROOT / command.words[1]).is_file(), command.where
