"""Plugins for the whole suite (tests/ and fuzz/): every frame the engines produce is checked
against the wire schema, docs/protocol.schema.json (tests/wire_schema.py)."""

pytest_plugins = ["tests.wire_schema"]
