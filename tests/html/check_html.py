#!/usr/bin/env python3
"""Check the built book (_build/html) in headless Chromium, offline.

Run by ``make test`` after a fresh build (not collected by pytest).  For every
page of ``_toc.yml`` it checks that

* the page loads (HTTP 200) with no console errors and no uncaught exceptions;
* nothing is fetched from outside 127.0.0.1 (every such request is blocked and
  reported: the book must work offline);
* MathJax rendered every math element (``mjx-container`` inside each ``.math``)
  and no raw TeX delimiters (``$$``, ``\\(``, ``\\[``) are left in the text;
* every image loaded (``naturalWidth > 0``);
* no cell output shows stderr, an error or a traceback;
* every same-site link resolves (HTTP 200) and its ``#anchor`` exists;
* chapter pages (notebooks) have Binder, Colab and Live Code (Thebe) launch
  buttons pointing at the repository and branch of ``_config.yml``;

and saves a full-page screenshot to ``_build/screenshots/<page>.png``.

Usage: ``python tests/html/check_html.py [--html _build/html] [--shots _build/screenshots]``.
Exit status 0 when every check passed; the last line reads
``html-checks: N passed, M failed``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
MATHJAX_TIMEOUT_MS = 30_000


# --------------------------------------------------------------------------- toc

def toc_pages(toc_path: Path) -> list[tuple[str, str]]:
    """``(docname, source suffix)`` of every page in a jb-book ``_toc.yml``, in order."""
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts") or [{"chapters": toc.get("chapters")}]:
        walk(part.get("chapters"))
    pages = []
    for f in files:
        stem = re.sub(r"\.(md|ipynb|rst)$", "", f)
        suffix = next((s for s in (".ipynb", ".md", ".rst") if (ROOT / f"{stem}{s}").exists()), "")
        pages.append((stem, suffix))
    return pages


def repository_setting() -> tuple[str, str]:
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = cfg["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


# ------------------------------------------------------------------------ server

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the report readable
        pass


def serve(directory: Path):
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class _IdCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("id", "name") and v:
                self.ids.add(v)


@functools.cache
def fetch(url: str) -> tuple[int, frozenset]:
    """HTTP status of a local URL and, for HTML, the ids it defines."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read()
            status = resp.status
            ctype = resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, frozenset()
    ids = set()
    if "html" in ctype:
        p = _IdCollector()
        p.feed(body.decode("utf-8", "replace"))
        ids = p.ids
    return status, frozenset(ids)


# ------------------------------------------------------------------------ checks

class Report:
    def __init__(self):
        self.passed = 0
        self.failures: list[str] = []

    def check(self, page: str, name: str, ok: bool, detail: str = ""):
        if ok:
            self.passed += 1
        else:
            self.failures.append(f"{page}: {name}: {detail}")
            print(f"  FAIL {name}: {detail}", flush=True)


JS_MATH = """
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const math = Array.from(document.querySelectorAll('.math'));
  const unrendered = math.filter(el => !el.querySelector('mjx-container'))
                         .map(el => el.textContent.slice(0, 60));
  const body = document.querySelector('main') || document.body;
  const clone = body.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, mjx-container, textarea, .highlight')
       .forEach(el => el.remove());
  const text = clone.textContent;
  const raw = ['$$', '\\\\(', '\\\\)', '\\\\[', '\\\\]', '\\\\begin{']
      .filter(tok => text.includes(tok));
  return {n_math: math.length, n_rendered: document.querySelectorAll('mjx-container').length,
          unrendered: unrendered, raw: raw, mathjax: !!(window.MathJax && MathJax.version),
          version: (window.MathJax && MathJax.version) || null};
}
"""

JS_IMAGES = """
async () => {
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map(img => img.complete ? null :
      new Promise(res => { img.addEventListener('load', res); img.addEventListener('error', res); })));
  return imgs.map(img => ({src: img.getAttribute('src'), ok: img.complete && img.naturalWidth > 0}));
}
"""

JS_OUTPUT_ERRORS = r"""
() => {
  const bad = [];
  const sel = '.cell_output .stderr, .cell_output .traceback, .cell_output .error, ' +
              '.cell_output [class*="error"], .output.stderr, .output.traceback, .output.error';
  document.querySelectorAll(sel).forEach(el => bad.push(el.className + ': ' + el.textContent.slice(0, 120)));
  document.querySelectorAll('.cell_output').forEach(el => {
    const t = el.textContent;
    const m = t.match(/Traceback \(most recent call last\)|\b[A-Z]\w*(Error|Exception|Warning):/);
    if (m) bad.push('text "' + m[0] + '": ' + t.slice(0, 120));
  });
  return bad;
}
"""

JS_LINKS = """
() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)
"""


def check_links(report: Report, page: str, base: str, hrefs: list[str]):
    seen = set()
    broken = []
    for href in hrefs:
        parts = urllib.parse.urlsplit(href)
        if parts.scheme not in ("http", "https") or parts.hostname not in LOCAL_HOSTS:
            continue
        if not href.startswith(base):
            continue
        target = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
        key = (target, parts.fragment)
        if key in seen:
            continue
        seen.add(key)
        status, ids = fetch(target)
        if status != 200:
            broken.append(f"{href} (HTTP {status})")
        elif parts.fragment and urllib.parse.unquote(parts.fragment) not in ids:
            broken.append(f"{href} (no anchor #{parts.fragment})")
    report.check(page, f"internal links ({len(seen)})", not broken, "; ".join(broken))


def check_launch_buttons(report: Report, page, docname: str, suffix: str, repo: str, branch: str):
    org_repo = urllib.parse.urlsplit(repo).path.strip("/")
    src = f"{docname}{suffix}"
    expected = {
        "Binder": f"mybinder.org/v2/gh/{org_repo}/{branch}?urlpath=",
        "Colab": f"colab.research.google.com/github/{org_repo}/blob/{branch}/{src}",
    }
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    for name, needle in expected.items():
        ok = any(needle in h and (name != "Binder" or h.endswith(src)) for h in hrefs)
        report.check(docname, f"launch button {name}", ok, f"no link containing {needle!r}")
    thebe = page.query_selector("button.btn-launch-thebe, [onclick*='initThebe']")
    report.check(docname, "launch button Live Code (Thebe)", thebe is not None, "no Thebe button")
    cfg = page.evaluate("() => (document.querySelector('script[type=\"text/x-thebe-config\"]') || {}).textContent || ''")
    ok = f'repo: "{org_repo}"' in cfg and f'ref: "{branch}"' in cfg
    report.check(docname, "Thebe kernel from the repository setting", ok,
                 f"x-thebe-config does not name {org_repo}@{branch}")


def run(html_dir: Path, shots_dir: Path) -> int:
    from playwright.sync_api import sync_playwright

    if not (html_dir / "index.html").exists():
        print(f"html-checks: {html_dir}/index.html not found; build the book first (make book)")
        return 2
    if not Path(CHROMIUM).exists():
        print(f"html-checks: {CHROMIUM} not found (apt-get install -y chromium)")
        return 2
    pages = toc_pages(ROOT / "_toc.yml")
    repo, branch = repository_setting()
    if shots_dir.exists():
        shutil.rmtree(shots_dir)
    shots_dir.mkdir(parents=True)

    server, base = serve(html_dir)
    report = Report()
    blocked: list[str] = []
    print(f"html-checks: {len(pages)} pages from _toc.yml, served at {base}, non-local requests blocked")
    with tempfile.TemporaryDirectory(prefix="tdcore-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900}, service_workers="block")

        def route(route_obj):
            host = urllib.parse.urlsplit(route_obj.request.url).hostname
            if host in LOCAL_HOSTS or route_obj.request.url.startswith(("data:", "blob:")):
                route_obj.continue_()
            else:
                blocked.append(route_obj.request.url)
                route_obj.abort("blockedbyclient")

        context.route("**/*", route)
        try:
            for docname, suffix in pages:
                print(f"- {docname}{suffix}", flush=True)
                page = context.new_page()
                console_errors, page_errors, failed = [], [], []
                page.on("console", lambda m, ce=console_errors: ce.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e, pe=page_errors: pe.append(str(e)))
                page.on("requestfailed", lambda r, f=failed: f.append(f"{r.url} ({r.failure})"))
                n_blocked = len(blocked)
                resp = page.goto(base + f"{docname}.html", wait_until="load")
                status = resp.status if resp else None
                report.check(docname, "HTTP 200", status == 200, f"status {status}")
                page.wait_for_load_state("networkidle")

                math = page.evaluate(JS_MATH)
                if math["n_math"]:
                    report.check(docname, "MathJax loaded", math["mathjax"], "window.MathJax missing")
                    report.check(docname, f"math rendered ({math['n_math']} elements)",
                                 not math["unrendered"], f"unrendered: {math['unrendered'][:3]}")
                report.check(docname, "no raw TeX delimiters", not math["raw"], f"found {math['raw']}")

                imgs = page.evaluate(JS_IMAGES)
                bad_imgs = [i["src"] for i in imgs if not i["ok"]]
                report.check(docname, f"images load ({len(imgs)})", not bad_imgs, f"broken: {bad_imgs}")

                errs = page.evaluate(JS_OUTPUT_ERRORS)
                report.check(docname, "no errors in cell outputs", not errs, "; ".join(errs[:3]))

                check_links(report, docname, base, page.evaluate(JS_LINKS))
                if suffix == ".ipynb":
                    check_launch_buttons(report, page, docname, suffix, repo, branch)

                page.wait_for_timeout(200)
                local_failed = [f for f in failed if urllib.parse.urlsplit(f).hostname in LOCAL_HOSTS]
                report.check(docname, "local requests succeed", not local_failed, "; ".join(local_failed[:5]))
                report.check(docname, "no non-local requests", len(blocked) == n_blocked,
                             "; ".join(blocked[n_blocked:][:5]))
                real_console = [c for c in console_errors if "net::ERR_BLOCKED_BY_CLIENT" not in c]
                report.check(docname, "no console errors", not real_console, "; ".join(real_console[:5]))
                report.check(docname, "no uncaught exceptions", not page_errors, "; ".join(page_errors[:5]))

                shot = shots_dir / f"{docname.replace('/', '__')}.png"
                page.screenshot(path=str(shot), full_page=True)
                report.check(docname, "screenshot", shot.stat().st_size > 0, str(shot))
                page.close()
        finally:
            context.close()
            server.shutdown()

    print()
    if report.failures:
        print("FAILED checks:")
        for f in report.failures:
            print(f"  {f}")
    print(f"screenshots: {shots_dir.relative_to(ROOT) if shots_dir.is_relative_to(ROOT) else shots_dir}")
    print(f"html-checks: {report.passed} passed, {len(report.failures)} failed")
    return 1 if report.failures else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    ap.add_argument("--shots", type=Path, default=ROOT / "_build" / "screenshots")
    args = ap.parse_args(argv)
    return run(args.html.resolve(), args.shots.resolve())


if __name__ == "__main__":
    sys.exit(main())
