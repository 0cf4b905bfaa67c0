"""names.py: cluster names, node ids and schema-qualified names (no database)."""

from __future__ import annotations

import pytest

from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.names import (
    cluster_namespace, split_qualified_name, validate_cluster_name, validate_node_id)


@pytest.mark.parametrize("name", [
    "a",
    "_",
    "shop",
    "Shop_2",
    "_private",
    "a$b",
    "price$",
    "a" * 63,
    "_" + "9" * 62,
])
def test_cluster_name_accepted(name):
    assert validate_cluster_name(name) == name


@pytest.mark.parametrize("name", [
    "",
    "a" * 64,
    "1abc",
    "9",
    "$abc",
    "my-cluster",
    "my cluster",
    "shop.eu",
    "clus\u00e9",
    None,
    42,
    ["shop"],
])
def test_cluster_name_refused(name):
    with pytest.raises(SlonyError) as info:
        validate_cluster_name(name)
    assert "invalid cluster_name" in str(info.value)
    assert "letter or underscore" in str(info.value)


@pytest.mark.parametrize("name", ["shop\n", "a" * 63 + "\n"])
def test_cluster_name_trailing_newline_refused(name):
    with pytest.raises(SlonyError):
        validate_cluster_name(name)


def test_cluster_name_length_limit_is_63():
    validate_cluster_name("x" * 63)
    with pytest.raises(SlonyError):
        validate_cluster_name("x" * 64)


def test_cluster_namespace_is_underscore_prefixed():
    assert cluster_namespace("shop") == "_shop"
    assert cluster_namespace("a$b") == "_a$b"


def test_cluster_namespace_validates():
    with pytest.raises(SlonyError):
        cluster_namespace("1shop")


@pytest.mark.parametrize("value, expected", [
    (1, 1),
    ("1", 1),
    ("42", 42),
    (2147483647, 2147483647),
    ("2147483647", 2147483647),
])
def test_node_id_accepted(value, expected):
    assert validate_node_id(value) == expected


@pytest.mark.parametrize("value, message", [
    (0, "must be a positive 32-bit integer"),
    (-1, "must be a positive 32-bit integer"),
    (2147483648, "must be a positive 32-bit integer"),
    (True, "must be a positive 32-bit integer"),
    (False, "must be a positive 32-bit integer"),
    ("one", "is not an integer"),
    ("", "is not an integer"),
    ("1.5", "is not an integer"),
    (None, "is not an integer"),
    ([1], "is not an integer"),
])
def test_node_id_refused(value, message):
    with pytest.raises(SlonyError) as info:
        validate_node_id(value, "set origin")
    assert str(info.value).startswith("set origin ")
    assert message in str(info.value)


def test_node_id_float_refused():
    with pytest.raises(SlonyError):
        validate_node_id(1.9)


@pytest.mark.parametrize("name, expected", [
    ("public.orders", ("public", "orders")),
    # Slony compares names case-sensitively and does not fold unquoted parts.
    ("Public.MyTable", ("Public", "MyTable")),
    ('"public"."orders"', ("public", "orders")),
    ('"My Schema"."Order Items"', ("My Schema", "Order Items")),
    ('"a.b"."c.d"', ("a.b", "c.d")),
    ('public."weird.name"', ("public", "weird.name")),
    ('"say ""hi"""."t"', ('say "hi"', "t")),
    ('s."""quoted"""', ("s", '"quoted"')),
    ("s$1.t_2", ("s$1", "t_2")),
])
def test_split_qualified_name(name, expected):
    assert split_qualified_name(name) == expected


@pytest.mark.parametrize("name", [
    "orders",
    '"orders"',
    '"public.orders"',
    "a.b.c",
    '"a".b.c',
    ".orders",
    "public.",
    ".",
    "",
    None,
    '"".orders',
    'public.""',
])
def test_split_qualified_name_requires_schema_and_name(name):
    with pytest.raises(SlonyError) as info:
        split_qualified_name(name, "sequence")
    assert str(info.value).startswith("sequence name ")
    assert "must be schema-qualified, like public.orders" in str(info.value)


@pytest.mark.parametrize("name", ['"public.orders', 'public."orders', '"a""b.c'])
def test_split_qualified_name_unterminated_quote(name):
    with pytest.raises(SlonyError) as info:
        split_qualified_name(name)
    assert "unterminated quote" in str(info.value)
    assert str(info.value).startswith("table name ")
