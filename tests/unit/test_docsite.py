# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The documentation site's pages generated from Markdown (docs/python-api.md, docs/awx.md,
by scripts/md2rst.py) have the same code examples as their Markdown originals - a quick
check without pandoc; scripts/docs.sh compares the whole pages - and every guide of
docs/docsite/rst is in the site's table of contents (docs/docsite/extra-docs.yml)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCSITE = REPO / "docs" / "docsite"
CONVERTED = [("python-api.md", "python_api.rst"), ("awx.md", "awx.rst"), ("adopt.md", "adopt.rst"),
             ("monitoring.md", "monitoring.rst")]


def markdown_code_blocks(text):
    return [textwrap.dedent(body).rstrip("\n")
            for body in re.findall(r"^ *```[\w+-]*\n(.*?)^ *```$", text, flags=re.M | re.S)]


def rst_code_blocks(text):
    blocks = []
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^( *)\.\. code-block::", line)
        if not match:
            continue
        indent = len(match.group(1))
        body = []
        for following in lines[number + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        blocks.append(textwrap.dedent("\n".join(body)).strip("\n"))
    return blocks


@pytest.mark.parametrize(("markdown", "rst"), CONVERTED)
def test_converted_page_has_the_same_code_as_its_markdown(markdown, rst):
    expected = markdown_code_blocks((REPO / "docs" / markdown).read_text(encoding="utf-8"))
    assert expected, "no code block found in docs/%s" % markdown
    found = rst_code_blocks((DOCSITE / "rst" / rst).read_text(encoding="utf-8"))
    assert found == expected, "the code blocks of docs/docsite/rst/%s differ from docs/%s" % (rst, markdown)


def test_every_guide_is_in_the_table_of_contents():
    index = yaml.safe_load((DOCSITE / "extra-docs.yml").read_text(encoding="utf-8"))
    listed = [entry if isinstance(entry, str) else entry["ref"]
              for section in index["sections"] for entry in section["toctree"]]
    pages = sorted(path.stem for path in (DOCSITE / "rst").glob("*.rst"))
    assert sorted(listed) == pages
    assert len(set(listed)) == len(listed), "a guide is listed twice"
