"""docker-compose.yml is a valid Compose file whose built services run their own packages.

No Docker engine is needed: the file is checked against the Compose Specification's JSON schema
and against the Dockerfiles and packages in this repository.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dockyard_platform.embedded import SERVICES

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
# Compose Specification schema (compose-spec/compose-spec, schema/compose-spec.json, Apache-2.0),
# copied verbatim from the check-jsonschema 0.39.0 wheel (builtin_schemas/vendor/compose-spec.json).
SCHEMA_FILE = REPO / "tests" / "data" / "compose-spec.json"


def load_compose() -> dict[str, Any]:
    """The Compose file as a plain dict (YAML anchors and merge keys resolved)."""
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{COMPOSE_FILE} is not a mapping"
    return document


def specification_errors(document: dict[str, Any]) -> list[str]:
    """Every way `document` breaks the Compose Specification, one line each, in file order."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.path))
    return [f"{error.json_path}: {error.message}" for error in errors]


def built_services() -> dict[str, dict[str, Any]]:
    """The services that Compose builds from this repository, by name."""
    services: dict[str, dict[str, Any]] = load_compose()["services"]
    return {name: service for name, service in services.items() if "build" in service}


def dockerfile_of(service: dict[str, Any]) -> Path:
    """The Dockerfile a service's `build:` names, resolved against its build context."""
    build = service["build"]
    if isinstance(build, str):
        build = {"context": build}
    context = REPO / str(build.get("context", "."))
    return context / str(build.get("dockerfile", "Dockerfile"))


def final_cmd(dockerfile: Path) -> list[str]:
    """The exec-form CMD that the image's last stage runs (the last CMD in the file wins)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    commands = [
        line.strip()[len("CMD") :].strip()
        for line in text.splitlines()
        if line.strip().upper().startswith("CMD ")
    ]
    assert commands, f"{dockerfile} has no CMD"
    try:
        cmd = json.loads(commands[-1])
    except json.JSONDecodeError:
        pytest.fail(f"{dockerfile}: CMD must be in exec (JSON array) form, got {commands[-1]!r}")
    assert isinstance(cmd, list), f"{dockerfile}: CMD is not a JSON array: {cmd!r}"
    return [str(part) for part in cmd]


def test_compose_file_matches_the_compose_specification() -> None:
    errors = specification_errors(load_compose())

    assert not errors, f"{COMPOSE_FILE.name} breaks the Compose Specification:\n" + "\n".join(
        errors
    )


def test_an_unknown_top_level_key_is_reported_by_the_validator() -> None:
    broken = copy.deepcopy(load_compose())
    broken["servicez"] = {"api": {"image": "nowhere"}}
    broken["services"]["api"]["ports"] = "8080:8080"

    errors = specification_errors(broken)

    assert any("servicez" in error for error in errors), errors
    assert any(error.startswith("$.services.api.ports") for error in errors), errors


def test_every_built_service_names_a_dockerfile_that_exists() -> None:
    missing = {
        name: str(dockerfile_of(service).relative_to(REPO))
        for name, service in built_services().items()
        if not dockerfile_of(service).is_file()
    }

    assert built_services(), "no service in docker-compose.yml is built from this repository"
    assert not missing, f"services whose Dockerfile does not exist: {missing}"


def installed_package(dockerfile: Path) -> str:
    """The workspace package a service Dockerfile installs (``uv sync ... --package X``)."""
    found = re.findall(r"--package\s+(dockyard-[a-z]+)", dockerfile.read_text(encoding="utf-8"))
    assert len(found) == 1, f"{dockerfile}: installs {found}, not one workspace package"
    return found[0]


def module_run_by(service: dict[str, Any]) -> str:
    """The module a built service runs: its ``command:`` if set, else the image's CMD."""
    cmd = [str(part) for part in service.get("command") or final_cmd(dockerfile_of(service))]
    assert "-m" in cmd[:-1], f"CMD does not run a module: {cmd}"
    return cmd[cmd.index("-m") + 1]


@pytest.mark.parametrize("name", sorted(built_services()))
def test_built_service_runs_a_module_of_the_package_its_image_installs(name: str) -> None:
    service = built_services()[name]
    package = installed_package(dockerfile_of(service)).removeprefix("dockyard-")
    module = module_run_by(service)
    source = REPO / "services" / package / "src" / Path(*module.split("."))

    assert module.split(".")[0] == f"dockyard_{package}", f"{name} runs {module}"
    assert (source / "__main__.py").is_file(), f"{name}: {module} has no __main__ at {source}"


def test_every_process_dockyard_up_starts_runs_in_compose_too() -> None:
    # The embedded platform is the reference for which processes make the platform work.
    modules = {module_run_by(service) for service in built_services().values()}
    expected = {f"dockyard_{service}" for service in SERVICES}
    assert expected | {"dockyard_api.webhooks"} <= modules, modules


def test_builder_pushes_to_the_compose_registry() -> None:
    services = load_compose()["services"]
    url = services["builder"]["environment"].get("DOCKYARD_REGISTRY_URL", "")
    host = url.removeprefix("http://").removeprefix("https://").split(":")[0]

    assert host in services, f"DOCKYARD_REGISTRY_URL {url!r} names no compose service"
    assert "registry" in services["builder"].get("depends_on", {})


def test_router_reaches_local_targets_on_the_schedulers_loopback() -> None:
    # Local targets bind loopback addresses (the API refuses others): a router in another
    # network namespace could never reach their replicas.
    services = load_compose()["services"]

    assert services["router"].get("network_mode") == "service:scheduler"
    assert "8081:8081" in services["scheduler"].get("ports", [])
    assert "DOCKYARD_ADMIN_TOKEN" in services["router"]["environment"], "no ops API"


def test_every_dependency_names_a_defined_service() -> None:
    services: dict[str, dict[str, Any]] = load_compose()["services"]
    # depends_on is either a list of names or a mapping keyed by name: both iterate as names.
    undefined = {
        name: sorted(set(service.get("depends_on", [])) - set(services))
        for name, service in services.items()
        if set(service.get("depends_on", [])) - set(services)
    }

    assert not undefined, f"depends_on names services that are not defined: {undefined}"


def test_builder_and_scheduler_share_the_volume_holding_image_layouts() -> None:
    services = load_compose()["services"]

    def data_volume(name: str) -> str | None:
        for volume in services[name].get("volumes", []):
            source, _, target = str(volume).partition(":")
            if target.split(":")[0] == "/data":
                return source
        return None

    assert data_volume("builder") is not None, "the builder's /data is not a volume"
    assert data_volume("builder") == data_volume("scheduler")


# The consumer services (no HTTP port of their own): their liveness is a file the event loop
# touches (DOCKYARD_LIVENESS_FILE, dockyard_common.runtime.lifecycle.run_jetstream_service).
CONSUMER_MODULES = {"dockyard_builder", "dockyard_scheduler", "dockyard_api.webhooks"}


def test_every_service_is_restarted_when_it_exits_and_has_a_healthcheck() -> None:
    services: dict[str, dict[str, Any]] = load_compose()["services"]
    unrestarted = [
        n for n, s in services.items() if s.get("restart") not in ("always", "unless-stopped")
    ]
    unchecked = [n for n, s in services.items() if not s.get("healthcheck", {}).get("test")]
    assert unrestarted == [], f"services not restarted when they exit: {unrestarted}"
    assert unchecked == [], f"services without a healthcheck: {unchecked}"


def test_a_consumer_service_s_healthcheck_reads_the_file_it_is_told_to_touch() -> None:
    for name, service in built_services().items():
        check = " ".join(service["healthcheck"]["test"])
        liveness = service["environment"].get("DOCKYARD_LIVENESS_FILE")
        if module_run_by(service) in CONSUMER_MODULES:
            assert liveness and liveness in check, f"{name}: checks {check!r}, touches {liveness}"
        else:
            assert liveness is None, f"{name} does not touch a liveness file"


def test_every_service_waits_for_a_healthy_nats() -> None:
    for name, service in built_services().items():
        condition = service.get("depends_on", {}).get("nats", {}).get("condition")
        assert condition == "service_healthy", f"{name} starts before NATS is healthy"
