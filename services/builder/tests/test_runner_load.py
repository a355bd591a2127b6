"""How the runner finds a ``wsgi:`` endpoint's app: a callable, or an app factory."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from dockyard_builder.runner import RUNNER_FILES

FACTORY_APP = """\
made = []


def application(environ, start_response):
    return [b"plain"]


def create_app():
    made.append(1)

    def app(environ, start_response):
        return [b"from the factory"]

    return app
"""


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[ModuleType]:
    (tmp_path / "factory_app.py").write_text(FACTORY_APP)
    sys.path[:0] = [str(RUNNER_FILES), str(tmp_path)]
    try:
        yield importlib.import_module("dockyard_runner")
    finally:
        sys.path.remove(str(RUNNER_FILES))
        sys.path.remove(str(tmp_path))
        sys.modules.pop("factory_app", None)


def test_an_app_factory_is_called_once_for_its_app(runner: ModuleType) -> None:
    app = runner.load("factory_app:create_app()")
    assert app({}, None) == [b"from the factory"]
    assert importlib.import_module("factory_app").made == [1]


def test_a_module_alone_means_its_application(runner: ModuleType) -> None:
    assert runner.load("factory_app")({}, None) == [b"plain"]
