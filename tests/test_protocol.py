"""The message protocol (mpirt/core/protocol.py) against the code that sends and handles messages, and
against its documentation (docs/architecture.md, "Message catalogue")."""
import ast
import os
import re

import pytest

from conftest import REPO
from mpirt.core import protocol

PACKAGE = os.path.join(REPO, "mpirt")


def _sources():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path) as f:
                    yield os.path.relpath(path, REPO), ast.parse(f.read())


def _calls(method_names):
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in method_names:
                yield path, node


def _literal(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def test_every_message_is_in_the_architecture_catalogue_and_nothing_else_is():
    with open(os.path.join(REPO, "docs", "architecture.md")) as f:
        documented = set(re.findall(r"^\| `([a-z_]+)` \|", f.read(), flags=re.MULTILINE))
    assert set(protocol.MESSAGES) - documented == set(), "declared in protocol.py, missing in docs/architecture.md"
    assert documented - set(protocol.MESSAGES) == set(), "in docs/architecture.md, not declared in protocol.py"


def test_every_declared_message_has_a_handler_registered():
    registered = set()
    for _, call in _calls({"register"}):
        registered.update(keyword.arg for keyword in call.keywords if keyword.arg)
    # The reference counter registers one kind per instance: for objects and for actor handles.
    for _, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ReferenceCounter":
                registered.update(_literal(arg) for arg in node.args if _literal(arg))
    assert set(protocol.MESSAGES) - registered == set(), "declared but no role registers a handler"


def test_every_message_sent_is_declared_with_the_right_number_of_fields():
    sent = []
    for path, call in _calls({"send", "send_now", "send_local", "_send_to", "broadcast"}):
        if "channel" in ast.unparse(call.func.value):
            continue   # the pipe between a rank and its slot processes (slot_wire.py), not between ranks
        for arg in call.args:
            if isinstance(arg, ast.Tuple) and arg.elts and _literal(arg.elts[0]):
                starred = any(isinstance(e, ast.Starred) for e in arg.elts)
                sent.append((path, call.lineno, _literal(arg.elts[0]), None if starred else len(arg.elts) - 1))
    for path, call in _calls({"query"}):
        if len(call.args) >= 2 and _literal(call.args[1]):
            starred = any(isinstance(a, ast.Starred) for a in call.args[2:])
            sent.append((path, call.lineno, _literal(call.args[1]), None if starred else len(call.args) - 1))
    assert len(sent) > 40   # the scan finds the senders (it would pass vacuously otherwise)
    wrong = []
    for path, line, kind, fields in sent:
        message = protocol.MESSAGES.get(kind)
        if message is None:
            wrong.append(f"{path}:{line} sends undeclared {kind!r}")
        elif fields is not None and not message.arity[0] <= fields <= message.arity[1]:
            wrong.append(f"{path}:{line} sends {kind!r} with {fields} fields, declared {message.fields}")
    assert not wrong, "\n".join(wrong)


def test_a_handler_is_checked_against_its_kind():
    protocol.check_handler("done", lambda source, task_id, blobs, is_error, retryable, seconds: None)
    protocol.check_handler("cancel", lambda source, task_id, force, recursive=None: None)   # optional last field
    protocol.check_handler("lease_req", lambda source, *fields: None)
    with pytest.raises(protocol.ProtocolError, match="no message kind 'dnoe' in mpirt/core/protocol.py"):
        protocol.check_handler("dnoe", lambda source, task_id: None)
    with pytest.raises(protocol.ProtocolError, match="cannot handle 'done'"):
        protocol.check_handler("done", lambda source, task_id, blobs: None)
    with pytest.raises(protocol.ProtocolError, match="cannot handle 'cancel'"):
        protocol.check_handler("cancel", lambda source, task_id, force, recursive: None)   # must accept 2 fields too
