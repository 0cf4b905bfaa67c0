# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writing the equivalent slonik text that plans show next to their SQL."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def quote(text):
    """A slonik string literal: ``'`` and ``\\`` doubled, as slonik itself quotes."""
    return "'%s'" % text.replace("\\", "\\\\").replace("'", "''")


def yes_no(flag):
    """slonik's boolean words."""
    return "yes" if flag else "no"


__all__ = ["quote", "yes_no"]
