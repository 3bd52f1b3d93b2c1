"""The built site in a real browser (Debian's Chromium, headless, through
selenium and chromedriver), and every internal link of every page.

Screenshots of the pages checked go to ``$TRIOSTREAM_DOCS_SCREENSHOTS`` (a
directory; default: pytest's temporary directory), named after the page.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse
from urllib.request import urlopen

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

#: The pages a reader opens first, and the one generated from every docstring.
PAGES = ["index.html", "tutorial.html", "reference/api.html"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "the browser check needs Debian's chromium and chromium-driver (.ci/run installs them)"
    )
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,1400")
    # The given chromedriver, never one selenium would download.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("TRIOSTREAM_DOCS_SCREENSHOTS")
    path = Path(given) if given else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


# What the page looks like once rendered: its stylesheets loaded (each with
# rules: a 404 or an empty file has none), the theme's layout applied (furo's
# sidebar beside the content, its font instead of the browser's serif), a
# title, and every image decoded.
RENDER_CHECK = """
const sheets = Array.from(document.styleSheets).map(s => {
    let rules = -1;
    try { rules = s.cssRules.length; } catch (e) { rules = -2; }
    return {href: s.href, rules: rules};
});
const sidebar = document.querySelector('.sidebar-drawer');
const content = document.querySelector('article[role=main], .content, main');
const images = Array.from(document.images).map(i => ({src: i.src, ok: i.complete && i.naturalWidth > 0}));
return {
    ready: document.readyState,
    sheets: sheets,
    bodyFont: getComputedStyle(document.body).fontFamily,
    sidebarVisible: !!sidebar && getComputedStyle(sidebar).display !== 'none'
        && sidebar.getBoundingClientRect().width > 100,
    contentLeft: content ? content.getBoundingClientRect().left : -1,
    h1: (document.querySelector('h1') || {}).textContent || '',
    images: images,
    width: document.documentElement.scrollWidth,
};
"""


@pytest.mark.parametrize("page", PAGES)
def test_the_page_renders_with_the_theme(
    page: str, site_url: str, browser: webdriver.Chrome, screenshots: Path
) -> None:
    browser.get(urljoin(site_url, page))
    state = browser.execute_script(RENDER_CHECK)
    shot = screenshots / (page.replace("/", "_").removesuffix(".html") + ".png")
    assert browser.save_screenshot(str(shot)), "no screenshot"
    print(f"screenshot: {shot}")
    assert state["ready"] == "complete"
    local = [s for s in state["sheets"] if s["href"] and s["href"].startswith(site_url)]
    assert local, "no stylesheet of the site's own"
    assert all(s["rules"] > 0 for s in local), f"a stylesheet did not load: {local}"
    font = state["bodyFont"].strip().lower()
    assert "times" not in font and font != "serif", f"the browser's default font: {font}"
    assert state["sidebarVisible"], "the navigation sidebar is not laid out beside the content"
    assert state["contentLeft"] > 100, "the content does not start right of the sidebar"
    assert state["h1"].strip(), "no title"
    assert all(image["ok"] for image in state["images"]), f"an image did not load: {state['images']}"
    assert state["width"] <= 1280, "the page scrolls sideways"
    assert shot.stat().st_size > 10_000, "an empty-looking screenshot"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "a" and values.get("href"):
            self.hrefs.append(str(values["href"]))
        if tag in ("link", "script", "img") and (values.get("href") or values.get("src")):
            self.hrefs.append(str(values.get("href") or values.get("src")))


def _parse(url: str) -> _Links:
    with urlopen(url, timeout=30) as response:
        assert response.status == 200, url
        parser = _Links()
        parser.feed(response.read().decode())
        return parser


def test_no_internal_link_is_broken(site: Path, site_url: str) -> None:
    """Every page of the site, every link, stylesheet, script and image that
    stays on the site: the target exists, and so does its #fragment."""
    pages = sorted(str(p.relative_to(site)) for p in site.rglob("*.html") if "_modules" not in p.parts)
    assert len(pages) >= 20, pages
    parsed: dict[str, _Links] = {}

    def links_of(url: str) -> _Links:
        if url not in parsed:
            parsed[url] = _parse(url)
        return parsed[url]

    broken: list[str] = []
    for page in pages:
        url = urljoin(site_url, page)
        links = links_of(url)
        for href in links.hrefs:
            target = urljoin(url, href)
            if not target.startswith(site_url) or urlparse(href).scheme in ("mailto", "javascript"):
                continue  # outside the site: intersphinx and external links are not checked offline
            base, fragment = urldefrag(target)
            path = site / urlparse(base).path.removeprefix(urlparse(site_url).path)
            if base.endswith("/"):
                path = path / "index.html"
            if not path.is_file():
                broken.append(f"{page}: {href} (no file)")
                continue
            if fragment and path.suffix == ".html" and fragment not in links_of(base).ids:
                broken.append(f"{page}: {href} (no #{fragment})")
    assert not broken, "\n".join(broken)
