"""The house (DESIGN.md): imports go one way, no circles, and the README's package map is the tree."""

import ast
import re
import subprocess
import sys

import pytest

from cookbook.config import ROOT

PKG = ROOT / "cookbook"

# Lowest first. A module may import its own layer or a lower one, never a higher one.
LAYERS = [
    {"cookbook", "_compat", "config", "utils", "argtypes", "assets", "checks"},
    {"data"},
    {"models"},
    {"losses"},
    {"metrics", "kernels"},
    {"train"},
    {"teachers"},
    {"methods"},
    {"results", "plotting"},
    {"exercises", "bench", "recipes", "cli"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _module(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cookbook"


def _graph() -> dict[str, set[str]]:
    """module -> cookbook modules it imports anywhere in its body (function-level imports too)."""
    modules = {_module(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cookbook"):
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("cookbook")]
            deps |= {t for t in targets if t in modules}
        graph[name] = deps - {name}
    return graph


def test_every_top_level_module_has_a_layer():
    tops = {_top(m) for m in _graph()} - {"__main__"}
    assert tops <= set(RANK), f"add {sorted(tops - set(RANK))} to LAYERS (and to the README's package map)"


def test_no_module_imports_a_higher_layer():
    bad = [f"{m} -> {d}" for m, deps in _graph().items() for d in deps
           if _top(m) != "__main__" and RANK[_top(d)] > RANK[_top(m)]]
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_circles():
    graph = _graph()
    # a package's __init__ importing its own submodules is how packages work, not a circle
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in edges.get(node, ()):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in edges:
        if node not in state:
            visit(node, [node])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_llm_teacher_import_does_not_load_the_image_teachers():
    code = ("import sys, cookbook.teachers.llm; "
            "loaded = [m for m in ('cookbook.teachers.recipes', 'cookbook.data.images', 'cookbook.models.vision') "
            "if m in sys.modules]; print(loaded); assert not loaded")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def _readme_map() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"## Package layout\n.*?```\n(.*?)```", text, re.S)
    assert match, "README.md needs a '## Package layout' section with the tree in a code block"
    return match.group(1)


def _sections() -> dict[str, str]:
    """Folder ("" for the top level) -> the text of its lines in the README's map."""
    out, folder = {"": ""}, ""
    for line in _readme_map().splitlines()[1:]:
        indent = len(line) - len(line.lstrip())
        name = line.split()[0] if line.strip() else ""
        if indent == 2:
            folder = name.rstrip("/") if name.endswith("/") else ""
            out.setdefault(folder, "")
            if folder:
                continue
        out[folder] += line + "\n"
    return out


MODULES = sorted(str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                 if p.name not in ("__init__.py", "__main__.py", "_common.py"))


@pytest.mark.parametrize("path", MODULES)
def test_readme_package_map_lists_every_module(path):
    folder, _, name = path.rpartition("/")
    assert re.search(rf"(^|\s){re.escape(name)}\b", _sections().get(folder, ""), re.M), \
        f"cookbook/{path} is missing from the README's package layout (under {folder or 'the top level'})"


def test_readme_package_map_lists_only_real_files():
    for folder, text in _sections().items():
        for name in re.findall(r"\b([a-z_0-9]+\.py)\b", text):
            assert (PKG / folder / name).exists(), f"README lists cookbook/{folder}/{name}, which does not exist"
