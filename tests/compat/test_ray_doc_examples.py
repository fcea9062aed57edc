"""Ray's own documentation examples (Ray Core, Tune, RLlib), run unchanged with ``import ray``
resolving to mpirt.

The examples live outside the repository (``../shared/ray-doc-examples/{core,tune,rllib}``, or the
folder named by ``MPIRT_RAY_DOC_EXAMPLES``); where they are absent these tests skip. Which of them
mpirt is expected to run is the manifest ``ray_doc_examples_<set>.txt`` next to this file: one line
per example, ``pass`` or the feature it needs that mpirt lacks. Every ``pass`` example must exit 0
(each runs as a script of its own, as a user would run it); the manifest must name every example,
so a new one is triaged rather than silently ignored.
"""
import os

import pytest

from conftest import REPO, run_app

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM = os.path.join(os.path.dirname(HERE), "ray_shim")
EXAMPLES = os.environ.get("MPIRT_RAY_DOC_EXAMPLES",
                          os.path.join(os.path.dirname(REPO), "shared", "ray-doc-examples"))
SETS = ("core", "tune", "rllib")
TIMEOUT_S = 180


def _manifest(example_set):
    """{example name: "pass" or what it needs}, in file order."""
    entries = {}
    with open(os.path.join(HERE, f"ray_doc_examples_{example_set}.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].rstrip()
            if line.strip():
                name, _, verdict = line.partition(" ")
                entries[name] = verdict.strip()
    return entries


MANIFESTS = {example_set: _manifest(example_set) for example_set in SETS}
PASSING = [(example_set, name) for example_set, manifest in MANIFESTS.items()
           for name, verdict in manifest.items() if verdict == "pass"]


def _examples_of(example_set):
    folder = os.path.join(EXAMPLES, example_set)
    if not os.path.isdir(folder):
        pytest.skip(f"Ray's documentation examples are not here ({folder}); set MPIRT_RAY_DOC_EXAMPLES")
    return folder


@pytest.mark.parametrize("example_set", SETS)
def test_manifest_names_every_example(example_set):
    present = sorted(name[:-3] for name in os.listdir(_examples_of(example_set)) if name.endswith(".py"))
    assert sorted(MANIFESTS[example_set]) == present


@pytest.mark.parametrize("example_set,name", PASSING, ids=[f"{s}/{n}" for s, n in PASSING])
def test_example_runs_unchanged(tmp_path, example_set, name):
    with open(os.path.join(_examples_of(example_set), name + ".py")) as f:
        source = f.read()
    # Results (Tune's experiments) go under the test's own directory, not the user's home.
    env = {"PYTHONPATH": SHIM + os.pathsep + REPO, "MPIRT_RESULTS_DIR": str(tmp_path / "results"),
           "HOME": str(tmp_path)}
    proc = run_app(tmp_path, source, timeout=TIMEOUT_S, env=env)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n" \
                                 f"stderr:\n{proc.stderr[-3000:]}"
