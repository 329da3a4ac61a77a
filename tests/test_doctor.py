"""The install check: the torch family moves as one, and a drift is a one-line error."""

from __future__ import annotations

import re
import tomllib
import types
from pathlib import Path

import pytest

from sonicsearch.cli import doctor
from sonicsearch.errors import SonicsearchError

ROOT = Path(__file__).resolve().parents[1]


def test_the_installed_stack_loads_and_runs():
    names = [c.name for c in doctor.check_stack()]
    assert names == ["torch", "torchvision", "torchaudio", "faiss", "soundfile"]


def test_pyproject_and_the_lock_pin_the_torch_family_exactly():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lock = (ROOT / "constraints.txt").read_text()
    for name, version in doctor.TORCH_FAMILY.items():
        assert f"{name}=={version}" in deps
        assert re.search(rf"^{name}=={re.escape(version)}(\+\S+)?$", lock, re.M), name


def test_a_mixed_torch_family_is_one_line_naming_the_fix(monkeypatch):
    real = doctor.importlib.import_module

    def fake(name):
        if name == "torchaudio":
            return types.SimpleNamespace(__version__="2.11.1")
        return real(name)

    monkeypatch.setattr(doctor.importlib, "import_module", fake)
    with pytest.raises(SonicsearchError, match=r"torchaudio 2\.11\.1 is installed.*2\.11\.0") as e:
        doctor.check_stack()
    assert "\n" not in str(e.value) and "constraints.txt" in str(e.value)


def test_an_extension_that_cannot_load_is_reported(monkeypatch):
    real = doctor.importlib.import_module

    def fake(name):
        if name == "faiss":
            raise ImportError("libfaiss.so: undefined symbol: foo\nmore")
        return real(name)

    monkeypatch.setattr(doctor.importlib, "import_module", fake)
    with pytest.raises(SonicsearchError, match="cannot load faiss: libfaiss.so: undefined symbol"):
        doctor.check_stack()
