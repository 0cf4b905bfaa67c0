# -*- coding: utf-8 -*-
"""UPDATE FUNCTIONS planning (plugins/module_utils/upgrade.py), without a database."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.upgrade import VersionsRead, decide_update

NS = sql.Identifier("_shop")


def test_only_the_nodes_whose_functions_report_another_version_are_upgraded():
    read = VersionsRead({1: "2.2.11", 2: "2.2.10", 3: "2.1.4"}, "2.2.11")
    planned = decide_update(NS, [1, 2, 3], read)
    assert [(s.kind, s.node, s.function, s.args) for s in planned.plan.steps] == [
        ("callback", 2, "upgradeSchema", ("2.2.10",)), ("callback", 3, "upgradeSchema", ("2.1.4",))]
    assert planned.plan.slonik() == ["update functions (id = 2);", "update functions (id = 3);"]
    assert planned.before == [{"id": 1, "version": "2.2.11"}, {"id": 2, "version": "2.2.10"},
                              {"id": 3, "version": "2.1.4"}]
    assert all(v["version"] == "2.2.11" for v in planned.after)
    assert planned.extra == {"target_version": "2.2.11"}


def test_nothing_to_do_when_every_node_is_current():
    planned = decide_update(NS, [1, 2], VersionsRead({1: "2.2.11", 2: "2.2.11"}, "2.2.11"))
    assert not planned.plan.steps and planned.before == planned.after


def test_a_1x_schema_and_a_downgrade_are_refused_naming_each_node():
    read = VersionsRead({1: "1.2.23", 2: "2.2.12", 3: "2.2.10"}, "2.2.11")
    with pytest.raises(SlonyError) as info:
        decide_update(NS, [1, 2, 3], read)
    message = str(info.value)
    assert "node 1 runs Slony-I 1.2.23 functions: upgrading to 2.2.11 requires Slony's " \
           "slony_upgrade_20 first" in message
    assert "node 2 runs Slony-I 2.2.12 functions, newer than the installed 2.2.11" in message
    assert "node 3" not in message
