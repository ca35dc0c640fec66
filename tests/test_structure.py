"""The code's shape, checked by reading it: the web layer and the CLI talk to `vidchat.session` only, no file
holds more than its share of the package, and the page's script and style are files of their own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vidchat"
STAGES = {"vidchat.vlm", "vidchat.segment", "vidchat.selector", "vidchat.grounding", "vidchat.video", "vidchat.zoom"}


def imported_modules(path: Path, root: Path = PACKAGE.parent) -> set[str]:
    """Every module `path` (a file under `root`) imports, absolute names (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from vidchat import vlm`
    return names


UI_FILES = sorted((PACKAGE / "ui").rglob("*.py"))


def test_there_is_a_ui_package_to_check():
    assert {p.name for p in UI_FILES} >= {"__init__.py", "app.py", "layout.py", "views.py", "models.py"}


@pytest.mark.parametrize("path", [*UI_FILES, PACKAGE / "__main__.py"], ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_ui_and_the_cli_import_no_pipeline_stage(path: Path):
    assert imported_modules(path) & STAGES == set()


def test_the_check_sees_every_way_of_importing_a_stage(tmp_path):
    probe = tmp_path / "vidchat" / "ui" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("import vidchat.vlm\nfrom vidchat import segment\nfrom ..selector import select\n")
    found = imported_modules(probe, root=tmp_path) & STAGES
    assert found == {"vidchat.vlm", "vidchat.segment", "vidchat.selector"}


def test_no_file_holds_more_than_15_percent_of_the_package():
    lines = {path: len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    total = sum(lines.values())
    biggest = max(lines, key=lines.get)
    assert lines[biggest] <= 0.15 * total, f"{biggest.relative_to(PACKAGE)}: {lines[biggest]} of {total} lines"


def test_the_page_script_and_style_are_files_not_python_strings():
    static = PACKAGE / "ui" / "static"
    scripts = ("core.js", "overlay.js", "timeline.js", "page.js", "upload.js", "transcript.js")
    assert all((static / name).read_text().lstrip().startswith("//") for name in scripts)
    assert ".vc-tl-track" in (static / "vidchat.css").read_text()
    for path in UI_FILES:
        source = path.read_text()
        assert "@keyframes" not in source and "addEventListener" not in source, path
