"""Remake the docs' pictures of the report's sections from a graded demo class (`make demo`):
``.venv/bin/python docs/screenshots.py [picture.png ...]`` (all of them by default; needs Debian's
chromium and chromium-driver). COURSE=<folder> takes the reports of a course graded elsewhere
(this repository's by default)."""
import io
import os
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from browser import chromium  # noqa: E402 - the tests' WebDriver client

# (picture, page, heading the section starts with, or None for the page's top)
SECTIONS = [
    ("report_scores.png", "reports/ps1/report.html", "Scores"),
    ("report_mistakes.png", "reports/ps1/report.html", "What the class got wrong"),
    ("report_changes.png", "reports/ps1/report.html", "Changes since the last grading"),
    ("report_similar.png", "reports/ps1/report.html", "Similar answers"),
    ("similarity_pair.png", "reports/ps1/similarity.html", None),
]
# the section's box: from its heading to the next heading of the same or a higher level
BOX = """
const level = h => Number(h.tagName[1]);
const heads = [...document.querySelectorAll('h1, h2, h3')];
const start = arguments[0] === null ? heads[0] : heads.find(h => h.textContent.trim().startsWith(arguments[0]));
const after = heads.slice(heads.indexOf(start) + 1).find(h => level(h) <= level(start) && h.tagName !== 'H3');
const top = start.getBoundingClientRect().top - 8;
const bottom = Math.min(after ? after.getBoundingClientRect().top - 4 : document.body.scrollHeight, top + 900);
return [top, bottom];
"""


def main(pictures=()):
    with chromium(width=1100, height=6000) as browser:
        for picture, page, heading in [section for section in SECTIONS if not pictures or section[0] in pictures]:
            browser.open((Path(os.environ.get("COURSE", ROOT)) / page).as_uri())
            top, bottom = browser.run(BOX, heading)
            path = ROOT / "docs" / "images" / picture
            browser.screenshot(path)
            image = Image.open(io.BytesIO(path.read_bytes()))
            image.crop((0, int(top), image.width, int(bottom))).save(path, optimize=True)
            print(path.relative_to(ROOT), f"{image.width} x {int(bottom - top)}")


if __name__ == "__main__":
    main(sys.argv[1:])
