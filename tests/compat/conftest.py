"""Compatibility tests written from Ray's documentation: ``import ray`` there is mpirt.

Puts ``tests/ray_shim`` at the front of ``sys.path`` (the ``ray`` package it holds is an alias
of mpirt). The shared fixtures (``rt``) come from ``tests/conftest.py``; nothing else here.
"""
import os
import sys

SHIM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ray_shim")
if sys.path[:1] != [SHIM]:
    sys.path.insert(0, SHIM)
