"""The guided tour (docs/) stays true: every `rnnlab train TASK ... --set key=value` it shows
names a real task, real presets and config keys that parse, and every page is linked."""

import shlex
from pathlib import Path

import pytest

from rnnlab.config import apply_overrides
from rnnlab.tasks import TASKS

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(DOCS.glob("10.*.md"))


def commands():
    for page in PAGES:
        for line in page.read_text(encoding="utf-8").splitlines():
            line = line.strip().split("#")[0].strip().rstrip("\\").strip()
            if line.startswith("rnnlab train ") and "$" not in line:
                yield page.name, line


def test_one_page_per_section_all_linked():
    assert [p.name.split("-")[0] for p in PAGES] == sorted(
        [f"10.{k}" for k in range(1, 13)])
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for page in PAGES:
        assert f"({page.name})" in index, page.name


@pytest.mark.parametrize("page, line", list(commands()))
def test_train_commands_are_valid(page, line):
    words = shlex.split(line)
    task = words[2] if not words[2].startswith("-") else None
    assert task in TASKS, (page, line)
    cls = TASKS[task]
    overrides = []
    if "--config" in words:
        preset = words[words.index("--config") + 1]
        assert preset in cls.presets, (page, preset)
        overrides += cls.presets[preset]
    if "--set" in words:
        for word in words[words.index("--set") + 1:]:
            if word.startswith("--"):
                break
            overrides.append(word)
    apply_overrides(cls.default_config(), overrides)      # raises on a bad key or value
