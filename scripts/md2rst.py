#!/usr/bin/env python
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writes the documentation site's versions of the Markdown pages (docs/python-api.md,
docs/awx.md, docs/adopt.md, docs/monitoring.md) into docs/docsite/rst, converted with pandoc (pypandoc-binary, from the docs
virtualenv of scripts/docs.sh, so that every machine converts alike).

    md2rst.py           rewrite the .rst files
    md2rst.py --check   exit 1, naming them, when a .rst file is not what the .md gives
    --root DIR          the collection tree to work on (default: this clone)

On top of pandoc: the page's label (antsibull-docs wants one starting with
ansible_collections.dany.slony.docsite.), an optional title, tables as list-tables (pandoc's
grid tables break long inline code in the middle), links to a section of the page or to
another converted page as :ref:, and no HTML comments (the examples' markers).
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREFIX = "ansible_collections.dany.slony.docsite."
# Markdown file -> (page name in docs/docsite/rst, title or None to keep the Markdown's)
PAGES = {
    "python-api.md": ("python_api", "The Python API"),
    "awx.md": ("awx", None),
    "adopt.md": ("adopt", None),
    "monitoring.md": ("monitoring", None),
}
HEADER = """..
  Generated from docs/{md} by scripts/md2rst.py: edit the Markdown, then run
  DOCS_UPDATE=1 scripts/docs.sh (scripts/docs.sh fails while this file is out of date).

"""


def pandoc_binary():
    import pypandoc  # pylint: disable=import-outside-toplevel
    return pypandoc.get_pandoc_path()


def pandoc(text, columns=92):
    return subprocess.run([pandoc_binary(), "-f", "gfm", "-t", "rst", "--columns=%d" % columns],
                          input=text, capture_output=True, text=True, check=True).stdout


def slug(title):
    return re.sub(r"[^a-z0-9]+", "-", title.lower().replace("`", "")).strip("-")


def table_cells(line):
    cells, current, in_code, i = [], "", False, 0
    body = line.strip()[1:-1]
    while i < len(body):
        char = body[i]
        if char == "\\" and body[i + 1:i + 2] == "|":
            current += "|"
            i += 2
            continue
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(current.strip())
            current = ""
        else:
            current += char
        i += 1
    cells.append(current.strip())
    return cells


def list_table(rows, links):
    out = [".. list-table::", "  :header-rows: 1", ""]
    for row in [rows[0]] + rows[2:]:  # rows[1] is the |---| line
        for number, cell in enumerate(row):
            text = links(pandoc(cell, 80).strip()) if cell else ""
            lines = text.splitlines() or [""]
            out.append(("  * - " if number == 0 else "    - ") + lines[0])
            out.extend(("      " + line) if line else "" for line in lines[1:])
    return "\n".join(out) + "\n"


def convert(root, md_name):
    page, title = PAGES[md_name]
    source = (root / "docs" / md_name).read_text(encoding="utf-8")
    lines = source.splitlines()

    # Sections that the page links to get labels of their own.
    headings = {slug(m.group(2)): m.group(2) for m in (re.match(r"^(#+) (.*)$", line) for line in lines) if m}
    wanted = set(re.findall(r"\]\(#([^)]+)\)", source))
    section_label = {anchor: "%s%s.%s" % (PREFIX, page, anchor) for anchor in wanted if anchor in headings}

    def links(rst):
        def local(match):
            text, anchor = match.group(1), match.group(2)
            if anchor in section_label:
                return ":ref:`%s <%s>`" % (text, section_label[anchor])
            return match.group(0)

        def other_page(match):
            text, md, anchor = match.group(1), match.group(2), match.group(3)
            target_page = PAGES[md][0]
            label = PREFIX + target_page + ("." + anchor if anchor else "")
            return ":ref:`%s <%s>`" % (text, label)

        rst = re.sub(r"`([^`<]+?) <#([^>]+)>`__", local, rst)
        names = "|".join(re.escape(name) for name in PAGES)
        rst = re.sub(r"`([^`<]+?) <(?:docs/)?(%s)(?:#([^>]+))?>`__" % names, other_page, rst)
        return rst

    body, tables, i = [], [], 0
    while i < len(lines):
        if lines[i].startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(table_cells(lines[i]))
                i += 1
            tables.append(list_table(rows, links))
            body.append("DANYTABLE%d" % (len(tables) - 1))
            continue
        heading = re.match(r"^(#+) (.*)$", lines[i])
        if heading and slug(heading.group(2)) in section_label:
            body.extend(["DANYLABEL%s" % slug(heading.group(2)), ""])
        body.append(lines[i])
        i += 1

    rst = pandoc("\n".join(body) + "\n")
    rst = re.sub(r"^\.\. _[^\n]*:\n\n", "", rst, flags=re.M)             # pandoc's own labels
    rst = re.sub(r"^\.\. raw:: html\n\n   <!--[^\n]*-->\n\n", "", rst, flags=re.M)
    rst = rst.replace(".. code:: ", ".. code-block:: ")
    rst = links(rst)
    for number, table in enumerate(tables):
        rst = rst.replace("DANYTABLE%d\n" % number, table)
    for anchor, label in section_label.items():
        rst = rst.replace("DANYLABEL%s\n" % anchor, ".. _%s:\n" % label)
    if title:
        rst = re.sub(r"\A(.*)\n(=+)\n", lambda m: "%s\n%s\n" % (title, "=" * len(title)), rst)
    return HEADER.format(md=md_name) + ".. _%s%s:\n\n" % (PREFIX, page) + rst


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--check", action="store_true", help="only report pages that are out of date")
    parser.add_argument("--root", type=Path, default=REPO, help="the collection tree (default: this clone)")
    args = parser.parse_args()
    root = args.root.resolve()
    stale = []
    for md_name, (page, _title) in PAGES.items():
        target = root / "docs" / "docsite" / "rst" / (page + ".rst")
        text = convert(root, md_name)
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        stale.append(str(target.relative_to(root)))
        if not args.check:
            target.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("md2rst: out of date with docs/*.md: %s" % ", ".join(stale), file=sys.stderr)
        return 1
    for name in stale:
        print("md2rst: wrote %s" % name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
