"""Code shown in the README is code that runs."""

from __future__ import annotations

import re
import runpy
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_is_the_tested_file():
    source = (ROOT / "docs" / "examples" / "quickstart.py").read_text()
    body = source.split("# README-EXAMPLE-START\n")[1].split("    # README-EXAMPLE-END")[0]
    readme = (ROOT / "README.md").read_text()
    shown = re.search(r"<!-- README-EXAMPLE:.*?```python\n(.*?)```", readme, re.S).group(1)
    assert textwrap.dedent(body) == shown


@pytest.mark.integration
async def test_readme_example_runs():
    module = runpy.run_path(str(ROOT / "docs" / "examples" / "quickstart.py"))
    assert await module["main"]() == b"21.5"


def test_docs_scenarios_lists_every_registered_scenario():
    from labkit.scenarios.registry import names

    doc = (ROOT / "docs" / "scenarios.md").read_text()
    listed = re.findall(r"^\| `([a-z-]+)` \|", doc, re.M)
    assert sorted(listed) == names()


def test_notebooks_readme_lists_every_notebook():
    readme = (ROOT / "notebooks" / "README.md").read_text()
    listed = re.findall(r"^\| `(\d\d_[a-z_]+\.ipynb)` \|", readme, re.M)
    assert listed == sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
