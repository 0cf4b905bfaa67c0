"""conninfo.py: parsing, rebuilding and redaction of libpq conninfo strings (no database)."""

from __future__ import annotations

import pytest

from ansible_collections.dany.slony.plugins.module_utils.conninfo import (
    REDACTED, Redactor, build_conninfo, conninfo_secrets, mask_password_patterns,
    parse_conninfo, redact_conninfo)
from ansible_collections.dany.slony.plugins.module_utils import conninfo as conninfo_mod
from ansible_collections.dany.slony.plugins.module_utils.pg import parse_dsn
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError


def test_redacted_marker():
    assert REDACTED == "********"


# -- parse_conninfo ---------------------------------------------------------------------

def test_parse_key_value():
    assert parse_conninfo("host=db1 port=5433 dbname=shop user=slony password=s3cret") == {
        "host": "db1", "port": "5433", "dbname": "shop", "user": "slony", "password": "s3cret"}


def test_parse_quoted_value():
    assert parse_conninfo(r"host=db1 password='it\'s a secret'")["password"] == "it's a secret"


def test_parse_uri():
    assert parse_conninfo("postgresql://slony:s3cret@db1:5433/shop?sslmode=require") == {
        "user": "slony", "password": "s3cret", "host": "db1", "port": "5433",
        "dbname": "shop", "sslmode": "require"}


@pytest.mark.parametrize("value", ["", "   ", None])
def test_parse_empty(value):
    with pytest.raises(SlonyError) as info:
        parse_conninfo(value, "admin_conninfo for node 3")
    assert str(info.value).startswith("admin_conninfo for node 3 is empty")


@pytest.mark.parametrize("value, kind", [(5, "int"), ({"host": "db1"}, "dict")])
def test_parse_not_a_string(value, kind):
    with pytest.raises(SlonyError) as info:
        parse_conninfo(value, "admin_conninfo for node 3")
    assert str(info.value).startswith("admin_conninfo for node 3 must be a string")
    assert str(info.value).endswith("not %s" % kind)


@pytest.mark.parametrize("conninfo, secret", [
    ("host=db1 password=s3cret junk", "s3cret"),
    ("host=db1 password='s3cret", "s3cret"),
    ("password=s3cret host", "s3cret"),
    ("host=db1 passwrd=s3cret", "s3cret"),
    ("host=db1 password=s3cret sslmode", "s3cret"),
    ("postgresql://u:s3cret@db1/shop?bogus=1", "s3cret"),
    ("postgresql://u:s3cret@db1/shop?sslmode", "s3cret"),
    ("postgresql://u:s3cret@[db1/shop", "s3cret"),
])
def test_parse_error_never_echoes_the_password(conninfo, secret):
    with pytest.raises(SlonyError) as info:
        parse_conninfo(conninfo, "admin_conninfo for node 2")
    message = str(info.value)
    assert message.startswith("admin_conninfo for node 2 is not a valid libpq conninfo (")
    assert secret not in message
    assert conninfo not in message


@pytest.mark.parametrize("conninfo, fragment", [
    ("host=db1 password=correct horse battery", "horse"),
    ("postgresql://u:s3%zzret@db1/shop", "s3%zzret"),
])
def test_parse_error_never_echoes_part_of_the_password(conninfo, fragment):
    with pytest.raises(SlonyError) as info:
        parse_conninfo(conninfo, "admin_conninfo for node 2")
    assert fragment not in str(info.value)


def test_build_conninfo_quotes_and_skips_none():
    text = build_conninfo({"host": "db1", "password": "a b'c", "port": None})
    assert "port" not in text
    assert parse_conninfo(text) == {"host": "db1", "password": "a b'c"}


# -- conninfo_secrets / redact_conninfo -------------------------------------------------

def test_secrets_key_value_and_uri():
    assert conninfo_secrets("host=db1 password=s3cret") == {"s3cret"}
    assert conninfo_secrets("host=db1") == set()
    assert conninfo_secrets("postgresql://u:s3cret@db1/shop") == {"s3cret"}
    # Both the decoded value and the text as written in the URI.
    assert conninfo_secrets("postgresql://u:p%40ss@db1/shop") == {"p@ss", "p%40ss"}


def test_secrets_of_unparsable_uri_still_found():
    assert "s3cret" in conninfo_secrets("postgresql://u:s3cret@db1/shop?bogus=1")


@pytest.mark.parametrize("conninfo", [
    "host=db1 dbname=shop password=s3cret",
    "password = s3cret host=db1",
    "host=db1 password='s3cret'",
    "postgresql://slony:s3cret@db1:5432/shop",
    "postgres://slony:s3cret@db1/shop",
])
def test_redact_conninfo(conninfo):
    text = redact_conninfo(conninfo)
    assert "s3cret" not in text
    params = parse_conninfo(text)
    assert params["password"] == REDACTED
    assert params["host"] == "db1"


def test_redact_conninfo_uri_is_rebuilt_as_key_value():
    assert parse_conninfo(redact_conninfo("postgresql://slony:s3cret@db1:5433/shop")) == {
        "user": "slony", "password": REDACTED, "host": "db1", "port": "5433", "dbname": "shop"}


@pytest.mark.parametrize("password", [
    "s3cret with spaces", "s3cret's", "s3 'cret' pass", "s3cret\\slash", "s3cret=x y"])
def test_redact_conninfo_quoted_password(password):
    conninfo = build_conninfo({"host": "db1", "password": password})
    text = redact_conninfo(conninfo)
    assert "s3" not in text
    assert "pass" not in text.replace("password", "")
    assert parse_conninfo(text) == {"host": "db1", "password": REDACTED}


def test_redact_conninfo_without_password_is_unchanged_in_meaning():
    assert parse_conninfo(redact_conninfo("host=db1 dbname=shop")) == {
        "host": "db1", "dbname": "shop"}


@pytest.mark.parametrize("conninfo, secret", [
    ("host=db1 password=s3cret junk", "s3cret"),
    (r"host=db1 password='a b\'c' junk", "a b"),
    ("postgresql://u:s3cret@db1/shop?bogus=1", "s3cret"),
])
def test_redact_unparsable_conninfo_masks_by_pattern(conninfo, secret):
    text = redact_conninfo(conninfo)
    assert secret not in text
    assert REDACTED in text


def test_redact_none():
    assert redact_conninfo(None) == ""


# -- mask_password_patterns -------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("host=db1 password=s3cret user=u", "host=db1 password=******** user=u"),
    ("PASSWORD = s3cret", "PASSWORD = ********"),
    ("password='a b c' host=x", "password=******** host=x"),
    (r"password='it\'s' host=x", "password=******** host=x"),
    ("postgresql://u:s3cret@db1/shop", "postgresql://u:********@db1/shop"),
    ("see postgres://u:s3cret@db1 and more", "see postgres://u:********@db1 and more"),
    ("select f('host=db1 password=s3cret')", "select f('host=db1 password=********')"),
    ("no secrets here", "no secrets here"),
    ("postgresql://u@db1/shop", "postgresql://u@db1/shop"),
])
def test_mask_password_patterns(text, expected):
    assert mask_password_patterns(text) == expected


def test_mask_password_patterns_inside_sql_literal_with_quoted_password():
    assert "a b" not in mask_password_patterns("select f('host=db1 password=''a b''')")


# -- Redactor ---------------------------------------------------------------------------

def test_redactor_masks_known_secrets_everywhere():
    redactor = Redactor()
    redactor.add_conninfo("host=db1 password=s3cret")
    redactor.add_secret("t0ken")
    redactor.add_secret("")
    redactor.add_secret(None)
    assert redactor.secrets == frozenset({"s3cret", "t0ken"})
    text = redactor.text("FATAL: password authentication failed (s3cret); token t0ken")
    assert "s3cret" not in text and "t0ken" not in text
    assert text.count(REDACTED) == 2


def test_redactor_none_and_non_strings():
    redactor = Redactor()
    redactor.add_secret("42")
    assert redactor.text(None) is None
    assert redactor.text(1425) == "1" + REDACTED + "5"


def test_redactor_longest_secret_first():
    redactor = Redactor()
    redactor.add_secret("abc")
    redactor.add_secret("abcdef")
    assert redactor.text("x abcdef y abc") == "x %s y %s" % (REDACTED, REDACTED)


@pytest.mark.parametrize("password", ["s3cret's", "o'br13n's pass", "s3''", "s3 ' cret"])
def test_redactor_masks_psycopg2_escaped_secret(password):
    """A secret passed as a parameter is rendered by mogrify with its quotes doubled."""
    redactor = Redactor()
    redactor.add_conninfo(build_conninfo({"host": "db1", "password": password}))
    rendered = "alter role slony password '%s'" % password.replace("'", "''")
    prefix = "alter role slony password '"
    text = redactor.text(rendered)
    assert text.startswith(prefix + REDACTED)
    # Nothing but the mask and quotes is left of the literal.
    assert set(text[len(prefix):].replace(REDACTED, "")) <= {"'"}


def test_redactor_masks_psycopg2_escaped_secret_exactly():
    redactor = Redactor()
    redactor.add_secret("o'br13n's")
    assert redactor.text("password 'o''br13n''s' or o'br13n's") == "password '%s' or %s" % (
        REDACTED, REDACTED)


@pytest.mark.parametrize("password", ["s3cret with spaces", "s3cret\\slash"])
def test_redactor_masks_conninfo_inside_sql_literal(password):
    """A conninfo passed as a parameter (storePath): the whole literal is SQL-quoted."""
    conninfo = build_conninfo({"host": "db1", "password": password})
    redactor = Redactor()
    redactor.add_conninfo(conninfo)
    rendered = "select \"_shop\".storepath(1, 2, '%s', 10)" % conninfo.replace("'", "''")
    text = redactor.text(rendered)
    assert "s3" not in text
    assert text.startswith("select \"_shop\".storepath(1, 2, 'host=db1 password=" + REDACTED)


@pytest.mark.parametrize("password", ["s3cret'x9z", "qq1'u0 t3e"])
def test_redactor_masks_conninfo_with_quoted_password_inside_sql_literal(password):
    conninfo = build_conninfo({"host": "db1", "password": password})
    redactor = Redactor()
    redactor.add_conninfo(conninfo)
    rendered = "select \"_shop\".storepath(1, 2, '%s', 10)" % conninfo.replace("'", "''")
    text = redactor.text(rendered)
    for part in password.replace("'", " ").split():
        assert part not in text


def test_redactor_masks_uri_forms():
    redactor = Redactor()
    redactor.add_conninfo("postgresql://u:p%40ss@db1/shop")
    text = redactor.text("tried postgresql://u:p%40ss@db1/shop with p@ss")
    assert "p%40ss" not in text and "p@ss" not in text


def test_redactor_masks_unknown_passwords_by_pattern():
    assert Redactor().text("host=db2 password=other") == "host=db2 password=" + REDACTED


def test_the_client_key_password_is_a_secret_too():
    from ansible_collections.dany.slony.plugins.module_utils.conninfo import (
        Redactor, conninfo_secrets, redact_conninfo)
    conninfo = "host=db1 user=slony sslkey=/k.pem sslpassword=keysecret password=pw"
    assert conninfo_secrets(conninfo) == {"keysecret", "pw"}
    redacted = redact_conninfo(conninfo)
    assert "keysecret" not in redacted and "sslpassword=********" in redacted
    redactor = Redactor()
    redactor.add_conninfo(conninfo)
    assert "keysecret" not in redactor.text("failed: sslpassword=keysecret")


@pytest.mark.parametrize("conninfo, expected", [
    ("host=db1 dbname=shop user=slony password=s3cret", "host=db1 dbname=shop user=slony"),
    ("host=db1 dbname=shop user=slony", "host=db1 dbname=shop user=slony"),
    ("postgresql://slony:s3cret@db1:5433/shop", "user=slony host=db1 port=5433 dbname=shop"),
    ("host=db1 password='a b' sslpassword=k", "host=db1 sslpassword=k"),
])
def test_without_password(conninfo, expected):
    assert parse_dsn(conninfo_mod.without_password(conninfo)) == parse_dsn(expected)
    assert "s3cret" not in conninfo_mod.without_password(conninfo)


def test_pgpass_lines_match_what_libpq_connects_to():
    assert conninfo_mod.pgpass_lines([
        "host=db1 port=5433 dbname=shop user=slony password=s3cret",
        "dbname=shop user=slony password=local",             # Unix socket: localhost
        "host=/var/run/postgresql user=slony password=sock",  # socket directory: localhost
        "host=db2 dbname=shop",                               # no password: no line
        "host=db1 port=5433 dbname=shop user=slony password=s3cret",  # no repeats
        "host=a,b port=5432,5433 dbname=d user=u password=multi",
        "host=c,d port=6000 dbname=d user=u password=one-port",
        "host=db1 dbname='sh\\\\op' user=sl password='p:w\\\\x'",
    ]) == [
        "db1:5433:shop:slony:s3cret",
        "localhost:*:shop:slony:local",
        "localhost:*:*:slony:sock",
        "a:5432:d:u:multi", "b:5433:d:u:multi",
        "c:6000:d:u:one-port", "d:6000:d:u:one-port",
        "db1:*:sh\\\\op:sl:p\\:w\\\\x",
    ]


def test_pgpass_lines_refuse_a_bad_conninfo_without_repeating_it():
    with pytest.raises(SlonyError) as err:
        conninfo_mod.pgpass_lines(["host=db1 password='Xy9secret"])
    assert "passfile conninfo #1" in str(err.value) and "Xy9secret" not in str(err.value)


def test_the_conninfo_filter_leaves_the_password_out_when_asked():
    from ansible.errors import AnsibleFilterError
    from ansible_collections.dany.slony.plugins.filter.conninfo import conninfo as conninfo_filter
    with_pw = "host=db1 port=5433 dbname=shop user=slony password=s3cret"
    assert conninfo_filter(with_pw) == with_pw
    assert conninfo_filter(with_pw, password=False) == "host=db1 port=5433 dbname=shop user=slony"
    # Without a password a string is returned as written (no rewrite, no STORE PATH).
    assert conninfo_filter("dbname=shop   host=db1", password=False) == "dbname=shop   host=db1"
    assert conninfo_filter({"host": "db1", "password": "s3cret", "port": None},
                           password=False) == "host=db1"
    with pytest.raises(AnsibleFilterError) as err:
        conninfo_filter("host=db1 password='Xy9secret", password=False)
    assert "Xy9secret" not in str(err.value)


def test_the_pgpass_filter():
    from ansible.errors import AnsibleFilterError
    from ansible_collections.dany.slony.plugins.filter.pgpass import pgpass
    assert pgpass(["host=db1 dbname=shop user=slony password=s3cret",
                   {"host": "db2", "port": 5433, "dbname": "shop", "user": "slony",
                    "password": "s3cret"}, "host=db3 dbname=shop"]) == (
        "db1:*:shop:slony:s3cret\ndb2:5433:shop:slony:s3cret\n")
    assert pgpass([]) == ""
    with pytest.raises(AnsibleFilterError):
        pgpass("host=db1 password=x")
