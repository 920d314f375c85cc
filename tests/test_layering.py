"""The package layering of DESIGN.md 2b: imports point down, never back up.

Every import in app/ counts, including imports inside functions; only imports under
``if TYPE_CHECKING:`` (annotations, never executed) are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"

# app.ml (the feature schema, data, pipeline) is the floor: it imports nothing of the app, so the
# settings may check feature names against it.
LEAVES = {"app.config", "app.errors", "app.metrics", "app.logs", "app.ml", "app.cpu", "app.memory",
          "app.import_order"}
BASE = {"app.db"}
STORES = {"app.prediction_log", "app.registry"}
# What the HTTP app and the composition root put together.
DOMAIN = {"app.serving", "app.explanations", "app.oversight", "app.lifecycle", "app.monitoring",
          "app.training"}
# What each package may import besides itself. Siblings in one tier are allowed one way only,
# as listed: lifecycle and monitoring use the serving slot, training moves through lifecycle.
ALLOWED: dict[str, set[str]] = {
    "app.ml": set(),
    "app.config": {"app.ml"},
    "app.errors": set(),
    "app.cpu": set(),
    "app.memory": set(),
    "app.import_order": set(),
    "app.logs": {"app.config"},
    "app.metrics": {"app.config"},
    "app.db": LEAVES,
    "app.prediction_log": LEAVES | BASE,
    "app.registry": LEAVES | BASE,
    "app.serving": LEAVES | BASE | STORES,
    "app.lifecycle": LEAVES | BASE | STORES | {"app.serving"},
    "app.monitoring": LEAVES | BASE | STORES | {"app.serving", "app.explanations"},
    "app.training": LEAVES | BASE | STORES | {"app.lifecycle", "app.serving"},
    # Explanations load the version that made a prediction through the registry and the slot.
    "app.explanations": LEAVES | BASE | STORES | {"app.serving"},
    # Human oversight (reviews, the queue, the decision record) shows the explanations too.
    "app.oversight": LEAVES | BASE | STORES | {"app.serving", "app.explanations"},
    # Batch scoring loads versions through the serving slot and scores with its LoadedModel.
    "app.batch_scoring": LEAVES | BASE | STORES | {"app.serving"},
    "app.api": LEAVES | BASE | STORES | DOMAIN,
    "app.container": LEAVES | BASE | STORES | DOMAIN,
    "app.main": LEAVES | BASE | STORES | DOMAIN | {"app.api", "app.container"},
    # The two entry points: the HTTP app factory, and the command line (which also renders the
    # app's OpenAPI document for docs/api.md).
    "app.cli": LEAVES | BASE | STORES
    | DOMAIN | {"app.batch_scoring", "app.api", "app.container", "app.main"},
}


def unit(module: str) -> str:
    """The layer a module belongs to: its package under app, or the top-level module itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def module_name(path: Path) -> str:
    rel = path.relative_to(APP.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_block(node):
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        stack.extend(ast.iter_child_nodes(node))
    return found


def violations() -> list[str]:
    bad = []
    for path in sorted(APP.rglob("*.py")):
        source = module_name(path)
        layer = unit(source)
        if layer == "app":
            continue
        allowed = ALLOWED.get(layer)
        assert allowed is not None, f"{layer} has no place in the layering; add it to ALLOWED"
        for line, target in imports(ast.parse(path.read_text(), str(path))):
            if not target.startswith("app."):
                continue  # a library, or ``import app`` for the package's location
            target_layer = unit(target)
            if target_layer != layer and target_layer not in allowed:
                bad.append(f"{path.relative_to(APP.parent)}:{line}: {layer} imports {target}")
    return bad


def test_imports_only_point_down() -> None:
    bad = violations()
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_check_sees_an_upward_import() -> None:
    tree = ast.parse("def f():\n    from app.api.deps import PredictionsDep\n")
    assert imports(tree) == [(2, "app.api.deps")]
    assert "app.api" not in ALLOWED["app.serving"]
    typed = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.main import x\n")
    assert [t for _, t in imports(typed)] == ["typing"]
