"""Code from git: a branch or a commit, fetched by the builder, recorded in the image."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.harness.fixtures import Names, RunningPlatform
from tests.harness.flows import WSGI_APP, create_version, put_deployment, wait_for_version

pytestmark = pytest.mark.e2e

INLINE = [{"name": "predict", "wsgi": "app:app"}]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
            "PATH": "/usr/bin:/bin",
        },
    )
    return done.stdout.strip()


@pytest.fixture
def repository(tmp_path: Path) -> tuple[Path, str]:
    repo = tmp_path / "model-repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_bytes(WSGI_APP)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    first = git(repo, "rev-parse", "HEAD")
    (repo / "README").write_text("second commit\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "second")
    return repo, first


async def test_a_version_builds_from_a_git_branch_and_from_a_commit(
    api: httpx.AsyncClient,
    platform: RunningPlatform,
    names: Names,
    repository: tuple[Path, str],
) -> None:
    repo, first = repository
    await put_deployment(api, names, ["local-eu"])
    for version, ref in (("from-branch", "main"), ("from-commit", first)):
        created = await create_version(
            api,
            names,
            {
                "name": version,
                "code": {"git": {"url": f"file://{repo}", "ref": ref}},
                "endpoints": INLINE,
            },
        )
        assert created.status_code == 201, created.text
        await wait_for_version(api, names, version, "ready")
    url = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}"
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{url}/from-commit/predict/hello")
    assert answer.status_code == 200 and answer.text.startswith("GET /hello")


async def test_a_ref_that_does_not_exist_fails_the_build_with_the_reason(
    api: httpx.AsyncClient, names: Names, repository: tuple[Path, str]
) -> None:
    repo, _ = repository
    await put_deployment(api, names, ["local-eu"])
    created = await create_version(
        api,
        names,
        {
            "name": "v1",
            "code": {"git": {"url": f"file://{repo}", "ref": "no-such-branch"}},
            "endpoints": INLINE,
        },
    )
    assert created.status_code == 201
    failed = await wait_for_version(api, names, "v1", "failed")
    assert "no-such-branch" in failed["error"]


async def test_a_symbolic_link_in_the_repository_fails_the_build(
    api: httpx.AsyncClient, names: Names, repository: tuple[Path, str]
) -> None:
    repo, _ = repository
    (repo / "passwd").symlink_to("/etc/passwd")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "a link")
    await put_deployment(api, names, ["local-eu"])
    created = await create_version(
        api,
        names,
        {
            "name": "v1",
            "code": {"git": {"url": f"file://{repo}", "ref": "main"}},
            "endpoints": INLINE,
        },
    )
    assert created.status_code == 201
    failed = await wait_for_version(api, names, "v1", "failed")
    assert "passwd is not a regular file" in failed["error"]


async def test_git_code_needs_its_endpoints_given(api: httpx.AsyncClient, names: Names) -> None:
    await put_deployment(api, names, ["local-eu"])
    response = await create_version(
        api, names, {"code": {"git": {"url": "https://example.invalid/r.git", "ref": "main"}}}
    )
    assert response.status_code == 422
    assert "'endpoints' inline or 'valohai_yaml'" in response.json()["detail"]
