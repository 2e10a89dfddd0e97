"""The gallery in a real browser: headless Chromium loads each page type of the tiny site (`site`, conftest.py).

Per page: no script error or failed resource load (a collector injected at the top of a copy of the page, read
back with --dump-dom, and Chromium's console log), every <img> decoded (naturalWidth > 0); on the layer page
the unit table sorts and filters when its header is clicked and its filter typed into; a screenshot of each
page type is written under the test's tmp dir (not committed).
"""
import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

#: Injected first thing in <head>: collect errors (scripts, failed image loads, console.error).
COLLECT = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(e.message || ("failed to load " + (e.target && (e.target.src || e.target.href))));
}, true);
(function () { var original = console.error; console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, " ")); original.apply(console, arguments); }; })();
</script>"""

#: Injected before </body>: after load, write what was found into attributes of <body>.
REPORT = """<script>
window.addEventListener("load", function () {
  var b = document.body, images = Array.prototype.slice.call(document.images);
  b.setAttribute("data-images", images.length);
  b.setAttribute("data-broken", JSON.stringify(images.filter(function (i) {
    return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.src; })));
  var t = document.getElementById("units");
  if (t) {
    var heads = Array.prototype.slice.call(t.tHead.rows[0].cells);
    var col = heads.findIndex(function (h) { return h.getAttribute("data-col") === "max_activation"; });
    var order = function () { return Array.prototype.map.call(t.tBodies[0].rows, function (r) {
      return r.cells[1].textContent; }); };
    heads[col].click();
    var ascending = order();
    heads[col].click();
    var descending = order();
    var box = document.getElementById("unit-filter");
    box.value = "unit=1";
    box.dispatchEvent(new Event("input"));
    var shown = Array.prototype.filter.call(t.tBodies[0].rows, function (r) { return r.style.display !== "none"; });
    b.setAttribute("data-table", JSON.stringify({ascending: ascending, descending: descending,
      shown: shown.map(function (r) { return r.cells[1].textContent; }),
      count: document.getElementById("unit-count").textContent}));
  }
  b.setAttribute("data-errors", JSON.stringify(window.__errors));
});
</script>"""

PAGES = {"index": "index.html", "layer": "layers/features.0.html", "unit": "units/features.0/1.html",
         "model": "model.html"}


def chromium(page: Path, profile: Path, *options) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", *options, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def attribute(dom: str, name: str):
    found = re.search(rf'{name}="([^"]*)"', dom)
    assert found, f"{name} missing: the page's scripts did not run to the end"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def load(root: Path, page: str, profile: Path) -> tuple[str, str]:
    """The page, with the collector and the report injected, as Chromium's DOM after load; and its log."""
    original = root / page
    probe = original.with_name(f"_check_{original.name}")        # same folder: relative links resolve alike
    text = original.read_text()
    assert "<head>" in text and "</body>" in text
    probe.write_text(text.replace("<head>", "<head>" + COLLECT, 1).replace("</body>", REPORT + "</body>"))
    try:
        run = chromium(probe, profile, "--dump-dom")
    finally:
        probe.unlink()
    return run.stdout, run.stderr


@pytest.mark.parametrize("kind", list(PAGES))
def test_page_loads_without_errors_and_every_image_decodes(site, tmp_path, kind):
    root, _ = site
    dom, log = load(root, PAGES[kind], tmp_path / "profile")
    assert attribute(dom, "data-errors") == []
    console = [line for line in log.splitlines() if "CONSOLE" in line and re.search(r"error|uncaught", line, re.I)]
    assert console == []
    assert attribute(dom, "data-broken") == []
    images = attribute(dom, "data-images")
    assert images >= {"index": 2, "layer": 2, "unit": 4, "model": 0}[kind]
    assert dom.count("<svg") >= {"index": 0, "layer": 8, "unit": 3, "model": 3}[kind]
    shot = tmp_path / f"{kind}.png"
    chromium(root / PAGES[kind], tmp_path / "profile", f"--screenshot={shot}", "--window-size=1100,1400",
             "--hide-scrollbars")
    assert shot.stat().st_size > 20_000, "a blank screenshot"


def test_unit_table_sorts_and_filters_in_the_browser(site, tmp_path):
    root, _ = site
    dom, _ = load(root, PAGES["layer"], tmp_path / "profile")
    table = attribute(dom, "data-table")
    with open(root / "units.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["layer"] == "features.0"]
    by_value = [r["unit"] for r in sorted(rows, key=lambda r: float(r["max_activation"]))]
    assert len(set(r["max_activation"] for r in rows)) == len(rows) >= 2      # a sort that can be seen
    assert table["ascending"] == by_value
    assert table["descending"] == by_value[::-1]
    assert table["shown"] == ["1"] and table["count"] == f"1 of {len(rows)} units"
