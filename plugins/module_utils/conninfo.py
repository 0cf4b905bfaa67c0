# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libpq conninfo handling and redaction of secrets.

Conninfo strings are parsed and rebuilt with psycopg2 (``parse_dsn`` and
``make_dsn``), never by hand. Anything that leaves the core (returned SQL,
slonik text, error messages) goes through :class:`Redactor`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from .pg import make_dsn, parse_dsn

from .errors import SlonyError

REDACTED = "********"

# The libpq parameters that hold secrets: the password, and the one of the client key.
SECRET_PARAMS = ("password", "sslpassword")

# Last line of defence for text we could not parse: key=value and URI forms.
# A value may be quoted ('a b'), or quoted inside a SQL literal (''a b'').
_PASSWORD_KV = re.compile(r"(password\s*=\s*)(''(?:[^'\\]|\\.)*?''|'(?:[^'\\]|\\.)*'|[^\s']+)",
                          re.IGNORECASE)
_PASSWORD_URI = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]+)(@)", re.IGNORECASE)


def mask_password_patterns(text):
    """Mask anything that looks like a password in free text."""
    text = _PASSWORD_KV.sub(lambda m: m.group(1) + REDACTED, text)
    return _PASSWORD_URI.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)


def parse_conninfo(conninfo, what="conninfo"):
    """Return the conninfo as a dict, or raise a SlonyError naming ``what``.

    The error never repeats the conninfo itself: a malformed string may still
    hold a password.
    """
    if conninfo is not None and not isinstance(conninfo, str):
        raise SlonyError("%s must be a string holding a libpq conninfo such as "
                         "'host=db1 dbname=app user=slony', not %s" % (what, type(conninfo).__name__))
    if conninfo is None or not conninfo.strip():
        raise SlonyError("%s is empty; expected a libpq conninfo such as "
                         "'host=db1 dbname=app user=slony'" % what)
    try:
        return parse_dsn(conninfo)
    except Exception as exc:  # psycopg2.ProgrammingError
        # libpq quotes the token it stopped at, which can be part of a password:
        # keep the kind of error, drop every quoted fragment.
        detail = re.sub(r'"[^"]*"', '"..."', str(exc).strip().splitlines()[0])
        raise SlonyError("%s is not a valid libpq conninfo (%s)"
                         % (what, mask_password_patterns(detail)))


def build_conninfo(params):
    """Build a conninfo string from a dict (values are quoted by libpq rules)."""
    return make_dsn(**{k: v for k, v in params.items() if v is not None})


def conninfo_secrets(conninfo):
    """The secret values inside a conninfo (raw and as they may appear in a URI)."""
    secrets = set()
    try:
        params = parse_dsn(conninfo)
    except Exception:
        params = {}
    for name in SECRET_PARAMS:
        if params.get(name):
            secrets.add(params[name])
    for match in _PASSWORD_URI.finditer(conninfo or ""):
        secrets.add(match.group(2))
    return secrets


def redact_conninfo(conninfo):
    """The conninfo with its password (and sslpassword) replaced, normalised by libpq's
    rules."""
    try:
        params = parse_dsn(conninfo)
    except Exception:
        return mask_password_patterns(conninfo or "")
    for name in SECRET_PARAMS:
        if name in params:
            params[name] = REDACTED
    return make_dsn(**params)


def without_password(conninfo):
    """The conninfo with its ``password`` left out, for a configuration that gets its
    password from a passfile; ``sslpassword`` stays (a passfile cannot hold it). Without
    a password it is returned as written; else it is rebuilt by libpq's rules, its other
    parameters in their written order."""
    params = parse_conninfo(conninfo)
    if "password" not in params:
        return conninfo
    params.pop("password")

    def written_at(key):
        found = re.search(r"(?:^|\s)%s\s*=" % re.escape(key), conninfo)
        return found.start() if found else len(conninfo)
    ordered = sorted(params, key=written_at)
    return make_dsn(**dict((key, params[key]) for key in ordered))


def _pgpass_field(value):
    """A pgpass field: ``:`` and ``\\`` escaped with a backslash."""
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def pgpass_lines(conninfos):
    """The lines of a libpq password file (``~/.pgpass`` format) for the conninfos that
    hold a password, in order, without repeats: ``host:port:database:user:password``.

    libpq matches a line against the connection it makes: a conninfo without a host
    (a Unix socket) matches ``localhost``; a missing port, database or user becomes
    ``*``. A conninfo with several hosts (``host=a,b``) gives one line per host (with
    its port when the ports are listed too)."""
    lines = []
    for number, conninfo in enumerate(conninfos):
        params = parse_conninfo(conninfo, "passfile conninfo #%d" % (number + 1))
        password = params.get("password")
        if not password:
            continue
        hosts = (params.get("host") or params.get("hostaddr") or "").split(",")
        ports = (params.get("port") or "").split(",")
        for index, host in enumerate(hosts):
            port = ports[index] if len(ports) == len(hosts) else ports[0]
            if not host or host.startswith("/"):
                host = "localhost"
            fields = [host, port or "*", params.get("dbname") or "*",
                      params.get("user") or "*"]
            line = ":".join(_pgpass_field(f) if f != "*" else f for f in fields)
            line += ":" + _pgpass_field(password)
            if line not in lines:
                lines.append(line)
    return lines


class Redactor:
    """Removes every known secret from text before it leaves the core."""

    def __init__(self):
        self._secrets = set()

    @property
    def secrets(self):
        return frozenset(self._secrets)

    def add_conninfo(self, conninfo):
        self._secrets.update(conninfo_secrets(conninfo))

    def add_secret(self, secret):
        if secret:
            self._secrets.add(secret)

    def text(self, text):
        if text is None:
            return None
        text = str(text)
        variants = set()
        for secret in self._secrets:
            variants.update(_written_forms(secret))
        # Longest first so that a form containing another one is masked whole.
        for form in sorted(variants, key=len, reverse=True):
            text = text.replace(form, REDACTED)
        return mask_password_patterns(text)


def _written_forms(secret):
    """The ways a secret can be written in our output: as is, escaped for a quoted
    conninfo value (backslash before ' and \\), and each of those inside a SQL or
    slonik string literal (quotes doubled)."""
    conninfo_form = secret.replace("\\", "\\\\").replace("'", "\\'")
    forms = set([secret, conninfo_form])
    forms.update(form.replace("'", "''") for form in list(forms))
    return forms
