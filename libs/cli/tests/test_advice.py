"""What the CLI says when the API refuses: commands and flags, never HTTP (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockyard_cli.advice import Where, advise
from dockyard_cli.aliases import switched_text
from dockyard_cli.config import Login
from dockyard_cli.deploying import missing_endpoint_definitions
from dockyard_cli.errors import ApiError

WHERE = Where(login_file="/home/ada/.config/dockyard/login.json", data_dir=".dockyard")
BASE = "https://dockyard.dev/problems/"


def refused(status: int, slug: str, detail: str, **extra: Any) -> ApiError:
    problem = {"type": BASE + slug, "title": "Refused", "status": status, "detail": detail}
    return ApiError(f"{status} Refused: {detail}", status, {**problem, **extra}, LOGIN)


LOGIN = Login.model_validate(
    {
        "url": "http://127.0.0.1:8080",
        "token": "old",
        "router_url": "http://127.0.0.1:8081",
        "project": "acme/demo",
        "deployment": "digits",
        "token_from": "file",
    }
)

API_SPEAK = ("POST /", "PUT /", "force=true", "pass force", "'endpoints'", "valohai_yaml'")


def said(error: ApiError) -> str:
    text = advise(error, WHERE)
    for phrase in API_SPEAK:
        assert phrase not in text, f"the CLI spoke API ({phrase!r}): {text}"
    return text


def test_a_refused_saved_token_says_so_and_how_to_log_in_with_the_current_one() -> None:
    text = said(refused(401, "unauthenticated", "the token is unknown, revoked or expired"))
    assert "refused the token saved by dockyard login" in text
    assert WHERE.login_file in text
    # The line to paste keeps the login's router, project and deployment.
    assert (
        "dockyard login --url http://127.0.0.1:8080 --router-url http://127.0.0.1:8081 "
        '--project acme/demo --deployment digits --token "$(cat .dockyard/admin-token)"'
    ) in text
    assert "DOCKYARD_ADMIN_TOKEN" in text


def test_a_refused_token_from_the_environment_or_an_option_is_named_as_such() -> None:
    from_env = refused(401, "unauthenticated", "the token is unknown, revoked or expired")
    from_env.login = LOGIN.model_copy(update={"token_from": "environment"})
    assert "refused the token in DOCKYARD_TOKEN" in said(from_env)
    assert 'export DOCKYARD_TOKEN="$(cat .dockyard/admin-token)"' in said(from_env)
    given = refused(401, "unauthenticated", "the token is unknown, revoked or expired")
    given.login = LOGIN.model_copy(update={"token_from": "option"})
    assert "refused this token" in said(given)
    elsewhere = Where(login_file="x", data_dir="/srv/dockyard")
    assert "/srv/dockyard/admin-token" in advise(given, elsewhere)


@pytest.mark.parametrize(
    ("detail", "advice"),
    [
        ("owner 'acme' does not exist; POST /v1/owners first", "dockyard owners create acme"),
        ("project acme/demo does not exist; PUT /v1/projects/acme/demo first", "--project"),
        ("deployment acme/demo/web does not exist", "--deployment"),
        ("version acme/demo/web/v9 does not exist", "dockyard versions"),
        ("version 'v9' does not exist", "dockyard versions"),
        ("alias 'staging' does not exist", "dockyard alias list"),
    ],
)
def test_a_missing_thing_names_the_command_that_makes_or_lists_it(detail: str, advice: str) -> None:
    assert advice in said(refused(404, "not-found", detail))


def test_a_stop_refused_for_an_alias_names_the_switch_and_the_flag() -> None:
    error = refused(
        409,
        "version-in-use",
        "alias 'production' points to 'v1': move it first, or pass force=true",
        aliases=["production"],
        version="v1",
    )
    text = said(error)
    assert text.startswith("409 Refused: alias production points to v1")
    assert "dockyard alias set production VERSION" in text
    assert "dockyard stop v1 --force" in text


def test_a_switch_onto_a_stopped_version_offers_the_start() -> None:
    error = refused(
        409,
        "version-stopped",
        "version 'v2' is stopped: ... (POST /v1/projects/acme/demo/deployments/web/versions/"
        "v2/start) ...",
        stopped=["v2"],
    )
    text = said(error)
    assert "dockyard start v2 --wait" in text and "not even with --force" in text


def test_a_start_of_a_version_never_built_says_to_deploy_again() -> None:
    error = refused(
        409,
        "version-not-built",
        "version 'v1' was stopped before its build finished: it has no image to start; "
        "submit the code again as a new version",
    )
    assert said(error).endswith(
        "it has no image to start; deploy the code again as a new version (dockyard deploy)"
    )


def test_a_switch_onto_a_version_not_ready_says_wait_or_force() -> None:
    error = refused(
        409,
        "version-not-ready",
        "version 'v2' is deploying: wait until it is ready, or set force to point at it anyway",
        versions={"v2": "deploying"},
    )
    text = said(error)
    assert "version v2 is deploying" in text and "dockyard status v2" in text
    assert "--force" in text


def test_submission_refusals_name_the_deploy_options() -> None:
    exists = said(refused(409, "version-exists", "version 'v1' already exists"))
    assert "--name" in exists
    no_endpoints = refused(
        422,
        "invalid-input",
        "no endpoint definitions: give 'endpoints' inline or 'valohai_yaml', or put a "
        "valohai.yaml at the root of the code",
    )
    assert "valohai.yaml" in said(no_endpoints)
    fields = refused(
        422,
        "invalid-input",
        "body.name: String should match pattern",
        errors=[{"loc": ["body", "name"], "msg": "String should match pattern", "type": "x"}],
    )
    assert said(fields) == "422 Refused: --name: String should match pattern"


def test_an_unknown_refusal_keeps_its_words_but_names_flags_not_parameters() -> None:
    text = said(refused(409, "something-new", "it cannot be done now; pass force=true"))
    assert text == "409 Refused: it cannot be done now; use --force"


def test_no_answer_asks_whether_the_platform_runs() -> None:
    error = ApiError("cannot reach the API at http://127.0.0.1:8080: refused")
    assert "make run" in advise(error, WHERE)


def test_the_switch_time_counts_from_sending_it() -> None:
    alias = {"name": "production", "target": {"version": "v2"}, "regions": {}}
    headers = {"x-dockyard-routers": "2", "x-dockyard-switch-ms": "0.0"}
    text = switched_text(alias, headers, 0.0042)
    assert text == (
        "production → v2  (answered 4.2 ms after it was sent, once 2 router processes served it)"
    )
    assert "0.0 ms" not in text


def test_deploy_needs_a_valohai_yaml_with_an_endpoint_it_will_upload(tmp_path: Path) -> None:
    assert "no valohai.yaml" in str(missing_endpoint_definitions(tmp_path))
    (tmp_path / "valohai.yaml").write_text("- step:\n    name: train\n")
    assert "defines no endpoint" in str(missing_endpoint_definitions(tmp_path))
    (tmp_path / "valohai.yaml").write_text("- endpoint:\n    name: predict\n    wsgi: a:b\n")
    assert missing_endpoint_definitions(tmp_path) is None
    (tmp_path / ".dockyardignore").write_text("*.yaml\n")
    assert "left out by" in str(missing_endpoint_definitions(tmp_path))
