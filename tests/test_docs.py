"""The documentation: docs/cli.md matches the parser, every relative link resolves, and the README stays short and
keeps the test command that CI runs."""

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT


DOCS = REPO_ROOT / "docs"
README = REPO_ROOT / "README.md"
GENERATOR = DOCS / "cli_reference.py"
README_MAX_LINES = 200

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)=["']([^"']+)["']""", re.IGNORECASE)


def load_generator():
    spec = importlib.util.spec_from_file_location("cli_reference", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_generator(*args):
    return subprocess.run([sys.executable, str(GENERATOR), *args], capture_output=True, text=True, cwd=REPO_ROOT)


def markdown_pages():
    return [README, *sorted(DOCS.glob("*.md"))]


def without_code(text: str) -> str:
    """Links inside code blocks and code spans are examples, not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(text: str) -> list:
    prose = without_code(text)
    return [*INLINE_LINK.findall(prose), *REFERENCE_LINK.findall(prose), *HTML_LINK.findall(prose)]


def heading_anchors(text: str) -> set:
    """GitHub's anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered -1, -2, ..."""
    anchors, seen = set(), {}
    for line in FENCE.sub("", text).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def broken_links(page: Path) -> list:
    """`target (why)` for each relative link of a page that points nowhere: a missing file or a missing heading."""
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("//"):
            continue  # http:, https:, mailto:: outside the repository
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target} (no file {resolved})")
        elif anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved.read_text("utf-8")):
            broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    return broken


def test_cli_reference_is_up_to_date():
    completed = run_generator("--check")
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_check_fails_on_a_stale_page_and_says_how_to_regenerate(tmp_path):
    stale = tmp_path / "cli.md"
    stale.write_text((DOCS / "cli.md").read_text(encoding="utf-8").replace("--steps", "--stepz", 1), encoding="utf-8")
    completed = run_generator("--check", "--path", str(stale))
    assert completed.returncode == 1
    assert "python docs/cli_reference.py > docs/cli.md" in completed.stderr
    assert "-| `--stepz" in completed.stderr and "+| `--steps" in completed.stderr  # the diff names the change

    completed = run_generator("--check", "--path", str(tmp_path / "missing.md"))
    assert completed.returncode == 1


def test_generator_prints_the_page_it_checks_against():
    completed = run_generator()
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == (DOCS / "cli.md").read_text(encoding="utf-8")


def test_reference_documents_every_command_and_option_of_the_cli():
    from cogvideox_ddim_inversion.cli import build_parser

    generator = load_generator()
    parser = build_parser()
    page = generator.render(parser)
    commands = generator.subcommands(parser)
    assert {name for name, _, _ in commands} >= {"edit", "invert", "batch", "demo", "app", "publish"}
    for name, subparser, _ in commands:
        section = page.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in subparser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            shown = action.option_strings[0] if action.option_strings else (action.metavar or action.dest)
            assert f"| `{shown}" in section, (name, shown)
            if action.help:
                help_cell = generator.markdown_text(generator.help_text(subparser, action))
                assert f" | {help_cell} |" in section, (name, shown)


def test_reference_walks_any_parser_generically():
    """Subcommands (nested too), custom argument groups, defaults, choices, required and hidden options."""
    generator = load_generator()
    parser = argparse.ArgumentParser(prog="tool", description="A tool.")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="run things", description="Run every thing | once.")
    run.add_argument("target", help="what to run")
    run.add_argument("--count", type=int, default=3, help="how many (default %(default)s)")
    run.add_argument("--words", nargs="+", metavar="WORD", help="words with <angle> brackets")
    run.add_argument("--secret", help=argparse.SUPPRESS)
    tuning = run.add_argument_group("tuning", "knobs")
    tuning.add_argument("--mode", choices=["fast", "exact"], default="fast")
    tuning.add_argument("--output", required=True)
    tuning.add_argument("--verbose", action="store_true", help="talk more")
    nested = run.add_subparsers(dest="what").add_parser("inner", help="an inner command")
    nested.add_argument("--depth", default=1.5, help="how deep")

    page = generator.render(parser)
    assert "| [run](#run) | run things |" in page
    assert "## run\n\nRun every thing \\| once.\n\n`tool run [options] target COMMAND ...`" in page
    assert "### run: arguments" in page and "| `target` | `required` | what to run |" in page
    assert "| `--count COUNT` | `3` | how many (default 3) |" in page
    assert "| `--words WORD [WORD ...]` |  | words with &lt;angle&gt; brackets |" in page
    assert "--secret" not in page and "--help" not in page.split("## run", 1)[1]
    assert "### run: tuning" in page
    assert "| `--mode {fast,exact}` | `fast` |  |" in page
    assert "| `--output OUTPUT` | `required` |  |" in page
    assert "| `--verbose` |  | talk more |" in page
    assert "### run inner" in page and "| `--depth DEPTH` | `1.5` | how deep |" in page


def test_link_checker_finds_broken_links(tmp_path):
    (tmp_path / "there.md").write_text("# A heading\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok too](there.md#a-heading) [web](https://example.com) [self](#top)\n"
        "# Top\n[gone](missing.md) [no heading](there.md#nowhere) ![picture](images/none.png)\n"
        "`[code](ignored.md)`\n```\n[block](ignored.md)\n```\n[ref]: also_missing.md\n",
        encoding="utf-8",
    )
    found = [entry.split(" ", 1)[0] for entry in broken_links(page)]
    assert found == ["missing.md", "there.md#nowhere", "images/none.png", "also_missing.md"]


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = markdown_pages()
    assert len(pages) >= 10 and len(links(README.read_text(encoding="utf-8"))) >= 15
    broken = {page.name: broken_links(page) for page in pages}
    assert not any(broken.values()), {name: entries for name, entries in broken.items() if entries}


def test_readme_links_every_docs_page():
    readme_targets = {target.partition("#")[0] for target in links(README.read_text(encoding="utf-8"))}
    unlinked = [page.name for page in sorted(DOCS.glob("*.md")) if f"docs/{page.name}" not in readme_targets]
    assert not unlinked


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_keeps_the_test_command_that_ci_runs():
    readme = README.read_text(encoding="utf-8")
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = 'pip install -e ".[test]" && python -m pytest -q'
    assert f"```bash\n{command}\n```" in readme
    assert command in ci.splitlines()
    assert "pip install torch==2.13.0" in readme and "pip install --quiet torch==2.13.0" in ci
