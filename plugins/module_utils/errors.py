# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception type of the core."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class SlonyError(Exception):
    """A failure the user must act on.

    ``node`` is the node the failure happened on (or ``None``), ``queries`` the
    statements that had already been executed (redacted), so a caller can tell
    what was changed before the failure.
    """

    def __init__(self, message, node=None, queries=None, sqlstate=None):
        super(SlonyError, self).__init__(message)
        self.message = message
        self.node = node
        self.queries = list(queries or [])
        self.sqlstate = sqlstate  # the SQLSTATE of the database error behind it, if any

    def __str__(self):
        return self.message
