"""The site as a reader meets it: every page of the built book in headless Chromium.

The book is built once (``book`` fixture, warnings as errors) and served on 127.0.0.1; each page
of ``_toc.yml`` is opened at 1280 px (a laptop) and 390 px (a phone) with every request to
another host refused and recorded. A page passes when it shows no console error, asks nothing of
another host, loads every image, numbers and captions every figure, typesets every equation,
fits its code and outputs in the text column (1280 px), keeps every display equation readable on
a phone (scrollable, its number not over it) and links only to pages and anchors that exist.
Search results must not show the TeX source of equations. A full-page screenshot of each page
and width is saved under ``_build/screenshots/`` for a human look (not committed).
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "_build" / "screenshots"
WIDTHS = (1280, 390)


def _toc_pages() -> list[str]:
    """Every page of the table of contents, as its path without suffix (``chapters/intro``)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            pages.append(chapter["file"])
            pages.extend(section["file"] for section in chapter.get("sections", []))
    return pages


PAGES = _toc_pages()

# One evaluation in the page measures everything the checks need (all geometry in CSS px).
_MEASURE = """() => {
  const article = document.querySelector("article.bd-article") || document.querySelector("main");
  const column = article.getBoundingClientRect().width;
  const box = (el) => el.getBoundingClientRect();
  const text = (el) => (el.innerText || "").trim().replace(/\\s+/g, " ").slice(0, 60);
  const wide = [];
  for (const el of article.querySelectorAll(
      "div.cell, div.highlight pre, div.cell_output, div.cell_output pre, table")) {
    if (el.scrollWidth > el.clientWidth + 1 || box(el).right > box(article).right + 1) {
      wide.push(`${el.tagName.toLowerCase()}.${el.className}: ${el.scrollWidth} px > `
                + `${el.clientWidth} px: ${text(el)}`);
    }
  }
  const images = [...article.querySelectorAll("img")].map((img) => {
    const figure = img.closest("figure");
    const caption = figure && figure.querySelector("figcaption");
    const number = caption && caption.querySelector(".caption-number");
    return {src: img.getAttribute("src"), loaded: img.complete && img.naturalWidth > 0,
            natural: img.naturalWidth, shown: box(img).width,
            caption: caption ? text(caption) : null,
            number: number ? number.innerText.trim() : null};
  });
  const equations = [...article.querySelectorAll("div.math")].map((div) => {
    const math = div.querySelector("mjx-container");
    const number = div.querySelector(".eqno");
    const scrolls = ["auto", "scroll"].includes(getComputedStyle(div).overflowX);
    let overlap = false;
    if (math && number) {
      const a = box(math), b = box(number);
      overlap = a.left < b.right - 1 && b.left < a.right - 1
                && a.top < b.bottom - 1 && b.top < a.bottom - 1;
    }
    return {typeset: !!math, clipped: div.scrollWidth > div.clientWidth + 1 && !scrolls,
            overlap, text: text(div)};
  });
  const links = [...document.querySelectorAll("a[href]")].map((a) => a.href);
  const download = [...document.querySelectorAll("a.btn-download-source-button")]
    .map((a) => a.getAttribute("href"));
  return {column, wide, images, equations, links, download,
          merror: document.querySelectorAll("mjx-merror").length,
          visibleNbval: /NBVAL/.test(article.innerText)};
}"""


@pytest.fixture(scope="module")
def site(book):
    """Serve the built HTML on 127.0.0.1 (a free port); yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _open(browser, url: str, base: str, width: int):
    """Open ``url`` in a fresh context; return (page, context, console errors, foreign URLs)."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    errors, foreign = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(request_route):
        url = request_route.request.url
        if url.startswith(base) or url.startswith("data:"):
            request_route.continue_()
        else:
            foreign.append(url)
            request_route.abort()

    page.route("**/*", route)
    page.goto(url, wait_until="load", timeout=120_000)
    if page.evaluate("() => !!document.querySelector('script[src*=\"mathjax\" i]')"):
        page.wait_for_function("() => window.MathJax?.startup?.promise", timeout=120_000)
        page.evaluate("() => MathJax.startup.promise")
    return page, context, errors, foreign


def _missing_targets(book: Path, page_path: str, links: list[str], base: str) -> list[str]:
    """Internal links whose file or anchor does not exist in the built site."""
    missing = []
    for link in links:
        if not link.startswith(base):
            continue
        parts = urlsplit(link)
        target = book / unquote(parts.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            missing.append(f"{link} (no file)")
            continue
        if parts.fragment and target.suffix == ".html":
            html = target.read_text(errors="replace")
            anchor = re.escape(unquote(parts.fragment))
            if not re.search(rf'\b(id|name)="{anchor}"', html):
                missing.append(f"{link} (no anchor on {page_path})")
    return sorted(set(missing))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("page_path", PAGES)
def test_page_reads_well_in_a_browser(book, site, browser, page_path, width):
    url = f"{site}/{page_path}.html"
    page, context, errors, foreign = _open(browser, url, site, width)
    try:
        found = page.evaluate(_MEASURE)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = page_path.replace("/", "_")
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True,
                        timeout=120_000)             # long pages on a loaded machine
    finally:
        context.close()

    assert errors == [], f"console errors on {page_path}: {errors}"
    assert foreign == [], f"{page_path} asked another host for {foreign}"
    assert found["merror"] == 0, f"{page_path}: {found['merror']} equations failed to typeset"
    untypeset = [e["text"] for e in found["equations"] if not e["typeset"]]
    assert untypeset == [], f"{page_path}: display equations left as TeX: {untypeset}"
    assert not found["visibleNbval"], f"{page_path}: an NBVAL marker is visible to readers"
    for image in found["images"]:
        assert image["loaded"], f"{page_path}: image {image['src']} did not load"
        assert image["number"] and image["number"].startswith("Fig."), \
            f"{page_path}: image {image['src']} is not a numbered figure ({image['caption']!r})"
        assert len(image["caption"]) > len(image["number"]) + 10, \
            f"{page_path}: figure {image['number']} has no real caption: {image['caption']!r}"
    if (ROOT / f"{page_path}.ipynb").is_file():     # a notebook page offers its notebook
        assert any(href.endswith(f"_sources/{page_path}.ipynb") for href in found["download"]), \
            f"{page_path}: no download of the notebook ({found['download']})"
    missing = _missing_targets(book, page_path, found["links"], site)
    assert missing == [], f"{page_path}: links to nothing: {missing}"
    if width >= 1000:
        assert found["wide"] == [], \
            f"{page_path} at {width} px: wider than the {found['column']:.0f} px column: " \
            f"{found['wide']}"
        for image in found["images"]:              # sharp: at least 1.5 pixels per CSS px
            assert image["natural"] >= 1.5 * image["shown"] - 1, \
                f"{page_path}: {image['number']} is blurred ({image['natural']} px shown " \
                f"over {image['shown']:.0f} CSS px)"
    else:
        clipped = [e["text"] for e in found["equations"] if e["clipped"]]
        assert clipped == [], f"{page_path} at {width} px: equations cut off: {clipped}"
        covered = [e["text"] for e in found["equations"] if e["overlap"]]
        assert covered == [], f"{page_path} at {width} px: numbers over equations: {covered}"


@pytest.mark.parametrize("term", ["Jacobian", "spectral radius"])
def test_search_snippets_show_no_tex_source(site, browser, term):
    page, context, errors, foreign = _open(browser, f"{site}/search.html?q={term}", site, 1280)
    try:
        page.wait_for_function(
            "() => { const r = document.querySelectorAll('ul.search li');"
            " return r.length > 0 && [...r].every(li => li.querySelector('p.context')); }",
            timeout=30_000)
        snippets = page.eval_on_selector_all("ul.search li p.context",
                                             "els => els.map(e => e.innerText)")
    finally:
        context.close()
    assert errors == [] and foreign == []
    assert snippets, f"searching {term!r} found nothing"
    tex = [s for s in snippets if re.search(r"\\[a-zA-Z]+|\\\(|\\\[|\$\$", s)]
    assert tex == [], f"search snippets show TeX source: {tex}"
