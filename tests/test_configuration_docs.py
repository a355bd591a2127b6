"""docs/configuration.md lists every setting of every service, with the code's default.

Each settings class has a section in the page, named by the class's dotted path in its
heading; each field the class declares itself (not inherited) must have a table row there
naming its environment variable and, in the default column, its default as written below.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from dockyard_api.settings import ApiSettings
from dockyard_api.webhooks.settings import WebhookSettings
from dockyard_builder.settings import BuilderSettings
from dockyard_common import CommonSettings
from dockyard_platform.embedded import EmbeddedSettings
from dockyard_router.settings import RouterSettings
from dockyard_scheduler.settings import SchedulerSettings

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

SETTINGS: list[tuple[str, type[BaseSettings]]] = [
    ("dockyard_common.CommonSettings", CommonSettings),
    ("dockyard_api.settings.ApiSettings", ApiSettings),
    ("dockyard_api.webhooks.settings.WebhookSettings", WebhookSettings),
    ("dockyard_builder.settings.BuilderSettings", BuilderSettings),
    ("dockyard_scheduler.settings.SchedulerSettings", SchedulerSettings),
    ("dockyard_router.settings.RouterSettings", RouterSettings),
    ("dockyard_platform.embedded.EmbeddedSettings", EmbeddedSettings),
]

# Read by the CLI from the environment directly (a login, not a service's settings).
CLI_VARIABLES = {
    "DOCKYARD_CONFIG",
    "DOCKYARD_URL",
    "DOCKYARD_TOKEN",
    "DOCKYARD_ROUTER_URL",
    "DOCKYARD_PROJECT",
    "DOCKYARD_DEPLOYMENT",
    "DOCKYARD_WSGI_THREADS",  # written by the builder into an endpoint's image
    "DOCKYARD_VALOHAI_METADATA",  # set by the drivers, written to valohai-metadata.json
}


def sections() -> dict[str, str]:
    """The page's ``##`` sections by heading."""
    parts = re.split(r"^## ", PAGE.read_text(), flags=re.MULTILINE)
    return {part.splitlines()[0]: part for part in parts[1:]}


def section_of(path: str) -> str:
    found = [text for heading, text in sections().items() if f"`{path}`" in heading]
    assert len(found) == 1, f"docs/configuration.md has no section headed with `{path}`"
    return found[0]


def own_fields(settings: type[BaseSettings]) -> dict[str, FieldInfo]:
    """The fields a class declares in its own body (inherited ones have their own section)."""
    declared = inspect.get_annotations(settings)
    return {name: info for name, info in settings.model_fields.items() if name in declared}


def variables(name: str, info: FieldInfo) -> list[str]:
    """The environment variables a field reads, the first being its own."""
    if isinstance(info.validation_alias, AliasChoices):
        return [str(choice) for choice in info.validation_alias.choices]
    return [f"DOCKYARD_{name.upper()}"]


def documented_default(info: FieldInfo) -> str:
    """The default as the page writes it: `value` for scalars, JSON for lists and maps."""
    if info.default is PydanticUndefined and info.default_factory is None:
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if isinstance(value, list | tuple | dict):
        return f"`{json.dumps(value)}`".replace(".0,", ",").replace(".0]", "]")
    return f"`{value}`"


def rows(section: str) -> dict[str, list[str]]:
    """Table rows of a section by the first variable named in their first cell."""
    found = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        named = re.findall(r"`(DOCKYARD_[A-Z0-9_]+)`", cells[0]) if line.startswith("|") else []
        if named:
            found[named[0]] = cells
    return found


@pytest.mark.parametrize(("path", "settings"), SETTINGS, ids=[p for p, _ in SETTINGS])
def test_every_setting_has_a_row_with_the_codes_default(
    path: str, settings: type[BaseSettings]
) -> None:
    table = rows(section_of(path))
    missing, wrong = [], []
    for name, info in own_fields(settings).items():
        variable = variables(name, info)[0]
        if variable not in table:
            missing.append(variable)
        elif documented_default(info) not in table[variable][1]:
            wrong.append(f"{variable}: page says {table[variable][1]!r}, code {info.default!r}")
    assert not missing, f"{path}: not in docs/configuration.md: {missing}"
    assert not wrong, f"{path}: defaults differ: {wrong}"


def test_the_page_names_no_setting_the_code_lacks() -> None:
    known = set(CLI_VARIABLES)
    for _, settings in SETTINGS:
        for name, info in settings.model_fields.items():
            known.update(variables(name, info))
    named = set(re.findall(r"`(DOCKYARD_[A-Z0-9_]+)`", PAGE.read_text()))
    assert named - known == set(), "docs/configuration.md names settings no code reads"


def test_the_check_catches_a_missing_row() -> None:
    # A new field with no row must fail the check above, not pass unseen.
    class Extended(RouterSettings):
        router_new_knob: int = 3

    assert "DOCKYARD_ROUTER_NEW_KNOB" not in rows(
        section_of("dockyard_router.settings.RouterSettings")
    )
    assert list(own_fields(Extended)) == ["router_new_knob"]
