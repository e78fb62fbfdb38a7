"""What a committed notebook must carry for readers without a kernel (GitHub, the book): the saved
state of every widget it shows, and no frozen progress-bar text."""
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_widget_views_have_saved_state_and_no_progress_text(path):
    nb = json.loads(path.read_text())
    state = nb["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for out in cell["outputs"]:
            view = out.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if view:  # without its saved model, the book and GitHub show an empty box or "VBox(children=..."
                assert view["model_id"] in state, f"{path.name}: a widget output without saved state"
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            assert not re.search(r"\d+%\|.*(it/s|s/it)", text), f"{path.name}: frozen progress bar {text[:80]!r}"
