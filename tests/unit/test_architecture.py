"""Import contracts: the package boundaries that keep serving small and torch-free.

Every ``import`` statement of the package is read from source (including imports inside
functions), so a lazy import cannot slip past; the serving path is also imported in a
fresh interpreter to prove that neither torch nor the training stack comes along.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "streamae"

# package -> sub-packages of streamae it may import (itself always allowed)
ALLOWED = {
    "core": set(),
    "serving": {"core"},
    "training": {"core", "evaluation"},  # evaluation: plots of the training curve
    "evaluation": {"core"},
    "demo": {"core", "serving", "training", "evaluation"},
    "cli": {"core", "serving", "training", "evaluation", "demo"},
}
# third-party modules a package must never import
FORBIDDEN = {
    "core": {"torch", "kafka", "confluent_kafka", "matplotlib", "sklearn"},
    "serving": {"torch", "matplotlib", "sklearn", "pandas"},
    "evaluation": {"torch", "kafka", "confluent_kafka"},
}
# serving's sub-packages: what each may not import. Only ``clients`` speaks to a Kafka client
# library; the commit machinery and the health code see the ``Transport`` interface alone, and
# none of them reaches back into the loop that wires them.
SERVING_SUBPACKAGES = {
    "clients": {"streamae.serving.loop", "streamae.serving.assembly"},
    "commit": {"streamae.serving.clients", "streamae.serving.loop", "streamae.serving.assembly"},
    "health": {"streamae.serving.clients", "streamae.serving.loop", "streamae.serving.assembly"},
}
# serving's top level is the data path; only the builder may pick a client
TOP_LEVEL_CLIENT_USERS = {"assembly.py"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _modules() -> list[tuple[str, Path]]:
    return [
        (path.relative_to(PACKAGE).parts[0], path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if len(path.relative_to(PACKAGE).parts) > 1
    ]


def test_every_module_lives_in_a_known_package():
    assert {pkg for pkg, _ in _modules()} <= set(ALLOWED)
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert top == {"__init__.py", "__main__.py"}, f"modules outside a sub-package: {top}"


@pytest.mark.parametrize(("package", "path"), _modules(), ids=lambda v: str(v).split("streamae/")[-1])
def test_module_respects_its_package_boundary(package: str, path: Path):
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] == "streamae" and len(parts) > 1 and parts[1] in ALLOWED:
            assert parts[1] == package or parts[1] in ALLOWED[package], f"{path.name} imports {name}"
        assert parts[0] not in FORBIDDEN.get(package, set()), f"{path.name} imports {name}"
        if package == "serving":
            _check_serving_boundary(path, name)


def _check_serving_boundary(path: Path, name: str) -> None:
    inner = path.relative_to(PACKAGE / "serving").parts
    sub = inner[0] if len(inner) > 1 else None
    assert sub is None or sub in SERVING_SUBPACKAGES, f"serving/{sub} is not a known sub-package"
    if name.split(".")[0] in ("kafka", "confluent_kafka"):
        assert sub == "clients", f"{path.name} imports {name}: only serving/clients may"
    for banned in SERVING_SUBPACKAGES.get(sub, set()) if sub else set():
        assert not (name == banned or name.startswith(banned + ".")), (
            f"serving/{sub}/{path.name} imports {name}"
        )
    if sub is None and path.name not in TOP_LEVEL_CLIENT_USERS:
        assert not name.startswith("streamae.serving.clients"), (
            f"{path.name} imports {name}: the data path sees only the Transport interface"
        )


def test_serving_path_imports_no_training_stack():
    code = (
        "import sys, streamae.cli.serve, streamae.serving.loop, streamae.serving.clients.kafka_python; "
        "bad = [m for m in ('torch', 'streamae.training', 'streamae.evaluation', 'sklearn') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _module_graph() -> dict[str, set[str]]:
    """streamae module -> the streamae modules it imports (anywhere in its source)."""
    names = {
        ".".join(("streamae", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = {f"{node.module}.{a.name}" for a in node.names} & names.keys()
                edges.update(subs or ({node.module} & names.keys()))
        edges.discard(name)
    return graph


def test_no_module_imports_one_that_imports_it_back():
    """No import cycle, lazy imports included: a cycle hidden in a function import (``fit`` ↔
    ``selection`` was one) means two modules are one concept cut in the wrong place."""
    graph = _module_graph()
    assert "streamae.training.pipeline" in graph["streamae.training.selection"]  # the graph is read
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name) :], name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for nxt in sorted(graph.get(name, ())):
            visit(nxt, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


# the modules a record passes through, Kafka in to commit (README "Data path")
DATA_PATH = {
    "serving": [
        "transport.py",
        "clients/kafka_python.py",
        "clients/confluent.py",
        "decode.py",
        "dead_letters.py",
        "microbatch.py",
        "partition.py",
        "outputs.py",
        "publisher.py",
        "commit/committer.py",
        "commit/exactly_once.py",
        "commit/checkpoint.py",
        "commit/state_store.py",
        "loop.py",
    ],
    "core": [
        "windows.py",
        "scoring.py",
        "window_score.py",
        "smoothing.py",
        "postprocess.py",
        "adapt.py",
        "alerts.py",
    ],
}


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md"])
def test_the_docs_name_every_module_of_the_data_path(doc):
    text = (PACKAGE.parent / doc).read_text()
    for package, names in DATA_PATH.items():
        for name in names:
            assert (PACKAGE / package / name).is_file(), (
                f"{package}/{name} is gone: update DATA_PATH and {doc}"
            )
            base = name.rsplit("/", 1)[-1]
            assert f"`{base}`" in text or f"/{base}`" in text, f"{doc} does not name {package}/{name}"


# about 300 lines a module and 60 a function: a longer one holds more than one idea
MAX_MODULE_LINES = 340
MAX_FUNCTION_LINES = 60


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path: Path):
    source = path.read_text()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{path.name}: {source.count(chr(10))} lines"
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            assert lines <= MAX_FUNCTION_LINES, f"{path.name}:{node.lineno} {node.name} is {lines} lines"
