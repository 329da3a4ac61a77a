"""The tuning search space, read from YAML (``configs/tune.yaml``), never written in code.

A space is a list of parameters under ``params:``. Each names a dotted config key and how
to draw its value::

    params:
      - {name: arch, key: model.arch, type: categorical, choices: [resnet18, alexnet]}
      - {name: head_lr, key: train.head_lr, type: float, low: 0.005, high: 0.1, log: true}
      - name: unfreeze_alexnet
        key: train.unfreeze
        type: int
        low: 1
        high: 4
        when: {arch: alexnet}          # drawn only for these values of an earlier parameter

``name`` (default: the key's last part) is the Optuna parameter name and must be unique.
Several entries may set one key when their ``when`` conditions exclude each other (for
example learning-rate ranges per backbone family). Every value a parameter can take is
checked against the config (types, backbone names, stages that the backbone has), so a
bad space fails before the first trial with a one-line :class:`ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from sonicsearch.config import Config
from sonicsearch.errors import ConfigError, ModelError
from sonicsearch.model.backbones import ARCHS, create_backbone

TYPES = ("float", "int", "categorical")
FIELDS = ("name", "key", "type", "low", "high", "log", "step", "choices", "when")
DEFAULT_SPACE = Path("configs/tune.yaml")


@dataclass(frozen=True)
class Param:
    """One searched config key; ``when`` maps earlier parameter names to allowed values."""

    name: str
    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()
    when: dict[str, tuple] = field(default_factory=dict)

    def active(self, drawn: dict[str, Any]) -> bool:
        """Whether this parameter applies, given the values drawn so far (by name)."""
        return all(name in drawn and drawn[name] in values for name, values in self.when.items())

    def values(self) -> list:
        """The values worth checking against the config: the bounds, or every choice."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]

    def suggest(self, trial) -> Any:
        """Draw a value with an Optuna trial."""
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log,
                                       step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log,
                                     step=self.step or 1)
        return trial.suggest_categorical(self.name, list(self.choices))


@dataclass(frozen=True)
class SearchSpace:
    """The parameters of a search space, in the order they are drawn."""

    params: tuple[Param, ...]
    source: str = "<space>"

    def sample(self, trial) -> dict[str, Any]:
        """Draw the active parameters with ``trial``; returns dotted-key config overrides."""
        drawn: dict[str, Any] = {}
        overrides: dict[str, Any] = {}
        for p in self.params:
            if p.active(drawn):
                drawn[p.name] = overrides[p.key] = p.suggest(trial)
        return overrides

    def max_value(self, key: str, default: Any) -> Any:
        """The largest value ``key`` can take in this space (``default`` when not searched)."""
        values = [v for p in self.params if p.key == key for v in p.values()]
        return max(values) if values else default

    def validate(self, base: Config) -> None:
        """Check every value each parameter can take against ``base`` (types, archs, stages).

        Raises:
            ConfigError: naming the entry and the value that does not fit.
        """
        archs = [p for p in self.params if p.key == "model.arch"]
        defaults = base.to_dict()
        for p in self.params:
            section, _, key = p.key.partition(".")
            default = defaults[section][key]
            if p.type == "float" and isinstance(default, int) and not isinstance(default, bool):
                raise self._error(p, f"{p.key} takes whole numbers; use type int")
            for value in p.values():
                try:
                    base.with_overrides({p.key: value})
                except ConfigError as exc:
                    raise self._error(p, str(exc)) from None
            if p.key == "model.arch":
                _check_archs(self, p)
                fixed = base.train.unfreeze
                if fixed != "all" and not any(q.key == "train.unfreeze" for q in self.params):
                    _check_unfreeze(self, Param(p.name, "train.unfreeze", "categorical",
                                                choices=(int(fixed),)), list(p.choices))
            if p.key == "train.unfreeze":
                _check_unfreeze(self, p, _possible_archs(p, archs, base.model.arch))

    def _error(self, p: Param, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: search-space entry '{p.name}': {message}")


def load_space(path: str | Path | None = None) -> SearchSpace:
    """Read and check a search-space YAML file.

    Args:
        path: the file; None for ``configs/tune.yaml`` in the working folder, else the copy
            beside the package (an editable install).

    Returns:
        The parsed SearchSpace (call ``validate(base_config)`` before use).

    Raises:
        ConfigError: missing file, bad YAML, or a bad entry (named in the message).
    """
    if path is None:
        here = Path(__file__).resolve().parents[1] / DEFAULT_SPACE
        path = DEFAULT_SPACE if DEFAULT_SPACE.is_file() else here
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search-space file not found: {path} (pass --space FILE)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    return parse_space(data, str(path))


def parse_space(data: Any, source: str = "<space>") -> SearchSpace:
    """Build a SearchSpace from the YAML's data (``{"params": [entry, ...]}``).

    Raises:
        ConfigError: a malformed space or entry; the message names the entry.
    """
    if not isinstance(data, dict) or set(data) != {"params"}:
        raise ConfigError(f"{source}: a search space is a mapping with one key, 'params'")
    entries = data["params"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: 'params' must be a non-empty list of entries")
    valid_keys = {f"{s}.{k}" for s, sec in Config().to_dict().items() for k in sec}
    params: list[Param] = []
    for i, entry in enumerate(entries):
        p = _parse_entry(entry, i, source, valid_keys, {q.name: q for q in params})
        if any(q.name == p.name for q in params):
            raise ConfigError(f"{source}: search-space entry '{p.name}': the name is used "
                              "twice; give one of them another 'name'")
        for q in params:
            if q.key == p.key and not _exclusive(p, q):
                raise ConfigError(
                    f"{source}: search-space entries '{q.name}' and '{p.name}' both set "
                    f"{p.key}; their 'when' conditions must exclude each other")
        params.append(p)
    return SearchSpace(tuple(params), source)


def _parse_entry(entry: Any, i: int, source: str, valid_keys: set[str],
                 earlier: dict[str, Param]) -> Param:
    label = None
    if isinstance(entry, dict):
        label = entry.get("name") or str(entry.get("key") or "").rsplit(".", 1)[-1]
    where = f"{source}: search-space entry '{label or f'#{i + 1}'}'"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a mapping with key, type and a range or choices")
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}; "
                          f"valid fields: {', '.join(FIELDS)}")
    key, kind = entry.get("key"), entry.get("type")
    if key not in valid_keys:
        raise ConfigError(f"{where}: unknown config key {key!r} (a dotted key such as "
                          "train.head_lr; see configs/default.yaml)")
    if kind not in TYPES:
        raise ConfigError(f"{where}: unknown type {kind!r}; choose one of: {', '.join(TYPES)}")
    name = str(entry.get("name") or key.rsplit(".", 1)[-1])
    where = f"{source}: search-space entry '{name}'"
    kw: dict[str, Any] = {"name": name, "key": key, "type": kind,
                          "when": _parse_when(entry.get("when"), where, earlier)}
    if kind == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices or any(
                isinstance(c, (list, dict)) for c in choices) or len(set(choices)) < len(choices):
            raise ConfigError(f"{where}: 'choices' must be a non-empty list of distinct scalars")
        extra = sorted({"low", "high", "log", "step"} & set(entry))
        if extra:
            raise ConfigError(f"{where}: a categorical takes 'choices', not {', '.join(extra)}")
        return Param(**kw, choices=tuple(choices))
    if "choices" in entry:
        raise ConfigError(f"{where}: 'choices' is for type categorical; give low and high")
    num = int if kind == "int" else (int, float)
    low, high, step, log = entry.get("low"), entry.get("high"), entry.get("step"), \
        entry.get("log", False)
    for what, v in (("low", low), ("high", high), ("step", step)):
        if (v is not None or what != "step") and (isinstance(v, bool) or not isinstance(v, num)):
            wanted = "an int" if kind == "int" else "a number"
            raise ConfigError(f"{where}: '{what}' must be {wanted}, got {v!r}")
    if low > high:
        raise ConfigError(f"{where}: low ({low}) is greater than high ({high})")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: 'log' must be true or false, got {log!r}")
    if log and (low <= 0 or step is not None):
        raise ConfigError(f"{where}: a log scale needs low > 0 and no step")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: 'step' must be > 0, got {step}")
    return Param(**kw, low=low, high=high, log=log, step=step)


def _parse_when(when: Any, where: str, earlier: dict[str, Param]) -> dict[str, tuple]:
    if when is None:
        return {}
    if not isinstance(when, dict) or not when:
        raise ConfigError(f"{where}: 'when' must map an earlier parameter to its value(s)")
    out = {}
    for name, values in when.items():
        ref = earlier.get(name)
        if ref is None:
            raise ConfigError(f"{where}: 'when' names {name!r}, which is not an earlier "
                              f"parameter; earlier: {', '.join(earlier) or 'none'}")
        values = tuple(values) if isinstance(values, list) else (values,)
        if ref.type != "categorical":
            raise ConfigError(f"{where}: 'when' can only test a categorical parameter, "
                              f"and '{name}' is {ref.type}")
        bad = [v for v in values if v not in ref.choices]
        if bad:
            raise ConfigError(f"{where}: 'when' tests {name} for {bad[0]!r}, which is not "
                              f"one of its choices: {', '.join(map(str, ref.choices))}")
        out[name] = values
    return out


def _exclusive(p: Param, q: Param) -> bool:
    """Whether two entries can never both be active (a shared condition with disjoint values)."""
    return any(n in q.when and not set(v) & set(q.when[n]) for n, v in p.when.items())


@cache
def stage_count(arch: str) -> int:
    """How many stages ``arch`` has (what ``train.unfreeze`` counts), built on no memory."""
    import torch

    with torch.device("meta"):
        return len(create_backbone(arch, 0).stages())


def _check_archs(space: SearchSpace, p: Param) -> None:
    if p.type != "categorical":
        raise space._error(p, "model.arch must be categorical")
    bad = [a for a in p.choices if a not in ARCHS]
    if bad:
        raise space._error(p, f"unknown arch {bad[0]!r}; choose from: {', '.join(ARCHS)}")


def _possible_archs(p: Param, archs: list[Param], base_arch: str) -> list[str]:
    if not archs:
        return [base_arch]
    possible = [a for a in archs if a.name in p.when]
    if possible:
        return [v for a in possible for v in p.when[a.name]]
    return sorted({c for a in archs for c in a.choices} | ({base_arch} if any(
        a.when for a in archs) else set()))


def _check_unfreeze(space: SearchSpace, p: Param, archs: list[str]) -> None:
    numbers = [v for v in p.values() if v != "all"]
    if any(isinstance(v, bool) or not isinstance(v, int) for v in numbers):
        raise space._error(p, "train.unfreeze takes whole numbers of stages or 'all'")
    for arch in archs:
        try:
            n = stage_count(arch)
        except ModelError as exc:
            raise space._error(p, str(exc)) from None
        bad = [v for v in numbers if not 0 <= v <= n]
        if bad:
            raise space._error(p, f"{arch} has {n} stages, so train.unfreeze must be 0..{n} "
                               f"or 'all', but it can be {bad[0]}; give it a range per "
                               "backbone with 'when'")
