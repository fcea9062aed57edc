"""Ray's own Ray Core documentation examples, run unchanged with ``import ray`` resolving to mpirt.

The examples live outside the repository (``../shared/ray-doc-examples/core``, or the folder
named by ``MPIRT_RAY_DOC_EXAMPLES``); where they are absent these tests skip. Which of them
mpirt is expected to run is the manifest ``ray_doc_examples.txt`` next to this file: one line
per example, ``pass`` or the feature it needs that mpirt lacks. Every ``pass`` example must
exit 0 (each runs as a script of its own, as a user would run it); the manifest must name every
example, so a new one is triaged rather than silently ignored.
"""
import os

import pytest

from conftest import REPO, run_app

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM = os.path.join(os.path.dirname(HERE), "ray_shim")
EXAMPLES = os.environ.get("MPIRT_RAY_DOC_EXAMPLES",
                          os.path.join(os.path.dirname(REPO), "shared", "ray-doc-examples"))
CORE = os.path.join(EXAMPLES, "core")
TIMEOUT_S = 120


def _manifest():
    """{example name: "pass" or what it needs}, in file order."""
    entries = {}
    with open(os.path.join(HERE, "ray_doc_examples.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].rstrip()
            if line.strip():
                name, _, verdict = line.partition(" ")
                entries[name] = verdict.strip()
    return entries


MANIFEST = _manifest()
PASSING = [name for name, verdict in MANIFEST.items() if verdict == "pass"]


def _require_examples():
    if not os.path.isdir(CORE):
        pytest.skip(f"Ray's documentation examples are not here ({CORE}); set MPIRT_RAY_DOC_EXAMPLES")


def test_manifest_names_every_example():
    _require_examples()
    present = sorted(name[:-3] for name in os.listdir(CORE) if name.endswith(".py"))
    assert sorted(MANIFEST) == present


@pytest.mark.parametrize("name", PASSING)
def test_core_example_runs_unchanged(tmp_path, name):
    _require_examples()
    with open(os.path.join(CORE, name + ".py")) as f:
        source = f.read()
    proc = run_app(tmp_path, source, timeout=TIMEOUT_S, env={"PYTHONPATH": SHIM + os.pathsep + REPO})
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n" \
                                 f"stderr:\n{proc.stderr[-3000:]}"
