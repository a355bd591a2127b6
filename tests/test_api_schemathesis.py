"""Property-based run of the live API against its own OpenAPI document (schemathesis).

Every operation gets a bounded number of generated requests, valid and invalid ones,
authenticated as the platform admin. Part of them have their path parameters steered to an
owner, project, deployment, ready version, alias, token, blob and target that exist, so they
reach the handlers' deep code rather than stopping at a 404. Each response must not be a 5xx
and must conform to the document: a documented status code, content type, headers and body.

The run never stops at the first failure: it records every distinct one (operation, check,
status code) with the shortest request that shows it, and fails listing them all, server
errors first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names, RunningPlatform
from tests.harness.flows import (
    WSGI_APP,
    create_version,
    put_deployment,
    upload_blob,
    wait_for_version,
)

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 20
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# An SSE feed never ends, so its body cannot be validated; tests/test_events_feed.py covers it.
SKIPPED = {("GET", "/v1/events")}
NAMES = Names(owner="schemathesis", project="demo", deployment="web")
FUZZ_TARGET = "schemathesis-target"


@dataclass(frozen=True)
class World:
    """Path parameter values that name existing objects."""

    values: dict[str, str]


@pytest.fixture(scope="module")
async def world(platform: RunningPlatform) -> AsyncIterator[World]:
    """An owner with a project, a deployment, a ready version, an alias, a token and a blob.

    Targets are shared by the whole session (other tests count them), so every target the
    run creates is removed afterwards.
    """
    async with httpx.AsyncClient(
        base_url=platform.api_url,
        headers={"Authorization": f"Bearer {platform.admin_token}"},
        timeout=10.0,
    ) as api:
        targets_before = {t["name"] for t in (await api.get("/v1/targets")).json()["items"]}
        await put_deployment(api, NAMES, ["local-eu"])
        code = await upload_blob(api, NAMES, tar_gz({"app.py": WSGI_APP}))
        created = await create_version(
            api,
            NAMES,
            {
                "name": "v1",
                "code": {"blob": code},
                "endpoints": [{"name": "predict", "wsgi": "app:app"}],
            },
        )
        assert created.status_code == 201, created.text
        await wait_for_version(api, NAMES, "v1", "ready")
        deployment = f"/v1/projects/{NAMES.owner}/{NAMES.project}/deployments/{NAMES.deployment}"
        alias = await api.put(f"{deployment}/aliases/production", json={"version": "v1"})
        assert alias.status_code == 200, alias.text
        token = await api.post(f"/v1/owners/{NAMES.owner}/tokens", json={"role": "viewer"})
        assert token.status_code == 201, token.text
        target = await api.put(f"/v1/targets/{FUZZ_TARGET}", json={"region": "fuzz"})
        assert target.status_code == 201, target.text
        yield World(
            values={
                "owner": NAMES.owner,
                "project": NAMES.project,
                "deployment": NAMES.deployment,
                "version": "v1",
                "alias": "production",
                "token_id": token.json()["id"],
                "hexdigest": code.removeprefix("sha256:"),
                "target": FUZZ_TARGET,
            }
        )
        for name in {t["name"] for t in (await api.get("/v1/targets")).json()["items"]}:
            if name not in targets_before:
                removed = await api.delete(f"/v1/targets/{name}")
                assert removed.status_code in (204, 404), removed.text


@pytest.fixture(scope="module")
def api_schema(platform: RunningPlatform, world: World) -> schemathesis.BaseSchema:
    """The live API's OpenAPI document, called as the platform admin."""
    schema = schemathesis.openapi.from_url(f"{platform.api_url}/openapi.json")
    schema.config.update(
        base_url=platform.api_url,
        headers={"Authorization": f"Bearer {platform.admin_token}"},
        request_timeout=10,
    )

    @schema.hook
    def flatmap_path_parameters(
        context: schemathesis.HookContext, path_parameters: dict[str, Any]
    ) -> st.SearchStrategy[dict[str, Any]]:
        # A third as generated, a third naming existing objects, a third where only the last
        # parameter is as generated (its parents exist, it may not).
        if not path_parameters:
            return st.just(path_parameters)
        steered = {name: world.values.get(name, value) for name, value in path_parameters.items()}
        leaf = list(path_parameters)[-1]
        return st.sampled_from(
            [path_parameters, steered, {**steered, leaf: path_parameters[leaf]}]
        )

    return schema


@dataclass
class Finding:
    """One distinct failure and the shortest request seen to cause it."""

    operation: str
    status: int
    failure: str
    curl: str
    report: str

    @property
    def server_error(self) -> bool:
        return self.status >= 500


@dataclass
class Findings:
    """Every distinct failure of the run, and the statuses each operation answered."""

    by_key: dict[tuple[str, str, int], Finding] = field(default_factory=dict)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    def record(self, case: schemathesis.Case, status: int, group: FailureGroup | None) -> None:
        label = case.operation.label
        self.statuses.setdefault(label, Counter())[status] += 1
        if group is None:
            return
        curl = case.as_curl_command(headers={"Authorization": "Bearer $TOKEN"})
        for failure in group.exceptions:
            key = (label, type(failure).__name__, status)
            known = self.by_key.get(key)
            if known is None or len(curl) < len(known.curl):
                self.by_key[key] = Finding(label, status, failure.title, curl, str(group))

    def summary(self) -> str:
        ordered = sorted(
            self.by_key.values(),
            key=lambda f: (not f.server_error, f.operation, f.status, f.failure),
        )
        lines = [f"{len(ordered)} distinct failures:"]
        lines += [f"- {f.operation} -> {f.status}: {f.failure}\n    {f.curl}" for f in ordered]
        lines.append("Statuses answered per operation:")
        lines += [f"- {label}: {dict(sorted(c.items()))}" for label, c in self.statuses.items()]
        return "\n".join(lines)


def operations_in_run_order(schema: schemathesis.BaseSchema) -> Iterator[schemathesis.APIOperation]:
    """Every operation but the skipped ones; deletions last, deepest paths first.

    Deleting the shared objects early would leave the operations after it only 404s.
    """
    operations = [result.ok() for result in schema.get_all_operations()]
    chosen = [op for op in operations if (op.method.upper(), op.path) not in SKIPPED]
    yield from (op for op in chosen if op.method.upper() != "DELETE")
    deletions = [op for op in chosen if op.method.upper() == "DELETE"]
    yield from sorted(deletions, key=lambda op: -op.path.count("/"))


def exercise(operation: schemathesis.APIOperation, findings: Findings) -> None:
    """Send valid and invalid generated requests to one operation, recording every failure."""
    strategy = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def send(case: schemathesis.Case) -> None:
        response = case.call()
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            findings.record(case, response.status_code, group)
        else:
            findings.record(case, response.status_code, None)

    send()


def test_every_operation_answers_within_its_documented_contract(
    api_schema: schemathesis.BaseSchema,
) -> None:
    findings = Findings()
    for operation in operations_in_run_order(api_schema):
        exercise(operation, findings)
    assert findings.by_key == {}, findings.summary()
