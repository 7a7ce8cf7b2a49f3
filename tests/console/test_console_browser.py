"""The console and the API docs in a real browser: Debian's Chromium driven by Playwright,
with every request that leaves 127.0.0.1 aborted (and failing the test), at 1280 and 390
pixels wide. Screenshots of each page go to $LETHE_CONSOLE_SCREENSHOTS or the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.requests import erasure_body, training_ids

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

PHASES = {"starting", "loading", "unlearning", "verifying", "publishing"}
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"

pytestmark = pytest.mark.slow


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium (make test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()


class Tab:
    """A browser context with the network cut off beyond the server, collecting errors."""

    def __init__(self, browser: Any, base: str, shots: Path, width: int = 1280):
        self.base, self.shots = base, shots
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context.route(re.compile(r"^(?!" + re.escape(base) + r")"), self._block)
        self.page = self.context.new_page()
        self.page.on(
            "console",
            lambda m: (
                self.errors.append(f"{self.page.url}: {m.text}") if m.type == "error" else None
            ),
        )
        self.page.on("pageerror", lambda e: self.errors.append(f"{self.page.url}: {e}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"{self.page.url}: {message.text}")

    def _block(self, route: Any) -> None:
        self.outside.append(route.request.url)
        route.abort()

    def go(self, path: str) -> Any:
        return self.page.goto(self.base + path)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def sign_in(self, key: str) -> None:
        """With the keyboard: the key field has focus, Enter submits."""
        self.go("/console/")
        self.page.wait_for_url(re.compile(r"/console/sign-in"))
        assert self.page.get_by_label("API key").evaluate("e => e === document.activeElement")
        self.page.keyboard.type(key)
        self.page.keyboard.press("Enter")
        self.page.get_by_role("button", name="Sign out").wait_for()
        assert self.page.url.startswith(self.base + "/console/requests")

    def fields_are_labelled(self) -> list[str]:
        return list(
            self.page.evaluate(
                """() => [...document.querySelectorAll('input, select, textarea')]
                .filter(e => e.type !== 'hidden')
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                .map(e => e.outerHTML)"""
            )
        )

    def overflows(self) -> bool:
        return bool(
            self.page.evaluate("() => document.documentElement.scrollWidth > window.innerWidth + 1")
        )


def _submit(base: str, key: str, ids: list[str]) -> str:
    r = httpx.post(
        f"{base}/v1/erasure-requests",
        json=erasure_body(ids),
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _status(base: str, key: str, rid: str) -> str:
    r = httpx.get(f"{base}/v1/erasure-requests/{rid}", headers={"X-API-Key": key}, timeout=30)
    return str(r.json()["status"])


def test_console_in_a_real_browser(
    browser: Any, console_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, keys = console_server.url, console_server.keys
    shots = Path(os.environ.get("LETHE_CONSOLE_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    # 1. the API docs render from Lethe's own assets with the network cut off
    docs = Tab(browser, base, shots)
    docs.go("/docs")
    docs.page.locator(".swagger-ui .info .title").filter(has_text="Lethe").wait_for()
    docs.page.locator(".opblock").first.wait_for()
    docs.shot("docs")
    assert docs.outside == [] and docs.errors == [], (docs.outside, docs.errors)
    docs.go("/redoc")
    docs.page.get_by_role("heading", name=re.compile("Lethe")).first.wait_for()
    docs.page.get_by_text("erasure requests").first.wait_for()
    docs.shot("redoc")
    # ReDoc's bundle asks for its vendor's footer logo and hides it when that fails; all
    # it needs to render is served by Lethe (asserted above: the page rendered offline).
    assert set(docs.outside) <= {REDOC_LOGO}, docs.outside
    assert all("ERR_FAILED" in e for e in docs.errors), docs.errors

    admin = Tab(browser, base, shots)

    # 2. sign in (a page opened without a session leads to the form), keyboard only
    admin.go("/console/requests")
    assert "/console/sign-in?next=" in admin.page.url
    admin.sign_in(keys["admin"])
    cookie = next(c for c in admin.context.cookies() if c["name"] == "lethe_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > 0
    assert keys["admin"].split("_", 2)[2] not in cookie["value"]

    # two requests through the API; jobs are held, so both wait queued
    rt = console_server.runtime
    to_deny = _submit(base, keys["admin"], training_ids(rt, label=5, limit=3))
    to_erase = _submit(base, keys["admin"], training_ids(rt, label=3))  # a whole class
    assert {_status(base, keys["admin"], r) for r in (to_deny, to_erase)} == {"queued"}

    admin.go("/console/requests?status=queued")
    rows = admin.page.locator("tbody tr")
    assert rows.count() == 2
    assert admin.page.get_by_text("day(s) left").count() == 2
    admin.shot("requests")

    # 3. a read-only key sees no deny button; its POST (with its own valid token) is refused
    reader = Tab(browser, base, shots)
    reader.sign_in(keys["reader"])
    reader.go(f"/console/requests/{to_deny}")
    assert reader.page.get_by_role("button", name="Deny request").count() == 0
    assert reader.page.get_by_text("Timeline").count() == 1
    token = reader.page.locator("input[name=csrf_token]").first.input_value()
    refused = reader.page.request.post(
        f"{base}/console/requests/{to_deny}/deny",
        form={"ground": "legal_claims", "reason": "forged", "csrf_token": token},
    )
    assert refused.status == 403 and "erasure:write" in refused.text(), refused.text()
    # a forged POST riding the admin's cookie but without the form's token: 403, CSRF
    forged = admin.page.request.post(
        f"{base}/console/requests/{to_deny}/deny",
        form={"ground": "legal_claims", "reason": "forged"},
    )
    assert forged.status == 403 and "CSRF" in forged.text()
    assert _status(base, keys["admin"], to_deny) == "queued"

    # 4. deny one with a ground and a reason, with the form
    admin.go(f"/console/requests/{to_deny}")
    admin.page.get_by_label("Ground").select_option("legal_claims")
    admin.page.get_by_label("Reason (sent").fill("evidence in pending litigation 2026-C-114")
    admin.shot("request-open")
    admin.page.get_by_role("button", name="Deny request").click()
    admin.page.wait_for_url(re.compile(r"done=denied"))
    assert admin.page.locator("#status").inner_text() == "denied"
    assert admin.page.get_by_text("evidence in pending litigation 2026-C-114").count() >= 1
    assert _status(base, keys["admin"], to_deny) == "denied"

    # 5. release the job and watch the page move the other request to completed. On a
    # quiet machine the job runs in less than the page's 1 s poll: it is held in its
    # unlearning phase (the heartbeat keeps writing it) until the page has shown it running.
    from workers import pipeline

    shown = threading.Event()
    set_phase = pipeline.Progress.set

    def held_in_unlearning(self: Any, phase: str, inner: float = 0.0) -> None:
        set_phase(self, phase, inner)
        if phase == "unlearning":
            shown.wait(timeout=120)

    monkeypatch.setattr(pipeline.Progress, "set", held_in_unlearning)
    admin.go(f"/console/requests/{to_erase}")
    assert admin.page.locator("#status").inner_text() == "queued"
    console_server.dispatcher.release()
    # the poll reloads the page when the job starts, then shows its phase and percentage
    bar = admin.page.locator("progress#job-progress")
    try:
        bar.wait_for(timeout=180_000)
        assert admin.page.locator("#status").inner_text() == "running"
        assert admin.page.locator(".progress .phase").inner_text() in PHASES
    finally:
        shown.set()
    admin.page.locator("#status", has_text="completed").wait_for(timeout=180_000)
    admin.page.get_by_text("erased in version 2").wait_for()
    admin.shot("request-completed")

    # 6. the version's verification pictures
    admin.page.get_by_role("link", name="version 2").first.click()
    admin.page.locator("#pictures").wait_for()
    charts = admin.page.locator("figure.chart svg[role=img]")
    assert charts.count() == 2
    assert charts.first.locator("path[stroke]").count() == 3  # forgotten, retained, held-out
    assert admin.page.get_by_text("not recorded").count() == 0
    medians = {
        tuple(cells[:2]): float(cells[5])
        for row in admin.page.locator("details table tbody tr").all()
        for cells in [[c.text_content() or "" for c in row.locator("td").all()]]
    }
    # the forgotten class: confident before, not after; the retained samples stay confident
    assert medians[("before (parent version)", "forgotten")] > 0.9
    assert medians[("after", "forgotten")] < 0.2 < 0.9 < medians[("after", "retained")]
    admin.shot("version")
    admin.go("/console/models/digits-cnn/versions/1")
    assert admin.page.locator("#not-recorded").count() == 1
    # v1 was trained on the erased class: the console shows it retired (issue 14)
    assert admin.page.locator(".badge.retired").count() == 1
    admin.go("/console/models/digits-cnn")
    assert admin.page.locator("#model-status .badge.ready").inner_text() == "ready"
    assert admin.page.get_by_text("production").count() >= 1
    assert admin.page.locator("tbody .badge.retired").count() == 1
    admin.shot("model")

    # 7. the audit chain: verify now, filter, export
    admin.go("/console/audit")
    admin.page.get_by_role("button", name="Verify now").click()
    result = admin.page.locator("#verify-result")
    assert result.inner_text().startswith("Quick check passed")
    # the full walk runs in the background; the page shows its progress, then its verdict
    for _ in range(60):
        if "intact" in admin.page.locator("#full-walk").inner_text():
            break
        admin.page.wait_for_timeout(250)
        admin.go("/console/audit")
    assert "every one of" in admin.page.locator("#full-walk").inner_text()
    admin.shot("audit")
    admin.go("/console/audit?type=request.denied")
    assert admin.page.locator("tbody tr").count() == 1
    export = admin.page.request.get(f"{base}/console/audit/export.jsonl")
    events = [json.loads(line) for line in export.text().splitlines()]
    assert {"request.received", "request.denied", "version.published"} <= {
        e["type"] for e in events
    }

    # 8. keys: create (secret shown once), revoke
    admin.go("/console/keys")
    admin.page.get_by_label("Name (who it is for)").fill("portal-2")
    admin.page.get_by_label("erasure:read").check()
    admin.page.get_by_role("button", name="Create key").click()
    secret = admin.page.get_by_label("New API key").input_value()
    assert re.fullmatch(r"lethe_[0-9a-f]{12}_[\w-]{43}", secret)
    admin.shot("keys")
    ok = httpx.get(f"{base}/v1/erasure-requests", headers={"X-API-Key": secret})
    assert ok.status_code == 200
    admin.go("/console/keys")
    assert admin.page.get_by_label("New API key").count() == 0  # shown once only
    admin.page.get_by_role("button", name=re.compile(r"Revoke key portal-2")).click()
    admin.page.wait_for_url(re.compile(r"revoked="))
    assert (
        httpx.get(f"{base}/v1/erasure-requests", headers={"X-API-Key": secret}).status_code == 401
    )

    # 9. every page at 1280 and 390 px: labelled fields, no sideways scrolling
    pages = [
        "/console/requests",
        f"/console/requests/{to_erase}",
        "/console/models",
        "/console/models/digits-cnn",
        "/console/models/digits-cnn/versions/2",
        "/console/audit",
        "/console/keys",
    ]
    phone = Tab(browser, base, shots, width=390)
    phone.sign_in(keys["admin"])
    for tab, width in ((admin, 1280), (phone, 390)):
        for path in pages:
            tab.go(path)
            assert tab.fields_are_labelled() == [], path
            assert not tab.overflows(), f"{path} scrolls sideways at {width}px"
        tab.go("/console/models/digits-cnn/versions/2")
        tab.shot(f"version-{width}")
    phone.go("/console/requests")
    phone.shot("requests-390")

    # keyboard: the skip link is the first stop, and moves focus to the content
    admin.go("/console/requests")
    admin.page.keyboard.press("Tab")
    assert admin.page.evaluate("document.activeElement.textContent") == "Skip to content"
    admin.page.keyboard.press("Enter")
    assert admin.page.evaluate("document.activeElement.id") == "main"

    # 10. sign out ends the session
    admin.page.get_by_role("button", name="Sign out").click()
    admin.page.wait_for_url(re.compile(r"/console/sign-in"))
    admin.go("/console/requests")
    assert "/console/sign-in" in admin.page.url
    assert admin.page.request.get(f"{base}/console/requests").status == 401  # not a browser

    for tab in (admin, reader, phone):
        assert tab.outside == [], f"the console tried to reach {tab.outside}"
        assert tab.errors == [], "\n".join(tab.errors)
