"""Property-based run of the live API against its own OpenAPI document (schemathesis).

Every operation gets a bounded number of generated requests, valid and invalid ones,
authenticated as the platform admin; part of them are steered to objects that exist
(``tests/harness/schemathesis_world.py``) so they reach deep code. Each response must not be
a 5xx and must conform to the document: a documented status code, content type, headers and
body.

The API under test is a platform of its own, on its own NATS and Redis: the generated
requests create owners, targets and deployments under names no test chooses, and targets are
global, so on the session's platform they would leak into other tests (which count targets).

The run does not stop at the first failure: it records every distinct one (check, status,
operation) with the shortest request that showed it, and fails listing them all, server
errors first. The ``curl`` lines need the admin token put back in.

Why not ``schema.parametrize()``: its fixture-loaded form (``schemathesis.pytest.from_fixture``,
needed because the API starts in a fixture) reads ``Node._nodeid``, which pytest 9.2 removed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.harness.fixtures import RunningPlatform, start_platform_process
from tests.harness.infrastructure import start_infrastructure
from tests.harness.schemathesis_world import World, body_variants, create_world, path_variants

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
Operation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Operation]
# An SSE feed never ends, so its body cannot be validated; tests/test_events_feed.py covers it.
SKIPPED = {"GET /v1/events"}


@pytest.fixture(scope="module")
def fuzzed_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """The four services on their own NATS and Redis, for this module alone."""
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    with start_infrastructure(data_dir / "infrastructure") as servers:
        running = start_platform_process(
            data_dir / "platform",
            {"DOCKYARD_NATS_URL": servers.nats_url, "DOCKYARD_REDIS_URL": servers.redis_url},
        )
        try:
            yield running
        finally:
            died = running.process.poll() is not None
            running.stop()
    if died:
        logs = "\n".join(
            f"--- {log.name}\n{log.read_text()[-3000:]}"
            for log in sorted((running.data_dir / "logs").glob("*.log"))
        )
        raise AssertionError(f"the platform exited under the run:\n{logs}")


@pytest.fixture(scope="module")
async def world(fuzzed_platform: RunningPlatform) -> AsyncIterator[World]:
    """The objects to steer to."""
    async with httpx.AsyncClient(
        base_url=fuzzed_platform.api_url,
        headers={"Authorization": f"Bearer {fuzzed_platform.admin_token}"},
        timeout=10.0,
    ) as api:
        yield await create_world(api)


@pytest.fixture(scope="module")
def api_schema(fuzzed_platform: RunningPlatform, world: World) -> schemathesis.BaseSchema:
    """The live API's OpenAPI document, called as the platform admin, steered to ``world``."""
    schema = schemathesis.openapi.from_url(f"{fuzzed_platform.api_url}/openapi.json")
    schema.config.update(
        base_url=fuzzed_platform.api_url,
        headers={"Authorization": f"Bearer {fuzzed_platform.admin_token}"},
        request_timeout=10,
    )

    @schema.hook
    def flatmap_path_parameters(
        context: schemathesis.HookContext, path_parameters: dict[str, Any]
    ) -> st.SearchStrategy[dict[str, Any]]:
        assert context.operation is not None
        return st.sampled_from(path_variants(world, context.operation.path, path_parameters))

    @schema.hook
    def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
        assert context.operation is not None
        return st.sampled_from(body_variants(world, context.operation.label, body))

    return schema


@dataclass
class Finding:
    """One distinct failure and the shortest request seen to cause it."""

    operation: str
    status: int
    failure: str
    detail: str
    curl: str
    response: str


@dataclass
class Findings:
    """Every distinct failure of the run, and the statuses each operation answered."""

    by_key: dict[tuple[str, int, str], Finding] = field(default_factory=dict)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    def record(
        self, case: Case, response: schemathesis.Response, group: FailureGroup | None
    ) -> None:
        label = case.operation.label
        self.statuses.setdefault(label, Counter())[response.status_code] += 1
        for failure in group.exceptions if group is not None else ():
            key = (failure.title, response.status_code, label)
            curl = case.as_curl_command()
            known = self.by_key.get(key)
            if known is None or len(curl) < len(known.curl):
                detail = " ".join(failure.message.split())
                self.by_key[key] = Finding(
                    label, response.status_code, failure.title, detail, curl, response.text[:300]
                )

    def summary(self) -> str:
        """The failures grouped by kind and status (server errors first), then every status."""
        groups: dict[tuple[str, int], list[Finding]] = {}
        for (title, status, _), finding in sorted(self.by_key.items()):
            groups.setdefault((title, status), []).append(finding)
        lines = [f"{len(self.by_key)} distinct failures:"]
        for (title, status), findings in sorted(groups.items(), key=lambda g: g[0][1] < 500):
            lines.append(f"* {title} ({status}) in {len(findings)} operations:")
            for f in findings:
                lines += [f"  - {f.operation}: {f.detail}", f"      {f.curl}"]
            lines.append(f"    e.g. response: {findings[0].response}")
        lines.append("Statuses answered per operation:")
        lines += [f"  {label}: {dict(sorted(c.items()))}" for label, c in self.statuses.items()]
        return "\n".join(lines)


def operations_in_run_order(schema: schemathesis.BaseSchema) -> Iterator[Operation]:
    """Every operation but the skipped ones; deletions last, deepest paths first.

    Deleting the shared objects early would leave the operations after it only 404s.
    """
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operations.append(result.ok())
    chosen = [op for op in operations if op.label not in SKIPPED]
    yield from (op for op in chosen if op.method.upper() != "DELETE")
    deletions = [op for op in chosen if op.method.upper() == "DELETE"]
    yield from sorted(deletions, key=lambda op: -op.path.count("/"))


def exercise(operation: Operation, findings: Findings) -> None:
    """Send valid and invalid generated requests to one operation, recording every failure."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        # Every example is sent and recorded; nothing is raised, so nothing to shrink.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=st.one_of(
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
        )
    )
    def send(case: Case) -> None:
        response = case.call()
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            findings.record(case, response, group)
        else:
            findings.record(case, response, None)

    send()


def test_every_operation_answers_within_its_documented_contract(
    api_schema: schemathesis.BaseSchema,
) -> None:
    findings = Findings()
    for operation in operations_in_run_order(api_schema):
        exercise(operation, findings)
    if findings.by_key:
        pytest.fail(findings.summary(), pytrace=False)
