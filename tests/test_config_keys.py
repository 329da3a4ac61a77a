"""Every documented recipe key takes effect: each key of the ``runtime:``, ``train:`` and
``pretrain:`` sections of configs/default.yaml is read somewhere in the package.

"Read" means an attribute access ``X.key`` where ``X`` holds that section: ``config.train``
(``cfg.train``, ``base.train``, ...), or a name bound to one (``tc = config.train``,
``pc, fc = config.pretrain, config.features``, a parameter annotated ``TrainConfig``, or
the conventional ``tc`` / ``pc`` / ``rc``), followed through plain re-bindings
(``self.c = config``). A training-view step registered with
``register_view(name, prob="key")`` reads ``pretrain.key`` (the views' loop takes it by
name from the degradation registry).
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sonicsearch"
SECTIONS = {"runtime": ("RuntimeConfig", "rc"), "train": ("TrainConfig", "tc"),
            "pretrain": ("PretrainConfig", "pc")}
ASSIGN = re.compile(r"^\s*([\w.]+(?:\s*,\s*[\w.]+)*)\s*=\s*([\w.]+(?:\s*,\s*[\w.]+)*)\s*$")


def _code_only(text: str) -> str:
    """The source with strings and comments blanked, so docs never count as reads."""
    lines = text.splitlines(keepends=True)
    out = [list(line) for line in lines]
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in (tokenize.STRING, tokenize.COMMENT):
            continue
        (r0, c0), (r1, c1) = tok.start, tok.end
        for r in range(r0, r1 + 1):
            row = out[r - 1]
            start, end = (c0 if r == r0 else 0), (c1 if r == r1 else len(row))
            for c in range(start, end):
                if row[c] != "\n":
                    row[c] = " "
    return "".join("".join(row) for row in out)


def _sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): _code_only(p.read_text(encoding="utf-8"))
            for p in PACKAGE.rglob("*.py") if p.name != "config.py"}


def _aliases(section: str, code: str) -> set[str]:
    cls, conventional = SECTIONS[section]
    names = {conventional}
    names |= set(re.findall(rf"\b(\w+)\s*:\s*{cls}\b", code))
    holders = re.compile(rf"^(?:[\w.]+\.)?{section}$")
    changed = True
    while changed:
        changed = False
        for line in code.splitlines():
            m = ASSIGN.match(line)
            if not m:
                continue
            lhs = [x.strip() for x in m.group(1).split(",")]
            rhs = [x.strip() for x in m.group(2).split(",")]
            if len(lhs) != len(rhs):
                continue
            for target, value in zip(lhs, rhs):
                if (holders.match(value) or value in names) and target not in names:
                    names.add(target)
                    changed = True
    return names


def _read_keys(section: str) -> set[str]:
    read: set[str] = set()
    for code in _sources().values():
        receivers = [re.escape(a) for a in sorted(_aliases(section, code))]
        receivers.append(rf"\w+\.{section}")
        pattern = re.compile(rf"\b(?:{'|'.join(receivers)})\.(\w+)\b")
        read |= set(pattern.findall(code))
    if section == "pretrain":
        read |= _registered_view_probs()
    return read


def _registered_view_probs() -> set[str]:
    """The ``prob=`` keys of ``@register_view`` in the package (its source, strings kept)."""
    pattern = re.compile(r"register_view\(\s*\"[^\"]+\",\s*prob=\"(\w+)\"")
    return {key for p in PACKAGE.rglob("*.py")
            for key in pattern.findall(p.read_text(encoding="utf-8"))}


DEFAULTS = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("section", list(SECTIONS))
def test_every_documented_key_is_read(section):
    keys = set(DEFAULTS[section])
    unread = sorted(keys - _read_keys(section))
    assert not unread, f"{section}: keys in configs/default.yaml that no code reads: {unread}"


def test_the_check_itself_sees_a_missing_key():
    assert "no_such_key" not in _read_keys("train")
    assert {"head_lr", "phase2_epochs"} <= _read_keys("train")


def test_registered_view_probs_are_the_views_config_keys():
    """What the source says is registered is what is: every view step's key is a pretrain
    key of default.yaml."""
    from sonicsearch.degradations import views
    from sonicsearch.training import views as view_steps  # noqa: F401 - registers them

    probs = {step.prob for _name, step in views()}
    assert probs == _registered_view_probs() and probs <= set(DEFAULTS["pretrain"])
