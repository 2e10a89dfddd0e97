"""Functions a newcomer can read: at most 80 lines of code and at most 12 parameters each (issue 24).

Every function and method in ``insilico/**/*.py`` is parsed with :mod:`ast`:

- its *length* is its lines of code after its docstring, blank and comment-only lines left out (nested
  functions count in their parent too: a function is as long as what a reader has to read);
- its *parameters* are every name it takes (positional, keyword-only, ``*args``, ``**options``), ``self``
  and ``cls`` left out.

Stimulus generators (``insilico/stimuli/``) may take more parameters: each one is a stimulus dimension
(orientation, sf, phase, contrast...). A tool with more knobs takes an options object (:mod:`insilico.options`:
the design tools' options extend :class:`insilico.synthesis.SynthesisOptions`; ``AttackOptions``,
``TuningOptions``, ``GradientOptions``, ``FitOptions``...) and, for its one-line calls, the object's fields as
keyword overrides; where a run keeps its work, ``out=`` takes a folder or an :class:`insilico.Job`.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "insilico"
MAX_LINES = 80
MAX_PARAMETERS = 12
#: Folders whose functions' parameters are stimulus dimensions (exempt from MAX_PARAMETERS).
STIMULUS_GENERATORS = ("stimuli",)

def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _lines_of_code(node: ast.FunctionDef | ast.AsyncFunctionDef, source: list[str]) -> int:
    """Lines of code of a function after its docstring, blank and comment-only lines left out."""
    body = node.body[1:] if _is_docstring(node.body[0]) else node.body
    if not body:
        return 0
    first = min([body[0].lineno] + [d.lineno for d in getattr(body[0], "decorator_list", [])])
    lines = (line.strip() for line in source[first - 1:node.end_lineno])
    return sum(1 for line in lines if line and not line.startswith("#"))


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = node.args
    names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs] + [p.arg for p in (a.vararg, a.kwarg) if p]
    return len(names) - (1 if names and names[0] in ("self", "cls") and (a.posonlyargs + a.args) else 0)


def functions() -> dict[str, tuple[int, int]]:
    """``"path.py:qualname" -> (lines of code, parameters)`` of every function of the package."""
    found = {}

    def visit(node: ast.AST, path: str, prefix: str, source: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                found[f"{path}:{name}"] = (_lines_of_code(child, source), _parameters(child))
                visit(child, path, f"{name}.", source)
            elif isinstance(child, ast.ClassDef):
                visit(child, path, f"{prefix}{child.name}.", source)

    for file in sorted(PACKAGE.rglob("*.py")):
        text = file.read_text(encoding="utf-8")
        visit(ast.parse(text), file.relative_to(PACKAGE).as_posix(), "", text.splitlines())
    return found


FUNCTIONS = functions()


def test_the_measure_reads_the_package():
    assert len(FUNCTIONS) > 500
    assert FUNCTIONS["layers/inputs.py:image_size"][1] == 4            # model, size, name, square
    assert FUNCTIONS["probe.py:Probe.__init__"][1] >= 1                  # self left out
    assert 5 < FUNCTIONS["layers/inputs.py:image_size"][0] < 25         # its docstring left out


def test_the_measure_counts_code_not_docstrings_blanks_or_comments():
    source = 'def f(self, a, *b, c=1, **d):\n    """Doc.\n\n    More doc.\n    """\n    # a comment\n\n    x = 1\n' \
             '    def g():\n        return x\n    return g\n'
    node = ast.parse(source).body[0]
    assert _lines_of_code(node, source.splitlines()) == 4 and _parameters(node) == 4


def test_no_function_is_longer_than_80_lines_of_code():
    long = {name: lines for name, (lines, _) in FUNCTIONS.items() if lines > MAX_LINES}
    assert not long, (f"functions over {MAX_LINES} lines of code (docstring, blanks and comments aside): {long}; "
                      "split them into named steps")


def test_no_function_takes_more_than_12_parameters_except_stimulus_generators():
    many = {name: n for name, (_, n) in FUNCTIONS.items()
            if n > MAX_PARAMETERS and name.split("/")[0] not in STIMULUS_GENERATORS}
    assert not many, (f"functions with more than {MAX_PARAMETERS} parameters: {many}; take an options object "
                      "(or, for a stimulus generator, live in insilico/stimuli/)")
