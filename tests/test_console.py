"""The web console in a real browser (chromium driven by Playwright) against the running
platform: sign in, watch a version become ready live, switch and roll back an alias, test
an endpoint, read the traffic charts; a viewer sees no action and forged posts are refused.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Dialog, Page, expect

from tests.harness.archives import tar_gz
from tests.harness.browser import pixel_spread, sign_in
from tests.harness.fixtures import Names, RunningPlatform
from tests.harness.flows import create_version, deploy_ready, put_deployment, upload_blob

pytestmark = pytest.mark.e2e

SCREENSHOT_COPY = os.environ.get("DOCKYARD_CONSOLE_SCREENSHOT")
"""Where to copy the deployment page's screenshot (docs/console.png is made this way)."""


def model(answer: str) -> bytes:
    """A WSGI endpoint answering its version's name, the method and the body it got."""
    return (
        "def app(environ, start_response):\n"
        "    size = int(environ.get('CONTENT_LENGTH') or 0)\n"
        "    body = environ['wsgi.input'].read(size)\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        f"    return [b'{answer} ' + environ['REQUEST_METHOD'].encode() + b' ' + body]\n"
    ).encode()


async def token_for(api: httpx.AsyncClient, names: Names, role: str) -> str:
    """A new API token of the test's owner with ``role``."""
    created = await api.post(f"/v1/owners/{names.owner}/tokens", json={"role": role})
    assert created.status_code == 201, created.text
    token: str = created.json()["token"]
    return token


async def submit(api: httpx.AsyncClient, names: Names, version: str) -> None:
    """Submit ``version`` without waiting for it."""
    code = await upload_blob(api, names, tar_gz({"app.py": model(version)}))
    created = await create_version(
        api,
        names,
        {
            "name": version,
            "code": {"blob": code},
            "endpoints": [{"name": "predict", "wsgi": "app:app"}],
        },
    )
    assert created.status_code == 201, created.text


def accept_dialogs(page: Page) -> list[str]:
    """Accept every confirmation the page asks; the questions asked."""
    asked: list[str] = []

    async def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    return asked


async def set_alias(page: Page, alias: str, version: str) -> None:
    """Point ``alias`` at ``version`` with the deployment page's form."""
    form = page.locator("form.set-alias")
    await form.locator("input[name=alias]").fill(alias)
    await form.locator("select[name=version]").select_option(version)
    await form.locator("select[name=canary]").select_option("")
    await form.locator("button").click()
    await page.wait_for_selector(f"#flash:has-text('{alias} → {version}')")
    target = page.locator(f"tr[data-alias={alias}] .alias-target")
    assert await target.inner_text() == version


async def screenshot(page: Page, path: Path) -> None:
    """A full-page screenshot at ``path``, checked not to be blank."""
    png = await page.screenshot(path=str(path), full_page=True)
    spread = pixel_spread(png)
    assert spread > 10, f"the screenshot {path} looks blank (grey level spread {spread:.1f})"


async def answers(url: str, expected: str, within_s: float = 5.0) -> None:
    """Call ``url`` until it answers starting with ``expected`` (routers apply async)."""
    deadline = time.monotonic() + within_s
    seen = ""
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            seen = (await client.get(url)).text
            if seen.startswith(expected):
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not answer {expected!r} within {within_s} s; last: {seen!r}")


async def test_a_deployer_watches_switches_tests_and_rolls_back_in_the_browser(
    api: httpx.AsyncClient,
    platform: RunningPlatform,
    names: Names,
    browser: Browser,
    tmp_path: Path,
) -> None:
    await put_deployment(api, names, ["local-eu", "local-us"])
    await deploy_ready(api, names, "v1", app=model("v1"))
    token = await token_for(api, names, "deployer")
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    asked = accept_dialogs(page)
    await sign_in(page, platform.api_url, token)

    # The overview lists the deployment with its health; its page follows the event feed.
    health = await page.inner_text(f"tr[data-deployment={names.deployment}] .health")
    assert health.strip() == "1 ready", health
    await page.click(f"a[href='/console/d/{names.owner}/{names.project}/{names.deployment}']")
    await page.wait_for_selector("#live-state:has-text('live')")
    await page.evaluate("window.__notReloaded = true")
    await submit(api, names, "v2")
    await page.wait_for_selector("tr[data-version=v2] td[data-status=ready]", timeout=60_000)
    assert await page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    timeline = await page.locator("#timeline").inner_text()
    assert "v2: building" in timeline and "v2: ready" in timeline, timeline

    # Set production, first to v1 then to v2, each after a confirmation.
    await set_alias(page, "production", "v1")
    await set_alias(page, "production", "v2")
    assert asked == ["Switch the alias now?"] * 2
    deployment = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}"
    production = f"{deployment}/production/predict/"
    await answers(production, "v2")
    await screenshot(page, tmp_path / "deployment.png")
    if SCREENSHOT_COPY:
        shutil.copy(tmp_path / "deployment.png", SCREENSHOT_COPY)

    # Test the endpoint from the form: the answer and who served it.
    await page.click("nav.sub >> text=Test an endpoint")
    await page.select_option("select[name=serving]", "production")
    await page.select_option("select[name=method]", "POST")
    await page.check("input[name=body_kind][value=json]")
    await page.fill("textarea[name=body]", '{"x": 1}')
    await page.click("form.tester button[type=submit]")
    await page.wait_for_selector("#answer")
    assert await page.inner_text("#answer") == 'v2 POST {"x": 1}'
    assert await page.inner_text("#served-version") == "v2"
    assert await page.inner_text("#result-status") == "200"
    assert "curl -i -X POST" in await page.inner_text("#curl")
    await screenshot(page, tmp_path / "test.png")

    # A canary on staging: v1 with 10 % of the requests to v2.
    await page.click("nav.sub >> text=Overview")
    form = page.locator("form.set-alias")
    await form.locator("input[name=alias]").fill("staging")
    await form.locator("select[name=version]").select_option("v1")
    await form.locator("select[name=canary]").select_option("v2")
    await form.locator("input[name=canary_weight]").fill("10")
    await form.locator("button").click()
    await page.wait_for_selector("#flash:has-text('staging → v1 90% · v2 10%')")
    assert await page.inner_text("tr[data-alias=staging] .alias-target") == "v1 90% · v2 10%"

    # Roll back: production points at v1 again, and the router serves v1.
    await page.click("tr[data-alias=production] button[name=rollback]")
    await page.wait_for_selector("#flash:has-text('rolled back: production → v1')")
    assert await page.inner_text("tr[data-alias=production] .alias-target") == "v1"
    await answers(production, "v1")

    # Stopping a version an alias uses is refused with the API's reason.
    await page.click("tr[data-version=v2] button.danger")
    assert "staging" in await page.inner_text("#problem")
    await page.go_back()

    # A version's page: its milestones, image and endpoint logs per target and replica.
    await page.click("tr[data-version=v2] a")
    assert await page.inner_text("#version-status") == "ready"
    milestones = await page.locator("table.timings td:first-child").all_inner_texts()
    assert milestones == ["submitted", "build started", "built", "ready"], milestones
    assert (await page.inner_text("section:has(h2:text('Image'))")).count("sha256:") >= 2
    logs = page.locator(".logs").first
    assert await logs.locator("h3").all_inner_texts() == [
        "predict on local-eu eu",
        "predict on local-us us",
    ]
    async with page.expect_response(lambda r: "/logs/predict" in r.url and r.ok):
        await logs.locator("input.follow").check()
    await screenshot(page, tmp_path / "version.png")
    await context.close()


async def test_the_traffic_chart_moves_after_a_burst_of_calls(
    api: httpx.AsyncClient,
    platform: RunningPlatform,
    names: Names,
    browser: Browser,
    tmp_path: Path,
) -> None:
    await put_deployment(api, names, ["local-eu"])
    await deploy_ready(api, names, "v1", app=model("v1"))
    token = await token_for(api, names, "viewer")
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await sign_in(page, platform.api_url, token)
    base = f"{platform.api_url}/console/d/{names.owner}/{names.project}/{names.deployment}"
    await page.goto(f"{base}/traffic")
    assert await page.inner_text("#total-requests") == "0"

    url = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}/v1/predict/"
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(40):
            assert (await client.get(url)).status_code == 200
    # The page redraws its charts by itself: no reload.
    await expect(page.locator(".totals")).to_have_attribute("data-requests", "40", timeout=20_000)
    legend = await page.locator("figure.chart .legend").first.inner_text()
    assert legend.startswith("v1: "), legend
    # The request rate's line of v1 rose off the axis (y = 140 is zero).
    points = await page.get_attribute("figure.chart polyline", "points") or ""
    heights = [float(point.split(",")[1]) for point in points.split()]
    assert min(heights) < 140, points
    # Beside them, the replicas serving v1: one on its one target.
    replicas = page.locator("figure.chart:has(figcaption:text('Replicas')) .legend")
    assert await replicas.inner_text() == "v1: 1"
    await screenshot(page, tmp_path / "traffic.png")
    await context.close()


async def test_a_viewer_sees_no_action_and_forged_posts_are_refused(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names, browser: Browser
) -> None:
    await put_deployment(api, names, ["local-eu"])
    await submit(api, names, "v1")
    aliases = f"/v1/projects/{names.owner}/{names.project}/deployments/{names.deployment}/aliases"
    pointed = await api.put(f"{aliases}/production", json={"version": "v1", "force": True})
    assert pointed.status_code in (200, 202), pointed.text
    base = f"{platform.api_url}/console/d/{names.owner}/{names.project}/{names.deployment}"

    hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    described = await api.put(
        f"/v1/projects/{names.owner}/{names.project}", json={"description": hostile}
    )
    assert described.status_code == 200, described.text

    viewer = await browser.new_context()
    page = await viewer.new_page()
    await sign_in(page, platform.api_url, await token_for(api, names, "viewer"))
    # What a user wrote is shown as text, never run.
    assert hostile in await page.inner_text("section.project")
    assert await page.evaluate("window.pwned === undefined")
    response = await page.goto(base)
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
    assert await page.inner_text("tr[data-alias=production] .alias-target") == "v1"
    # The only form a viewer gets is signing out.
    assert await page.locator("form").count() == 1
    assert await page.locator("form[action='/console/sign-out']").count() == 1
    viewer_csrf = await page.get_attribute("form[action='/console/sign-out'] input", "value")
    assert viewer_csrf

    # A viewer's post with the right CSRF token is refused by the API's authorisation.
    refused = await page.request.post(
        f"{base}/aliases/production/rollback", form={"csrf": viewer_csrf}, max_redirects=0
    )
    assert refused.status == 403, await refused.text()
    assert "a viewer token may not do this" in await refused.text()

    # A deployer's post without (or with a wrong) CSRF token is refused before anything.
    deployer = await browser.new_context()
    page = await deployer.new_page()
    await sign_in(page, platform.api_url, await token_for(api, names, "deployer"))
    for form in ({}, {"csrf": viewer_csrf}):
        forged = await page.request.post(
            f"{base}/aliases",
            form={**form, "alias": "production", "version": "v1"},
            max_redirects=0,
        )
        assert forged.status == 403, await forged.text()
        assert "not sent by the console" in await forged.text()
    # Without a session (a page of another site sends no SameSite=Strict cookie).
    anonymous = await browser.new_context()
    blind = await anonymous.request.post(f"{base}/aliases/production/rollback", max_redirects=0)
    assert blind.status == 303 and blind.headers["location"] == "/console/sign-in"

    history = (await api.get(f"{aliases}/production/history")).json()["items"]
    assert len(history) == 1, history

    # Revoking the token ends its console sessions at once.
    tokens = (await api.get(f"/v1/owners/{names.owner}/tokens")).json()["items"]
    for token in tokens:
        revoked = await api.delete(f"/v1/owners/{names.owner}/tokens/{token['id']}")
        assert revoked.status_code == 204, revoked.text
    await page.goto(base)
    assert page.url.endswith("/console/sign-in"), page.url
    for context in (viewer, deployer, anonymous):
        await context.close()


async def test_the_platform_admin_drains_and_undrains_a_region_from_the_console(
    platform: RunningPlatform, browser: Browser
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    asked = accept_dialogs(page)
    await sign_in(page, platform.api_url, platform.admin_token)
    await page.click("header nav >> text=Regions")
    row = page.locator("tr[data-region=us]")
    assert await row.locator("td").nth(2).inner_text() == "serving"
    # The router's own view, asked server-side with the admin token.
    regions = await page.locator("#router-regions tbody td:first-child").all_inner_texts()
    assert "eu" in regions, regions
    try:
        await row.locator("button").click()
        await page.wait_for_selector("#flash:has-text('us: drained')")
        assert await page.locator("tr[data-region=us] td").nth(2).inner_text() == "drained"
    finally:
        await page.locator("tr[data-region=us] button").click()
        await page.wait_for_selector("#flash:has-text('us: serving')")
    assert asked == ["Drain region us?", "Undrain region us?"]
    await context.close()
