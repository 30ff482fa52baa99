"""Imports only run downward: the layers of docs/architecture.md, checked on the source (AST).

Every ``import`` and ``from ... import`` of the project's own packages counts, wherever it is
(module level, inside a function, under ``TYPE_CHECKING``): a lazy import is still a
dependency. A module may import its own unit and any unit of a lower layer; units of the same
layer do not import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Top to bottom. ``app.cli`` is the command line, the top layer; the rest of ``app`` is the
#: Faust app.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("app.cli",),
    ("bench",),
    ("infra",),
    ("app",),
    ("training",),
    ("models",),
    ("features",),
    ("config", "contracts", "simulator"),
)
#: The Feast repo, loaded by ``feast apply``: the feature spec, the settings and the Feast
#: names and environment (app/feast_env.py) only.
FEATURE_REPO_MAY_IMPORT = ("features", "config", "app.feast_env")
#: The only module outside bench/ that may import it: its command-line entry.
BENCH_ENTRY = "app.cli.bench"

PACKAGES = {unit.split(".")[0] for layer in LAYERS for unit in layer} | {"feature_repo"}
RANK = {unit: len(LAYERS) - i for i, layer in enumerate(LAYERS) for unit in layer}


def unit_of(module: str) -> str | None:
    """The layer unit a dotted module name belongs to (None: not the project's).

    >>> unit_of("app.cli.main"), unit_of("app.faust_app"), unit_of("numpy")
    ('app.cli', 'app', None)
    """
    if module == "app.cli" or module.startswith("app.cli."):
        return "app.cli"
    top = module.split(".")[0]
    return top if top in PACKAGES else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every module an ``import`` statement of ``source`` names (``from a import b``: ``a.b``,
    which is ``a``'s unit either way)."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found += [f"{target}.{alias.name}" for alias in node.names]
    return found


def violations(module: str, imports: list[str]) -> list[str]:
    """Why each of ``module``'s project imports breaks the layering (empty: none does)."""
    here = unit_of(module)
    if here is None:
        return []
    out = []
    for target in imports:
        there = unit_of(target)
        if there is None or there == here:
            continue
        if there == "bench" and module != BENCH_ENTRY:
            out.append(f"{module} imports {target}: bench is imported only by {BENCH_ENTRY}")
        elif here == "feature_repo":
            if not any(target == ok or target.startswith(ok + ".")
                       for ok in FEATURE_REPO_MAY_IMPORT):
                out.append(f"{module} imports {target}: the Feast repo may import only "
                           f"{', '.join(FEATURE_REPO_MAY_IMPORT)}")
        elif there == "feature_repo":
            out.append(f"{module} imports {target}: nothing imports the Feast repo")
        elif RANK[there] >= RANK[here]:
            side = "a layer above" if RANK[there] > RANK[here] else "the same layer"
            out.append(f"{module} ({here}) imports {target} ({there}, {side})")
    return list(dict.fromkeys(out))


def project_modules() -> dict[str, Path]:
    found = {}
    for package in sorted(PACKAGES):
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def test_every_package_is_in_a_layer() -> None:
    tops = {p.name for p in ROOT.iterdir()
            if p.is_dir() and (p / "__init__.py").exists() and p.name != "tests"}
    assert tops <= PACKAGES, f"packages in no layer: {sorted(tops - PACKAGES)}"


def test_imports_only_run_downward() -> None:
    modules = project_modules()
    assert len(modules) > 100 and "config.settings" in modules and "app.cli.main" in modules
    problems = []
    for name, path in modules.items():
        imports = imported_modules(path.read_text(), name, path.name == "__init__.py")
        problems += violations(name, imports)
    assert not problems, "imports that run upward or sideways:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "source", "message"),
    [
        ("config.endpoints", "from app.settings import Settings", "a layer above"),
        ("features.spec", "def f():\n    import training.lgbm", "a layer above"),
        ("models.registry", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
         "    from training.onnx_export import ExportedModel", "a layer above"),
        ("training.pipeline", "from app.cli import main", "a layer above"),
        ("app.faust_app", "from infra import endpoints", "a layer above"),
        ("contracts.transactions", "from config.settings import Settings", "the same layer"),
        ("infra.demo", "import bench.harness", "bench is imported only by"),
        ("app.cli.main", "from bench import harness", "bench is imported only by"),
        ("feature_repo.entities", "from app import metrics", "the Feast repo may import"),
        ("app.materialiser", "import feature_repo.entities", "nothing imports the Feast repo"),
        ("app.agents.drift", "from ..cli import main", "a layer above"),  # relative
    ],
)
def test_the_check_catches(module: str, source: str, message: str) -> None:
    found = violations(module, imported_modules(source, module))
    assert found and message in found[0], found


def test_allowed_imports_pass() -> None:
    assert imported_modules("from .. import metrics", "app.agents.drift") == ["app.metrics"]
    assert violations("app.cli.bench", ["bench.harness"]) == []
    assert violations("app.agents.scoring", ["models.registry", "config.settings",
                                             "contracts.rejections", "features.spec"]) == []
    assert violations("training.retrain", ["models.registry", "simulator"]) == []
    assert violations("feature_repo.entities", ["features.spec.DEFAULT_SPEC",
                                                "app.feast_env.join_key"]) == []
