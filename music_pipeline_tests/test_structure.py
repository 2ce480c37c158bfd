"""The shape of the code: no import cycle among the project's modules, function-local imports only
where a heavy library is put off, and the light commands never load TensorFlow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "music_pipeline"
ROOT = PACKAGE.name

# Libraries worth putting off until a function needs them: each costs a noticeable share of a light
# command's start-up (TensorFlow alone seconds), or is optional for most commands.
HEAVY = {
    "tensorflow",
    "keras",
    "onnxruntime",
    "umap",
    "shap",
    "xgboost",
    "faiss",
    "matplotlib",
    "plotly",
    "dagster",
    "pandas",
    "pyarrow",
    "librosa",
    "sklearn",
    "scipy",
    "skimage",
    "numba",
    "starlette",
    "uvicorn",
    "upath",
    "fsspec",
    "pretty_midi",
    "mido",
    "markdown_it",
    "mutagen",
    "soundfile",
}


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


MODULES = _modules()


def _imports(name: str):
    """(imported module names, is function-local) of every import statement in a module; a relative
    import is resolved, and ``from package import name`` names the submodule when there is one."""
    path, is_package = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
        else:
            continue
        local, up = False, node
        while up in parents:
            up = parents[up]
            if isinstance(up, (ast.FunctionDef, ast.AsyncFunctionDef)):
                local = True
                break
        yield targets, local


def _graph() -> dict[str, set[str]]:
    """Module → project modules it imports; importing a.b.c imports a and a.b (their __init__) too."""
    graph = {m: set() for m in MODULES}
    for m in MODULES:
        for targets, _ in _imports(m):
            for t in targets:
                parts = t.split(".")
                for i in range(1, len(parts) + 1):
                    prefix = ".".join(parts[:i])
                    if prefix in MODULES and prefix != m:
                        graph[m].add(prefix)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start, first in graph.items():
        if start in index:
            continue
        work = [(start, iter(sorted(first)))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_among_the_projects_modules():
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_package_init_files_import_nothing_of_the_project():
    """A package's __init__ is its table of contents: importing a module never drags in siblings."""
    offenders = [m for m, (_, is_package) in MODULES.items() if is_package and any(_project(t) for t, _ in _imports(m))]
    assert offenders == []


def _project(targets) -> bool:
    return any(t.split(".")[0] == ROOT for t in targets)


def _heavy_at_top(graph_top: dict[str, set[str]], heavy_top: dict[str, bool]) -> dict[str, bool]:
    """Whether importing each module loads a heavy library (through its top-level imports)."""
    memo: dict[str, bool] = {}

    def visit(m: str, seen: frozenset) -> bool:
        if m in memo:
            return memo[m]
        result = heavy_top[m] or any(visit(n, seen | {m}) for n in graph_top[m] if n not in seen)
        memo[m] = result
        return result

    return {m: visit(m, frozenset()) for m in graph_top}


def test_function_local_imports_only_put_off_heavy_libraries():
    """A function-local import of the project's own module is there to keep a heavy library out of
    a light path; one that imports nothing heavy belongs at the top of the module."""
    graph_top = {m: set() for m in MODULES}
    heavy_top = dict.fromkeys(MODULES, False)
    local_own: list[tuple[str, str]] = []
    for m in MODULES:
        for targets, local in _imports(m):
            own = [t for t in targets if t in MODULES and t != m]
            if len(own) > 1:  # `from package import module`: the module is what is imported
                own = [t for t in own if not any(o.startswith(t + ".") for o in own)]
            if local:
                local_own += [(m, t) for t in own]
                continue
            heavy_top[m] |= any(t.split(".")[0] in HEAVY for t in targets)
            graph_top[m] |= set(own)
    heavy = _heavy_at_top(graph_top, heavy_top)
    needless = sorted({f"{m} imports {t} inside a function" for m, t in local_own if not heavy[t]})
    assert needless == []


def _no_tensorflow(code: str) -> None:
    script = code + "\nassert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_help_does_not_import_tensorflow():
    _no_tensorflow(
        "import sys, contextlib, io\nfrom music_pipeline import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n    cli.main(['--help'])"
    )


@pytest.mark.slow
def test_light_commands_on_library_tracks_do_not_import_tensorflow(styled_library, tmp_path):
    """similar, compare, radio and models on a built library (tables, index, PDI and genre models on
    disk) answer without TensorFlow; embed and classify on a file likewise (classify computes the
    file's learned embedding and tags: musicnn runs on onnxruntime)."""
    from music_pipeline.artifacts import read_parquet
    from music_pipeline.layout import DataLayout

    from .web_library import explorer_library

    library, data = explorer_library(styled_library, tmp_path)
    a, b = read_parquet(DataLayout(data).embeddings_path, columns=["relpath"])["relpath"][:2]
    for argv in (
        ["similar", "--data", str(data), "-n", "3", "--json", a],
        ["compare", "--data", str(data), a, b],
        ["radio", "--data", str(data), "--length", "3", a],
        ["models", "--data", str(data), "--json"],
        ["embed", str(library / a), "--json"],
        ["classify", "--data", str(data), "--json", str(library / a)],
    ):
        _no_tensorflow(
            "import sys, contextlib, io\nfrom music_pipeline import cli\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    rc = cli.main({argv!r})\n"
            f"assert rc == 0, ('exit status', rc, {argv!r})"
        )
