"""requirements.lock (what `make setup` installs) agrees with pyproject.toml: every
dependency pinned, each pin inside its allowed range, every pin with hashes, and torch
left to the Makefile's pin, which the range allows. A dependency edited without `make
lock` fails here, not in someone's install."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["test"] + extras["postgres"]]


def locked() -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, how many hashes)."""
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    out = {}
    for block in re.split(r"\n(?=\S)", text):
        m = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if m:
            out[canonicalize_name(m.group(1))] = (Version(m.group(2)), block.count("--hash=sha256:"))
    return out


def test_every_dependency_is_pinned_within_its_range_with_hashes():
    pins = locked()
    problems = []
    for req in declared():
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        if name not in pins:
            problems.append(f"{req.name}: not in requirements.lock (run `make lock`)")
        elif not req.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{req.name}: locked {pins[name][0]} is outside {req.specifier} (run `make lock`)")
    assert problems == []
    assert [n for n, (_, hashes) in pins.items() if hashes == 0] == []


def test_torch_comes_from_the_makefile_and_its_pin_is_allowed():
    assert "torch" not in locked()
    pin = re.search(r"^TORCH_VERSION \?= (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    [torch] = [r for r in declared() if r.name == "torch"]
    assert torch.specifier.contains(pin)
    assert not torch.specifier.contains("2.5.1")  # torch.load could run code before 2.6
