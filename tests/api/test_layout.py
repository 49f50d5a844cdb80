"""The API is laid out by resource: every route the app serves comes from a resource package's
routes module, and no routes module builds SQL (its resource's queries do)."""

from __future__ import annotations

import ast
import inspect
import sys
from types import ModuleType

import pytest

from fwa_api import routers

# What builds a statement. A routes module may import a type or an error from SQLAlchemy.
SQL_BUILDERS = {"case", "delete", "func", "insert", "select", "text", "update"}


def _route_modules() -> list[ModuleType]:
    names = {
        route.endpoint.__module__
        for router in [*routers.PUBLIC, *routers.PROTECTED]
        for route in router.routes
    }
    return [sys.modules[name] for name in sorted(names)]


@pytest.mark.parametrize("module", _route_modules(), ids=lambda module: module.__name__)
def test_routes_live_in_their_resource_package(module: ModuleType) -> None:
    package, _, name = module.__name__.rpartition(".")
    assert package.startswith("fwa_api.") and package.count(".") == 1
    assert name.endswith("routes")


@pytest.mark.parametrize("module", _route_modules(), ids=lambda module: module.__name__)
def test_a_routes_module_builds_no_sql(module: ModuleType) -> None:
    imported = {
        alias.name
        for node in ast.walk(ast.parse(inspect.getsource(module)))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy")
        for alias in node.names
    }
    assert not imported & SQL_BUILDERS
