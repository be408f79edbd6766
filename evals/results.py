"""The shared results file, ``evals/RESULTS.md``: one Markdown section per benchmark or
eval, each between its own start and end markers, so every runner rewrites its section
and keeps the others.
"""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
RESULTS_HEADING = "# Benchmark and eval results"


def write_section(path: Path, section: str, start: str, end: str) -> None:
    """Replace the text from ``start`` to ``end`` in ``path`` with ``section`` (which holds
    both markers), or append it when missing; the file is created when needed."""
    text = path.read_text() if path.exists() else f"{RESULTS_HEADING}\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    if not text.endswith("\n"):
        text += "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
