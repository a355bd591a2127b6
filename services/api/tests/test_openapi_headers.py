"""The answers that carry headers a client acts on declare them in the OpenAPI document."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard_api.app import create_app
from dockyard_api.settings import ApiSettings

ALIAS = "/v1/projects/{owner}/{project}/deployments/{deployment}/aliases/{alias}"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(ApiSettings(admin_token="t" * 32)).openapi()


def _headers(document: dict[str, Any], path: str, method: str, status: str) -> set[str]:
    return set(document["paths"][path][method]["responses"][status].get("headers", {}))


@pytest.mark.parametrize(("path", "method"), [(ALIAS, "put"), (f"{ALIAS}/rollback", "post")])
def test_a_switch_declares_how_it_went_live(
    document: dict[str, Any], path: str, method: str
) -> None:
    live = {"ETag", "X-Dockyard-Switch-Ms", "X-Dockyard-Routers"}
    assert _headers(document, path, method, "200") == live
    assert _headers(document, path, method, "202") == live | {"X-Dockyard-Lagging"}


def test_a_new_subscription_declares_the_dispatchers_it_waited_for(
    document: dict[str, Any],
) -> None:
    headers = _headers(document, "/v1/projects/{owner}/{project}/webhooks", "post", "201")
    assert headers == {"X-Dockyard-Dispatchers", "X-Dockyard-Lagging"}
