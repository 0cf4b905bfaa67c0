"""A cluster double whose fetch() answers by the text of the query, for the unit tests
of the waits of tables, subscriptions, sets and sync (with tests/unit/fakes.py: FakeClock)."""

from __future__ import annotations

from psycopg2 import sql


class ScriptedCluster:
    """``answers``: [(text in the query, answer(node, params) -> rows)], first match wins.
    ``slon``: node -> whether its slon holds sl_nodelock (the waiter's slon_state)."""

    name = "shop"
    namespace = "_shop"
    ns = sql.Identifier("_shop")

    def __init__(self, answers, slon=None, nodes=(1, 2, 3)):
        self.answers = list(answers)
        self.slon = dict(slon or {})
        self.admin_nodes = list(nodes)
        self.fetches = []
        self.queries = []

    def has_node(self, node):
        return node in self.admin_nodes

    def nodes(self):
        return list(self.admin_nodes)

    def initialized_nodes(self):
        return list(self.admin_nodes)

    def fetch(self, node, query, params=None, check_identity=True):
        text = repr(query)
        self.fetches.append((node, text, params))
        if "sl_nodelock" in text:
            return [(self.slon.get(node, True),)]
        for needle, answer in self.answers:
            if needle in text:
                return answer(node, params)
        raise AssertionError("unexpected query on node %s: %s" % (node, text))

    def count(self, needle):
        return len([f for f in self.fetches if needle in f[1]])
