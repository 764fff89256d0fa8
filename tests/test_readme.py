"""The README must stay true: its results tables are copies of what the committed notebooks show."""

import nbformat
import pytest

from cookbook.config import NOTEBOOKS
from cookbook.results import readme_blocks


def _outputs_text(nb_path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            for key in ("text/markdown", "text/plain"):
                parts.append(out.get("data", {}).get(key, ""))
    return "\n".join(p if isinstance(p, str) else "".join(p) for p in parts)


blocks = readme_blocks()


@pytest.mark.parametrize("notebook, body", blocks, ids=[b[0] for b in blocks])
def test_readme_results_match_committed_notebook(notebook, body):
    rows = [line for line in body.splitlines() if line.startswith("| ") and "---" not in line]
    if not rows:
        pytest.skip(f"README has no results table for {notebook} yet")
    shown = _outputs_text(NOTEBOOKS / f"{notebook}.ipynb")
    for row in rows[1:]:                              # skip the header row
        assert row in shown, f"README row not in the committed {notebook} outputs: {row}"
