# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writing the equivalent slonik text that plans show next to their SQL."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .conninfo import redact_conninfo


def quote(text):
    """A slonik string literal: ``'`` and ``\\`` doubled, as slonik itself quotes."""
    return "'%s'" % text.replace("\\", "\\\\").replace("'", "''")


def yes_no(flag):
    """slonik's boolean words."""
    return "yes" if flag else "no"


def preamble(name, admin_conninfo, redactor):
    """``cluster name = ...;`` and one ``node N admin conninfo = '...';`` per node, in id
    order, passwords redacted."""
    return ["cluster name = %s;" % name] + [
        "node %d admin conninfo = %s;" % (node, quote(
            redactor.text(redact_conninfo(admin_conninfo[node]))))
        for node in sorted(admin_conninfo)]


__all__ = ["quote", "yes_no", "preamble"]
