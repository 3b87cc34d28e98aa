"""``mdmappliance completion bash``: shell completion, written from the command's own parser
(so it never drifts from it), with the request types of the catalog after ``command send``.

Install it with ``mdmappliance completion bash > /etc/bash_completion.d/mdmappliance`` (or
``source <(mdmappliance completion bash)`` in a shell).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator

FUNCTION = "_mdmappliance_complete"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """A parser's subcommands by name (aliases included)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--")
    )


def _words(values: list[str]) -> str:
    return shlex.quote(" ".join(values))


def _cases(parser: argparse.ArgumentParser, request_types: list[str]) -> Iterator[str]:
    """One ``case`` arm per command, and per action of a command that has them."""
    for name, command in sorted(_subcommands(parser).items()):
        actions = _subcommands(command)
        if not actions:
            yield f"        {name}) words={_words(_options(command))} ;;"
            continue
        yield f"        {name})"
        yield '            if [ "$COMP_CWORD" -eq 2 ]; then'
        yield f"                words={_words(sorted(actions))}"
        yield "            else"
        yield '                case "${COMP_WORDS[2]}" in'
        for action_name, action in sorted(actions.items()):
            words = _options(action)
            if name == "command" and action_name == "send":
                yield f"                    {action_name})"
                yield '                        if [ "$COMP_CWORD" -eq 3 ]; then'
                yield f"                            words={_words(request_types)}"
                yield "                        else"
                yield f"                            words={_words(words)}"
                yield "                        fi ;;"
                continue
            yield f"                    {action_name}) words={_words(words)} ;;"
        yield "                esac"
        yield "            fi ;;"


def bash_script(parser: argparse.ArgumentParser, request_types: list[str]) -> str:
    """The bash completion script for ``parser`` (the ``mdmappliance`` command's)."""
    commands = sorted(_subcommands(parser))
    lines = [
        "# bash completion for mdmappliance (mdmappliance completion bash)",
        f"{FUNCTION}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" words=""',
        '    if [ "$COMP_CWORD" -eq 1 ]; then',
        f"        words={_words([*commands, '--help', '--version'])}",
        "    else",
        '    case "${COMP_WORDS[1]}" in',
        *_cases(parser, request_types),
        "    esac",
        "    fi",
        '    if [[ "$cur" == --*=* ]]; then',
        "        COMPREPLY=()",
        "    else",
        '        mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")',
        "    fi",
        "}",
        f"complete -o default -F {FUNCTION} mdmappliance",
        "",
    ]
    return "\n".join(lines)
