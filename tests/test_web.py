"""What people see: the index's pages in a real browser (Debian's chromium + chromedriver through
Selenium), `inv status`, and the build's live view on a terminal and as plain lines."""

from __future__ import annotations

import asyncio
import os
import platform
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import Server, start_server, stop_server
from wheelmaker import make_wheel

from jetwheel.index.server import profiles as compat
from jetwheel.index.server.app import INDEX, Settings, make_app
from jetwheel.index.server.profiles import ProfileView
from jetwheel.index.store.store import Store
from jetwheel.model.recipe import load_profile, load_recipes
from jetwheel.target import Target
from jetwheel.verify import verify_wheel

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def web_index(tmp_path: Path, stack_server: Server, stack_wheels: dict[str, Path]) -> Iterator[Server]:
    """The mini stack with its real reports, except mini-vision, published with the report verify
    gives it without mini-torch beside it (a real failure: libminitorch.so is missing)."""
    s = start_server(tmp_path / "packages")
    client = s.client()
    for name, wheel in stack_wheels.items():
        info = stack_server.client().file_info(wheel.name)
        assert info is not None
        report = info["verify"]
        if name == "mini_vision":
            report = verify_wheel(wheel, load_profile("mini").target(), load_recipes()["mini-vision"]).to_json()
            assert not report["passed"]
        client.upload(wheel, provenance=info["provenance"], verify=report)
    yield s
    stop_server(s)


@pytest.fixture
def browser() -> Iterator[object]:
    if CHROMEDRIVER is None:
        pytest.fail("chromedriver is not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1400",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def test_home_page_shows_the_stack_with_verify_badges_and_no_dead_links(web_index: Server, browser: object) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(web_index.url + "/")  # type: ignore[attr-defined]
    text = driver.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
    for project in ("mini-torch", "mini-vision", "mini-cuda"):
        assert project in text
    badges = {b.text for b in driver.find_elements(By.CSS_SELECTOR, ".badge")}  # type: ignore[attr-defined]
    assert "pass" in badges and "fail: abi" in badges
    assert "needs libminitorch.so" in text  # the failing check's reason, on the page
    assert f"pip install --index-url {web_index.url}/simple/ mini-cuda==0.1.0" in text
    assert "TORCH_CUDA_ARCH_LIST=8.7" in text and re.search(r"cp3\d+-cp3\d+ · linux_", text)
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "index-home.png"))  # type: ignore[attr-defined]
    links = {a.get_attribute("href") for a in driver.find_elements(By.TAG_NAME, "a")}  # type: ignore[attr-defined]
    driver.get(web_index.url + "/profiles/mini")  # type: ignore[attr-defined]
    matrix = driver.find_element(By.TAG_NAME, "table").text  # type: ignore[attr-defined]
    assert re.search(r"mini-vision 0\.1\.0 mini_vision-.*fail: abi", matrix)
    assert re.search(r"mini-torch 1\.0\.0 mini_torch-.* pass agree", matrix)
    driver.save_screenshot(str(ARTIFACTS / "index-profile-mini.png"))  # type: ignore[attr-defined]
    links |= {a.get_attribute("href") for a in driver.find_elements(By.TAG_NAME, "a")}  # type: ignore[attr-defined]
    assert len(links) > 10
    for link in sorted(links):
        with urllib.request.urlopen(link) as r:  # raises on 404
            assert r.status == 200, link


def test_status_summarizes_the_index(web_index: Server) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "jetwheel", "status", "--index", web_index.url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("3 projects, 3 files") and "1 failing" in out
    assert re.search(r"FAIL mini_vision-0\.1\.0-.*\.whl", out)


def test_build_progress_plain_lines_without_a_tty(tmp_path: Path) -> None:
    s = start_server(tmp_path / "packages")
    try:
        env = {**os.environ, "JETWHEEL_INDEX_USER": "ci", "JETWHEEL_INDEX_PASSWORD": "s3cret-pass"}
        r = subprocess.run(
            [sys.executable, "-m", "jetwheel", "build-wheel", "mini-torch", "--profile", "mini", "--index", s.url],
            capture_output=True,
            text=True,
            env=env,
        )
        assert r.returncode == 0, r.stderr
        lines = r.stderr.strip().splitlines()
        # a passing preflight before a real build is one line
        assert re.fullmatch(r"preflight: \d+ checks passed in \d+s", lines[0])
        assert lines[1] == "jetwheel: plan: mini-torch for mini"
        assert re.fullmatch(r"jetwheel: \[1/1\] mini-torch start: mini_torch-1\.0\.0-.*\.whl", lines[2])
        assert "jetwheel: [1/1] mini-torch verified: pass" in lines
        assert any(
            re.fullmatch(r"jetwheel: \[1/1\] mini-torch uploading mini_torch-1\.0\.0-\S+\.whl: [\d,.]+ kB", ln)
            for ln in lines
        )
        assert re.fullmatch(r"jetwheel: \[1/1\] mini-torch published: .* \(\d+\.\ds\)", lines[-1])
        assert "\x1b[" not in r.stderr  # no terminal control codes in logs
    finally:
        stop_server(s)


def test_build_live_view_on_a_terminal(tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    s = start_server(tmp_path / "packages")
    try:
        env = {
            **os.environ,
            "JETWHEEL_INDEX_USER": "ci",
            "JETWHEEL_INDEX_PASSWORD": "s3cret-pass",
            "TERM": "xterm-256color",
            "COLUMNS": "160",
            "LINES": "40",
        }
        child = pexpect.spawn(
            sys.executable,
            ["-m", "jetwheel", "build-wheel", "mini-torch", "--profile", "mini", "--index", s.url],
            env=env,
            encoding="utf-8",
            timeout=180,
            dimensions=(40, 160),
        )
        child.expect("running")  # the step's state while it builds ...
        child.expect(r"\d+s")  # ... with its elapsed time
        child.expect(r"uploading mini_torch-1\.0\.0-\S+ \[#+\] [\d,]+ / [\d,]+ kB")  # the byte progress bar
        child.expect("published")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        screen = child.before or ""
        assert "mini_torch-1.0.0" in screen
    finally:
        stop_server(s)


# -- nothing in a request steers the server (in-process) --------------------------------------------
def _view() -> ProfileView:
    here = Target(f"{sys.version_info.major}.{sys.version_info.minor}", f"linux_{platform.machine()}", "", "")
    return ProfileView("demo", "demo-pkg==1.0", {"demo-pkg": "1.0"}, here)


def test_profile_compatibility_is_checked_on_store_change_from_the_store_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "packages")
    settings = Settings(profiles={"demo": _view()}, url="http://index.lan", check_profiles=True)

    async def main() -> None:
        async with TestClient(TestServer(make_app(store, settings))) as c:
            page = await (await c.get("/profiles/demo")).text()
            assert "not checked yet" in page
            store.add_file(make_wheel(tmp_path, "demo-pkg", "1.0"))
            for _ in range(120):  # the server settles 2 s, then resolves over its own metadata
                await asyncio.sleep(0.5)
                if compat.read(store)[0] == list(store.generation()):
                    break
            page = await (await c.get("/profiles/demo", headers={"Host": "evil.example:1"})).text()
            assert "demo-pkg==1.0 resolves to demo-pkg==1.0" in page, page
            home = await (await c.get("/", headers={"Host": "evil.example:1"})).text()
            assert "pip install --index-url http://index.lan/simple/ demo-pkg==1.0" in home
            assert "evil.example" not in home

    asyncio.run(main())


def test_requests_with_any_host_header_add_nothing_to_the_caches(tmp_path: Path) -> None:
    store = Store(tmp_path / "packages")
    store.add_file(make_wheel(tmp_path, "demo-pkg", "1.0"))
    app = make_app(store, Settings(profiles={"demo": _view()}, url="http://index.lan"))

    async def main() -> None:
        async with TestClient(TestServer(app)) as c:
            for i in range(300):
                host = {"Host": f"h{i}.example"}
                for path in ("/", "/profiles/demo", "/simple/", "/simple/demo-pkg/"):
                    assert (await c.get(path, headers=host)).status == 200
            assert len(app[INDEX].cache.values) <= 3  # simple pages, home, the one profile
            assert not (store.state / "compat.json").exists()  # and no pip ran for any of them

    asyncio.run(main())
