"""The course examples run and print what they promise."""

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(path)])
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip()


def test_fire_sale_example_shows_amplification(capsys):
    runpy.run_path(str(Path(__file__).parent.parent / "examples" /
                       "02_contagion_cascade.py"), run_name="__main__")
    lines = capsys.readouterr().out.strip().splitlines()
    off = int(lines[0].split("->")[1].split()[0])
    on = int(lines[1].split("->")[1].split()[0])
    assert on > off
