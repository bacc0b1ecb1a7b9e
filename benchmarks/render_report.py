"""Render a report's index.html in headless Chromium: a screenshot and a DOM check.

Usage::

    python benchmarks/render_report.py reports/<run-id>/index.html [--out shot.png]
    python benchmarks/render_report.py --fake          # build a report from a fake run first

It loads the page with networking effectively off (the page must be self-contained), takes a
full-width screenshot, dumps the rendered DOM and checks that it holds the ranked tables,
every figure as an inline PNG, and no reference to an external resource. Exits 1 naming what
is missing. Needs Debian's ``chromium`` (``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("error: no chromium found; install it with `apt-get install -y chromium`")


def run(html: Path, args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args, html.resolve().as_uri()]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check_dom(dom: str, expect_methods: list[str]) -> list[str]:
    """Problems with the rendered page (empty list when it is complete)."""
    problems = []
    if "<table class=\"rank\"" not in dom and "<table class='rank'" not in dom:
        problems.append("no ranked table")
    imgs = re.findall(r"<img[^>]*src=\"([^\"]*)\"", dom)
    if not imgs:
        problems.append("no figure")
    problems += [f"figure not inlined: {src[:60]}" for src in imgs
                 if not src.startswith("data:image/png;base64,")]
    external = re.findall(r"(?:src|href)=\"(https?:[^\"]+)\"", dom)
    problems += [f"external resource: {url}" for url in external]
    problems += [f"method {m!r} missing" for m in expect_methods if m not in dom]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", nargs="?", type=Path, help="a report's index.html")
    parser.add_argument("--fake", action="store_true",
                        help="build a report from a fabricated results folder first")
    parser.add_argument("--out", type=Path, default=Path("report-screenshot.png"),
                        help="screenshot file (default: report-screenshot.png)")
    parser.add_argument("--width", type=int, default=1360, help="window width (default 1360)")
    parser.add_argument("--height", type=int, default=6000,
                        help="window height, the screenshot's length (default 6000)")
    parser.add_argument("--expect", nargs="*", default=[], help="method names the page must show")
    args = parser.parse_args(argv)

    html = args.html
    if args.fake:
        from mribench.report import build_report
        from mribench.testing import make_fake_results

        root = Path(tempfile.mkdtemp(prefix="mribench-fake-"))
        run_dir = make_fake_results(root / "20240101-000000-fake-quick")
        html = build_report(run_dir, out_dir=root / "report")
        args.expect = args.expect or ["glcm-svm", "unet", "unet+crf", "two-pathway-cnn",
                                      "fcm-cluster"]
        print(f"fake report: {html}")
    if html is None or not html.is_file():
        parser.error("give a report's index.html, or --fake")

    shot = run(html, [f"--screenshot={args.out.resolve()}",
                      f"--window-size={args.width},{args.height}"])
    if not args.out.is_file():
        print(shot.stderr[-2000:], file=sys.stderr)
        return 1
    dom = run(html, ["--dump-dom"]).stdout
    problems = check_dom(dom, args.expect)
    for p in problems:
        print(f"problem: {p}")
    print(f"screenshot: {args.out} ({args.width}x{args.height}); "
          f"{len(re.findall('<img', dom))} figures; {len(re.findall('<table', dom))} tables")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
