"""Every notebook follows notebooks/README.md: clean, parameterised, short cells, goals first, exercises last.

These tests read the files only; ``make test`` also executes every notebook
(``pytest --nbmake`` with ``LABKIT_QUICK=1``), against real brokers.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
#: Longest code cell (lines) and longest function defined in a notebook (lines); README says "~10" and "a couple".
MAX_CELL_LINES = 12
MAX_DEF_LINES = 3
#: Self-check functions whose use means the notebook has exercises with solutions.
CHECK_CALL = re.compile(r"\bcheck\.(?!quick\b)[a-z_]+\(")


def _read(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    return nb


def _code(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["00_welcome.ipynb"]


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request) -> tuple[Path, nbformat.NotebookNode]:
    return request.param, _read(request.param)


def test_name_is_numbered(notebook):
    path, _ = notebook
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), f"{path.name}: name it NN_topic.ipynb"


def test_no_outputs_or_execution_counts_are_committed(notebook):
    path, nb = notebook
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, (f"{path.name}: cells {dirty} hold outputs or execution counts; clear them "
                       "(jupyter nbconvert --clear-output --inplace) before saving")


def test_every_cell_has_its_own_id(notebook):
    path, _ = notebook
    cells = json.loads(path.read_text())["cells"]  # raw: nbformat.read would fill missing ids in silently
    ids = [c.get("id") for c in cells]
    missing = [i for i, cell_id in enumerate(ids) if not cell_id]
    assert not missing, f"{path.name}: cells {missing} have no id (nbformat 4.5); open and save it in Jupyter"
    assert len(set(ids)) == len(ids), f"{path.name}: two cells share an id"


def test_opens_with_title_goals_and_time(notebook):
    path, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown", f"{path.name}: the first cell must be markdown (title, goals, time)"
    assert first.source.startswith(f"# {path.name[:2]} "), f"{path.name}: start with '# {path.name[:2]} · Title'"
    assert re.search(r"\*\*Goals?\b", first.source), f"{path.name}: state the learning goals in the first cell"
    assert re.search(r"\*\*Time:\*\*.*\d+ minutes", first.source), f"{path.name}: state the time it takes"


def test_first_code_cell_is_the_tagged_parameters_cell(notebook):
    path, nb = notebook
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: tag exactly one cell 'parameters' (papermill convention)"
    assert tagged[0] is _code(nb)[0], f"{path.name}: the parameters cell must be the first code cell"
    for statement in ast.parse(tagged[0].source).body:
        assert isinstance(statement, ast.Assign), f"{path.name}: the parameters cell holds assignments only"
        ast.literal_eval(statement.value)  # plain values papermill can override


def test_quick_mode_goes_through_labkit(notebook):
    path, nb = notebook
    sources = [c.source for c in _code(nb)]
    assert any("check.quick(" in s for s in sources), f"{path.name}: shrink sizes with labkit.check.quick(...)"
    reads_env = [s for s in sources if re.search(r"os\.environ|getenv\(", s)]
    assert not reads_env, f"{path.name}: let check.quick read LABKIT_QUICK; no environment reads in cells"


def test_cells_are_short_and_logic_lives_in_labkit(notebook):
    path, nb = notebook
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        lines = cell.source.splitlines()
        assert len(lines) <= MAX_CELL_LINES, (f"{path.name} cell {i}: {len(lines)} lines; split it or move "
                                              "the logic into labkit")
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                size = node.end_lineno - node.lineno + 1
                assert size <= MAX_DEF_LINES, f"{path.name} cell {i}: {node.name} is {size} lines; put it in labkit"


def test_ends_with_summary_then_exercises(notebook):
    path, nb = notebook
    headings = [(i, line) for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                for line in c.source.splitlines() if line.startswith("## ")]
    titles = [line for _, line in headings]
    assert "## Summary" in titles and "## Exercises" in titles, f"{path.name}: needs '## Summary' and '## Exercises'"
    assert titles[-2:] == ["## Summary", "## Exercises"], f"{path.name}: Summary then Exercises must come last"


def test_self_checked_exercises_have_solutions(notebook):
    path, nb = notebook
    if not any(CHECK_CALL.search(c.source) for c in _code(nb)):
        return
    solution = NOTEBOOKS_DIR / "solutions" / f"{path.stem}.py"
    assert solution.is_file(), f"{path.name} has self-checked exercises: write {solution.relative_to(NOTEBOOKS_DIR)}"
    compile(solution.read_text(encoding="utf-8"), str(solution), "exec")
    exercises_at = max(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Exercises" in c.source)
    assert f"solutions/{path.stem}.py" in nb.cells[exercises_at].source, f"{path.name}: say where the solutions are"


def test_readme_states_the_conventions_tested_here():
    readme = (NOTEBOOKS_DIR / "README.md").read_text(encoding="utf-8")
    for phrase in ("parameters", "LABKIT_QUICK", "check.quick", "## Summary", "## Exercises", "MPLBACKEND=Agg",
                   "solutions/"):
        assert phrase in readme, f"notebooks/README.md should explain {phrase!r}"


def test_every_lab_a_notebook_starts_is_closed_in_a_later_cell(notebook):
    path, nb = notebook
    cells = [c.source for c in _code(nb)]
    for i, source in enumerate(cells):
        for name in re.findall(r"^(\w+) = labkit\.Lab\(", source, re.M):
            later = "\n".join(cells[i + 1:])
            assert f"{name}.close()" in later, (f"{path.name}: '{name} = labkit.Lab(...)' is never closed; "
                                                f"end with {name}.close()")
