"""Paths and the vitfold CLI for the tests (run from the repository: python3 -m unittest discover -s python/tests)."""

import json
import os
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(REPO, "fixtures", "method")
sys.path.insert(0, os.path.join(REPO, "python"))


def vitfold(*args: str) -> subprocess.CompletedProcess:
    """Runs the built vitfold CLI (npm run build first)."""
    return subprocess.run(["node", os.path.join(REPO, "dist", "cli", "main.js"), *args], capture_output=True, text=True)


def method() -> dict:
    with open(os.path.join(FIXTURES, "method.json")) as fh:
        return json.load(fh)
