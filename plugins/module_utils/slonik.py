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


# slonik 2.2.11 aborts (a heap overflow in its scanner: "malloc(): corrupted top size") on
# a string literal longer than about 520 characters; measured on Debian's build, 520 parse
# and 600 abort. Longer texts are not written as literals.
MAX_LITERAL = 500


def fits_a_literal(text):
    """Whether slonik 2.2 can read ``text`` as one string literal."""
    return len(quote(text)) <= MAX_LITERAL


def preamble(name, admin_conninfo, redactor):
    """``cluster name = ...;`` and one ``node N admin conninfo = '...';`` per node, in id
    order, passwords redacted."""
    return ["cluster name = %s;" % name] + [
        "node %d admin conninfo = %s;" % (node, quote(
            redactor.text(redact_conninfo(admin_conninfo[node]))))
        for node in sorted(admin_conninfo)]


__all__ = ["quote", "yes_no", "preamble", "fits_a_literal", "MAX_LITERAL"]
