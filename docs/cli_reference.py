"""Write docs/cli.md, the reference of every `cogvideox-ddim-inversion` command and option, from the CLI's parser.

    python docs/cli_reference.py > docs/cli.md     # after changing a command or an option
    python docs/cli_reference.py --check           # exit 1 when docs/cli.md is stale (tests/test_docs.py runs it)

The page is made from whatever `cogvideox_ddim_inversion.cli.build_parser()` returns: its subcommands (nested ones
too), their argument groups and every action in them, so the reference cannot drift from the code. Nothing here
depends on the terminal's width or the Python version's group titles: the output is the same on every machine."""

import argparse
import difflib
import re
import sys
from pathlib import Path


CLI_PAGE = Path(__file__).resolve().parent / "cli.md"
REGENERATE = "python docs/cli_reference.py > docs/cli.md"


def subcommands(parser: argparse.ArgumentParser) -> list:
    """`(name, parser, help)` of each subcommand, in the order they were added (aliases once)."""
    found, seen = [], set()
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, subparser in action.choices.items():
            if id(subparser) not in seen:
                seen.add(id(subparser))
                found.append((name, subparser, helps.get(name)))
    return found


def documented_actions(group) -> list:
    """The actions of an argument group a user types: not `--help`, not hidden ones, not the subcommand slot."""
    return [
        action for action in group._group_actions
        if action.help is not argparse.SUPPRESS
        and not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
    ]


def group_title(parser: argparse.ArgumentParser, group) -> str:
    # argparse's own two groups are titled differently across Python versions ("optional arguments", "options").
    if group is parser._positionals:
        return "arguments"
    if group is parser._optionals:
        return "options"
    return group.title


def invocation(parser: argparse.ArgumentParser, action) -> str:
    """What the user types: `--steps STEPS`, `--dtype {auto,bf16}`, `--mask-words WORD [WORD ...]`, `video`."""
    formatter = parser._get_formatter()
    if not action.option_strings:
        return formatter._get_default_metavar_for_positional(action) if action.metavar is None else str(action.metavar)
    names = ", ".join(action.option_strings)
    if action.nargs == 0:
        return names
    metavar = formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
    return f"{names} {metavar}"


def default_text(action) -> str:
    if action.required:
        return "required"
    if action.nargs == 0 or action.default is None or action.default is argparse.SUPPRESS:
        return ""  # switches, and options whose absence means "not given" (their help says what happens then)
    if isinstance(action.default, (list, tuple)):
        return " ".join(str(value) for value in action.default)
    if isinstance(action.default, str) and action.default == "":
        return '""'
    return str(action.default)


def help_text(parser: argparse.ArgumentParser, action) -> str:
    if not action.help:
        return ""
    text = parser._get_formatter()._expand_help(action)  # %(default)s and friends, as --help prints them
    return " ".join(text.split())


def markdown_text(text: str) -> str:
    """Plain text for a table cell: pipes escaped everywhere, `<`, `>` and `*` escaped outside code spans."""
    pieces = text.replace("|", "\\|").split("`")
    for i in range(0, len(pieces), 2):  # even pieces lie outside backticks
        pieces[i] = pieces[i].replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*")
    return "`".join(pieces)


def code(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`" if text else ""


def synopsis(parser: argparse.ArgumentParser) -> str:
    """`prog [options] <positionals>`: the shape of the command line, without argparse's width-dependent wrapping."""
    formatter = parser._get_formatter()
    words = [parser.prog, "[options]"]
    for action in parser._actions:  # positionals, in whichever group they were put
        if action.option_strings:
            continue
        if isinstance(action, argparse._SubParsersAction):
            words.append("COMMAND ...")
        elif action.help is not argparse.SUPPRESS:
            words.append(formatter._format_args(action, formatter._get_default_metavar_for_positional(action)))
    return " ".join(words)


def options_table(parser: argparse.ArgumentParser, group) -> list:
    lines = ["| option | default | description |", "|---|---|---|"]
    for action in documented_actions(group):
        lines.append(
            f"| {code(invocation(parser, action))} | {code(default_text(action))} "
            f"| {markdown_text(help_text(parser, action))} |"
        )
    return lines


def command_section(name: str, parser: argparse.ArgumentParser, summary, level: int) -> list:
    """A command's heading, its description, one table per argument group, then its own subcommands."""
    lines = ["#" * level + f" {name}", ""]
    description = parser.description or summary
    if description:
        lines += [markdown_text(" ".join(description.split())), ""]
    lines += [f"`{synopsis(parser)}`", ""]
    for group in parser._action_groups:
        if documented_actions(group):
            lines += ["#" * (level + 1) + f" {name}: {group_title(parser, group)}", ""]
            lines += options_table(parser, group) + [""]
    for sub_name, subparser, sub_help in subcommands(parser):
        lines += command_section(f"{name} {sub_name}", subparser, sub_help, level + 1)
    return lines


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def render(parser: argparse.ArgumentParser) -> str:
    lines = [
        "# Command line reference",
        "",
        "<!-- Generated from cogvideox_ddim_inversion.cli.build_parser(): do not edit by hand, regenerate it with",
        f"     {REGENERATE} -->",
        "",
    ]
    if parser.description:
        lines += [f"`{parser.prog}`: {markdown_text(' '.join(parser.description.split()))}", ""]
    commands = subcommands(parser)
    if commands:
        lines += ["| command | what it does |", "|---|---|"]
        for name, _, summary in commands:
            lines.append(f"| [{name}](#{anchor(name)}) | {markdown_text(' '.join((summary or '').split()))} |")
        lines += ["", "Every command also takes `-h`, `--help`: these options in the terminal.", ""]
        for name, subparser, summary in commands:
            lines += command_section(name, subparser, summary, level=2)
    else:
        lines += command_section(parser.prog, parser, None, level=2)
    return "\n".join(lines).rstrip("\n") + "\n"


def stale_report(current: str, expected: str, path: Path, max_lines: int = 40) -> str:
    diff = list(difflib.unified_diff(
        current.splitlines(), expected.splitlines(), f"{path} (committed)", f"{path} (from build_parser())",
        lineterm="",
    ))
    shown = diff[:max_lines] + ([f"... {len(diff) - max_lines} more diff lines"] if len(diff) > max_lines else [])
    return "\n".join([f"{path} is stale: regenerate it with `{REGENERATE}`.", *shown])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed page instead of printing; exit 1 when it differs")
    parser.add_argument("--path", type=Path, default=CLI_PAGE, help="the page --check compares (default: docs/cli.md)")
    args = parser.parse_args(argv)

    try:
        from cogvideox_ddim_inversion.cli import build_parser
    except ImportError as error:
        print(f"cannot import the CLI ({error}): install the package first, `pip install -e .`", file=sys.stderr)
        return 2

    expected = render(build_parser())
    if not args.check:
        sys.stdout.write(expected)
        return 0
    current = args.path.read_text(encoding="utf-8") if args.path.is_file() else ""
    if current != expected:
        print(stale_report(current, expected, args.path), file=sys.stderr)
        return 1
    print(f"{args.path} is up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
