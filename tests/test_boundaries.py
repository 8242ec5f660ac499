"""The reusable Beam building blocks (SQL writes, pacing, sharding, retries) import nothing of
the sink runtime, directly or through another project module, so others can take them alone."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("sinks", "transforms", "pipelines", "examples", "bench", "tests")
REUSABLE = sorted([*(ROOT / "transforms" / "sql").rglob("*.py"),
                   *(ROOT / "transforms" / name for name in (
                       "buffer.py", "group_within_bundle.py", "sharding.py", "retry.py", "dead_letters.py"))])
FORBIDDEN = ("sinks", "transforms.assemble", "transforms.call", "transforms.deliver")


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(module):
    """The project modules ``module`` imports (its ``from x import y`` counted as ``x`` and ``x.y``)."""
    path = ROOT / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    if not path.exists():
        return set()
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PROJECT}


def forbidden(name):
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("path", REUSABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_reusable_block_imports_nothing_of_the_sink_runtime(path):
    start = module_name(path)
    chains = {start: [start]}
    todo = [start]
    while todo:
        module = todo.pop()
        for name in sorted(imports(module)):
            if forbidden(name):
                pytest.fail(f"{path.relative_to(ROOT)} imports {name} through {' -> '.join(chains[module])}")
            if name not in chains:
                chains[name] = chains[module] + [name]
                todo.append(name)


def test_the_rule_catches_an_import(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "transforms").mkdir()
    (tmp_path / "transforms" / "helper.py").write_text("from sinks.errors import DefinitionError\n")
    (tmp_path / "transforms" / "block.py").write_text("from transforms import helper\n")
    with pytest.raises(pytest.fail.Exception, match=r"imports sinks.errors through transforms.block -> "
                                                    r"transforms.helper"):
        test_reusable_block_imports_nothing_of_the_sink_runtime(tmp_path / "transforms" / "block.py")


def test_importing_the_reusable_blocks_loads_no_sink_runtime():
    """Checked in a fresh interpreter: ``transforms/__init__.py`` itself must not pull the runtime in."""
    import subprocess
    import sys

    probe = ("import sys, transforms.sql, transforms.buffer\n"
             "print(sorted(m for m in sys.modules if m == 'sinks' or m.startswith('sinks.')))")
    found = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]", found.stdout
