"""Architecture rules that code review would otherwise have to remember."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_TRANSFORMS = {
    "duckdb",
    "prefect",
    "great_expectations",
    "requests",
    "httpx",
    "urllib",
    "socket",
    "shutil",
    "subprocess",
    "pathlib",
    "os",
    "fsspec",
    "expectations",
    "warehouse",
    "flows",
}
FORBIDDEN_CALLS = {"open", "read_bytes", "read_text", "write_bytes", "write_text", "read_csv_batched"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_transforms_do_no_io() -> None:
    offenders = []
    for path in sorted((ROOT / "transforms").rglob("*.py")):
        bad = _imports(path) & FORBIDDEN_IN_TRANSFORMS
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in FORBIDDEN_CALLS:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {name}()")
                owner = getattr(getattr(node.func, "value", None), "id", "")
                if name.startswith(("read_", "scan_", "sink_")) and owner in {"pl", "polars", "pq", "pa"}:
                    # polars readers/writers are allowed only on in-memory buffers, which the code marks
                    src = ast.get_source_segment(path.read_text(encoding="utf-8"), node) or ""
                    if not any(tok in src for tok in ("BytesIO", "StringIO")):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {src[:60]}")
    assert not offenders, "transforms/ must stay pure:\n" + "\n".join(offenders)


def test_imports_point_one_way() -> None:
    """warehouse and expectations never import flows; transforms import none of the others."""
    offenders = []
    for pkg in ("warehouse", "expectations"):
        for path in (ROOT / pkg).rglob("*.py"):
            if "flows" in _imports(path):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders


def test_great_expectations_is_imported_lazily() -> None:
    """GX takes seconds to import: only the function that validates may import it."""
    for path in list(ROOT.glob("flows/*.py")) + list(ROOT.glob("expectations/*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                assert not (mod or "").startswith("great_expectations"), f"{path} imports GX at module level"


def test_the_cli_does_not_import_prefect_before_configuring_it() -> None:
    """Prefect reads its settings (home, telemetry, timeouts) at import: the CLI module and what it imports at
    module level must not import it."""
    import subprocess
    import sys

    code = "import sys, flows.cli, flows.landing; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
