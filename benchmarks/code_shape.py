"""The shape of the product code: lines per module and the longest functions (docstrings excluded), as the redesign
issues measure them.

    python benchmarks/code_shape.py              # modules over 600 lines, then the 15 longest functions
    python benchmarks/code_shape.py --top 30 --all-modules
"""

import argparse
import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
NOT_PRODUCT = ("tests", "benchmarks", "docs", "build", "dist", ".venv")
PIPELINE_CALLS = {"invert", "__call__"}  # diffusers-style numbered steps: exempt from the 100-line limit


def product_modules() -> list[Path]:
    return sorted(path for path in ROOT.rglob("*.py")
                  if not any(part in NOT_PRODUCT or part.startswith(".") for part in path.relative_to(ROOT).parts))


def function_lengths(path: Path) -> list[tuple[int, str]]:
    """(lines without the docstring, qualified name) of every function in `path`."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, prefix=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = child.body
                start = body[0].end_lineno + 1 if (body and isinstance(body[0], ast.Expr) and isinstance(
                    getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str)
                    and len(body) > 1) else child.lineno
                found.append((child.end_lineno - start + 1, f"{prefix}{child.name}"))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(tree)
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--all-modules", action="store_true", help="list every module, not only those over 600")
    args = parser.parse_args(argv)
    modules = [(len(path.read_text().splitlines()), path.relative_to(ROOT).as_posix()) for path in product_modules()]
    print("| module | lines |\n|---|---|")
    for lines, name in sorted(modules, reverse=True):
        if args.all_modules or lines > 600:
            print(f"| {name} | {lines} |")
    functions = [(length, f"{path.relative_to(ROOT).as_posix()}:{name}")
                 for path in product_modules() for length, name in function_lengths(path)]
    print(f"\n| the {args.top} longest functions | lines |\n|---|---|")
    for length, name in sorted(functions, reverse=True)[: args.top]:
        print(f"| {name} | {length} |")
    over = [name for length, name in functions if length > 100 and name.rsplit(".", 1)[-1].split(":")[-1]
            not in PIPELINE_CALLS]
    print(f"\nfunctions over 100 lines outside invert()/__call__: {len(over)} {over}")


if __name__ == "__main__":
    main()
