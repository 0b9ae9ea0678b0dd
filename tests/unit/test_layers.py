"""The layer rule (tests/layers.py) holds for the package, and the check catches violations."""

from __future__ import annotations

import pytest

from layers import EXCEPTIONS, package_sources, violations


def test_the_package_keeps_its_layers() -> None:
    sources = package_sources()
    assert "mcpexec.store.sqlite" in sources  # the walk found the tree
    assert violations(sources) == []


def test_every_exception_is_still_used() -> None:
    sources = package_sources()
    for importer, imported in EXCEPTIONS:
        source, _ = sources[importer]
        assert imported.rpartition(".")[2] in source, (importer, imported)


def _tree(**extra: str) -> dict[str, tuple[str, bool]]:
    """A synthetic package: the real layers' module names with one-line bodies."""
    modules = {
        "mcpexec": "",
        "mcpexec.models": "",
        "mcpexec.errors": "from mcpexec.models import X",
        "mcpexec.settings": "",
        "mcpexec.views": "from mcpexec.models import Run",
        "mcpexec.store": "",
        "mcpexec.store.base": "from mcpexec.models import Run",
        "mcpexec.store.sqlite": "from .base import Store\nfrom mcpexec.settings import Settings",
        "mcpexec.executor": "",
        "mcpexec.executor.base": "",
        "mcpexec.executor.probe": "",
        "mcpexec.app": "from mcpexec.store.base import Store\nfrom mcpexec.executor import base",
        "mcpexec.bootstrap": "from mcpexec.store.sqlite import SqliteStore",
        "mcpexec.serving": "from mcpexec.bootstrap import build_app",
        "mcpexec.api": "",
        "mcpexec.api.routes": "from mcpexec.app import App\nfrom mcpexec.views import run_view",
        "mcpexec.mcp_server": "",
        "mcpexec.mcp_server.tools": "from mcpexec.app import App",
        "mcpexec.cli": "def doctor():\n    from mcpexec.executor.probe import doctor_report\n"
        "    from mcpexec.serving import run_server",
    }
    modules.update(extra)
    packages = {"mcpexec", "mcpexec.store", "mcpexec.executor", "mcpexec.api", "mcpexec.mcp_server"}
    return {name: (body, name in packages) for name, body in modules.items()}


def test_a_clean_synthetic_tree_passes() -> None:
    assert violations(_tree()) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        # adapters never reach a plug-in (here inside a function: every import counts)
        (
            "mcpexec.api.routes",
            "def f():\n    from mcpexec.store.base import Stats",
            "mcpexec.api.routes (adapter) imports mcpexec.store.base (plugin)",
        ),
        (
            "mcpexec.mcp_server.tools",
            "import mcpexec.executor.base",
            "mcpexec.mcp_server.tools (adapter) imports mcpexec.executor.base (plugin)",
        ),
        # one adapter never imports another
        (
            "mcpexec.mcp_server.tools",
            "from mcpexec.api import routes",
            "mcpexec.mcp_server.tools (adapter) imports mcpexec.api.routes (adapter)",
        ),
        # plug-ins never import each other, the domain or an adapter
        (
            "mcpexec.store.sqlite",
            "from mcpexec.executor.base import ExecResult",
            "mcpexec.store.sqlite (plugin) imports mcpexec.executor.base (plugin)",
        ),
        (
            "mcpexec.executor.base",
            "from mcpexec import app",
            "mcpexec.executor.base (plugin) imports mcpexec.app (domain)",
        ),
        # models/errors import nothing of ours but each other
        (
            "mcpexec.models",
            "from mcpexec.settings import Settings",
            "mcpexec.models (pure) imports mcpexec.settings (config)",
        ),
        # the doctor exception is by name: another adapter may not probe
        (
            "mcpexec.api.routes",
            "from mcpexec.executor.probe import doctor_report",
            "mcpexec.api.routes (adapter) imports mcpexec.executor.probe (plugin)",
        ),
        # the domain never imports an adapter or an entry point
        (
            "mcpexec.app",
            "from mcpexec.bootstrap import build_app",
            "mcpexec.app (domain) imports mcpexec.bootstrap (entry)",
        ),
        # a relative import is resolved before it is judged
        (
            "mcpexec.store.base",
            "from ..executor import base",
            "mcpexec.store.base (plugin) imports mcpexec.executor.base (plugin)",
        ),
    ],
)
def test_a_violation_is_reported(module: str, source: str, expected: str) -> None:
    tree = _tree()
    tree[module] = (source, tree[module][1])
    assert violations(tree) == [expected]


def test_a_module_in_no_layer_is_reported() -> None:
    tree = _tree(**{"mcpexec.billing": ""})
    assert violations(tree) == ["mcpexec.billing: in no layer (place it in tests/layers.py)"]
