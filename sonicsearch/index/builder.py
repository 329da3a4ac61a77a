"""``build-index`` as one library call: :func:`build_index` takes the command's options
one to one (as autofaiss' ``build_index`` does) and resolves what they leave open: the
config file's ``index:`` section, the backend and its uri (the existing index's unless
given), the model (the index's own, or the shipped base model for a new index), its
windowing, and embedding on Ray. It then builds through :meth:`AudioIndex.build`.

The embedder-level build (:func:`sonicsearch.index.build.build_index`) is what it calls;
Python code that holds a loaded Embedder and an IndexConfig can call that directly.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sonicsearch.audio import AUDIO_EXTENSIONS, find_audio_files
from sonicsearch.config import IndexConfig, load_index_config
from sonicsearch.embed.types import check_hop, check_window
from sonicsearch.errors import ConfigError, DataError, IndexStoreError, OptionError
from sonicsearch.index import api
from sonicsearch.index import layout as L
from sonicsearch.index.api import DEFAULT_INDEX_DIR, AudioIndex
from sonicsearch.index.backends import backend_of, check_backend, inherited_uri
from sonicsearch.index.codec import VECTOR_FORMATS
from sonicsearch.index.types import BuildReport, Embedder
from sonicsearch.model import base
from sonicsearch.scale.ray_embed import RayEmbedder
from sonicsearch.utils.progress import log

__all__ = ["build_index"]


def build_index(
    audio: Sequence[str | Path],
    model: str | Path | None = None,
    index: str | Path = DEFAULT_INDEX_DIR,
    config: str | Path | None = None,
    window: float | None = None,
    hop: float | None = None,
    index_type: str | None = None,
    vectors: str | None = None,
    device: str | None = None,
    rebuild: bool = False,
    backend: str | None = None,
    uri: str | None = None,
    ray: bool = False,
    ray_address: str | None = None,
    ray_workers: int | None = None,
    fast: bool | None = None,
    calibrate: bool = True,
    progress: Callable[[int, int, str, int, float], None] | None = None,
) -> BuildReport:
    """Embed audio and build (or update, incrementally) a self-contained index.

    Args:
        audio: audio files and/or folders (recursive).
        model: a model.pt, or "base"; None: the index's own model, or base for a new index.
        index: the index directory.
        config: a YAML config file (its ``index:`` section; the options below override it).
        window, hop: the window length and hop, seconds (None: the model's).
        index_type: auto | flat | hnsw | ivf | ivfpq (None: the config's).
        vectors: auto | float32 | pca-int8 (None: the config's, else the index's, else auto).
        device, rebuild: auto | cpu | cuda (None: the config's); start over (to switch models).
        backend, uri: faiss | milvus, and where milvus keeps its vectors (None: the
            config's, else the index's, else faiss and DIR/milvus.db).
        ray, ray_address, ray_workers: embed on Ray Data (a local Ray unless an address).
        fast: embed on the int8 CPU path (None: the config's, else the index's, else off).
        calibrate: measure the match confidence and no-match thresholds now, not later.
        progress: called as ``progress(done, total, path, windows, audio_seconds)``.

    Returns:
        The BuildReport (``written`` is False when nothing changed).

    Raises:
        AudioError: a missing input. DataError: no audio. OptionError: ``window`` or ``hop``
            does not suit the model. ConfigError, IndexStoreError, ModelError.
    """
    audio, index = [Path(p) for p in audio], Path(index)
    check_inputs(audio)  # before the model loads
    cfg = resolve_index_config(index, config, index_type, device, backend, uri, vectors, fast)
    embedder = _load_embedder(index, model, cfg, window, hop)
    remote = (_ray_embedder(embedder, cfg.device, ray_address, ray_workers, cfg.fast)
              if ray or ray_address else None)
    idx = AudioIndex.build(audio, remote or embedder, index, config=cfg, rebuild=rebuild,
                           progress=progress, device=cfg.device, window_seconds=window,
                           hop_seconds=hop)
    with idx:
        if calibrate:  # queries embed in float32, as the fit's excerpts must
            measure_confidence(None if remote or cfg.fast else idx, index, cfg.device)
    return idx.build_report


def measure_confidence(idx: AudioIndex | None, index: Path, device: str) -> None:
    """The index's no-match calibration and default roll-up's confidence model, measured
    now when its generation has none yet (what a first query or ``serve`` would do), on
    ``idx`` (None: ``index`` opened as a query opens it, after a build whose embedding was
    not the queries': on Ray actors or the int8 path)."""
    if idx is None:
        with AudioIndex.open(index, device=device) as mine:
            return measure_confidence(mine, index, device)
    from sonicsearch.index.calibration import calibration, confidence_fitted
    from sonicsearch.index.rollups import ROLLUP_DEFAULT

    if confidence_fitted(idx, ROLLUP_DEFAULT, thresholds=True):
        return
    log("measuring match confidence (degraded excerpts of the index's own files; once per "
        "generation, kept in calibration.json)")
    t0 = time.monotonic()
    cal = calibration(idx, confidence_for=ROLLUP_DEFAULT)
    fit = cal["confidence"]["fits"][ROLLUP_DEFAULT]
    what = (f"fitted on {fit['excerpts']} excerpts" if fit.get("model") is not None
            else f"none: {fit.get('reason')}")
    how = (f"carried over from {cal['carried']['from']}" if "carried" in cal
           else f"measured in {time.monotonic() - t0:.0f}s")
    log(f"match confidence {how}: {what}")


def _load_embedder(index: Path, model: str | Path | None, cfg: IndexConfig,
                   window: float | None, hop: float | None) -> Embedder:
    """The model a build embeds with (on the int8 path when ``cfg.fast``), its windowing
    checked, and a log line saying which."""
    model, features = _model_of(index, model)
    embedder = api.load_embedder(model, cfg.device, features, batch_size=cfg.batch_size,
                                 fast=cfg.fast)
    _check_windowing(embedder, window, hop)
    log(f"model {embedder.arch} ({embedder.model_sha256[:12]}), {embedder.dim}-d, on "
        f"{getattr(embedder, 'device', cfg.device)}{', int8 (--fast)' if cfg.fast else ''}")
    return embedder


def check_inputs(inputs: Sequence[Path]) -> None:
    """Every input exists and at least one audio file is among them.

    Raises:
        AudioError: an input that does not exist.
        DataError: no audio file under the inputs.
    """
    errors: list[tuple[str, str]] = []
    if not find_audio_files(inputs, errors) and not errors:
        raise DataError(f"no audio files found in {', '.join(map(str, inputs))} (looked for "
                        f"{', '.join(sorted(AUDIO_EXTENSIONS))})")


def resolve_index_config(index: Path, config: str | Path | None, index_type: str | None,
                         device: str | None, backend: str | None,
                         uri: str | None, vectors: str | None = None,
                         fast: bool | None = None) -> IndexConfig:
    """The IndexConfig a build uses: the config file's section, the options over it, and
    the existing index's backend, uri, asked vector format and embedding path (int8 or
    float32) where neither sets them.

    Raises:
        ConfigError: a bad config file, or a backend / uri that does not fit.
    """
    cfg, keys = load_index_config(config)
    cfg.index_type = index_type or cfg.index_type
    cfg.device = device or cfg.device
    meta = _live_meta(index)
    old = backend_of(meta)
    asked = meta.get("vectors", {}).get("asked")
    cfg.vectors = VECTOR_FORMATS.check(
        vectors or (cfg.vectors if "vectors" in keys or asked is None else asked))
    cfg.backend = backend or (cfg.backend if "backend" in keys else old["name"])
    if fast is not None or "fast" not in keys:
        cfg.fast = fast if fast is not None else meta.get("embedding") == "int8"
    if uri is not None:
        cfg.uri = uri
    elif not cfg.uri:  # keep the index's place (a Milvus uri), if the backend stays
        cfg.uri = inherited_uri(cfg.backend, old, index)
    check_backend(cfg.backend, cfg.uri or None)  # before the model loads
    return cfg


def _model_of(index: Path, model: str | Path | None) -> tuple[Path, dict | None]:
    """The model to embed with and the windowing to load it with."""
    if model is None and not (index / L.CURRENT).exists():
        log(f"no --model given: embedding with the shipped base model ({base.VERSION})")
        return Path("base"), None  # a new index: the shipped base model
    if model is None:
        return _index_model(index)
    return Path(model), None


def _check_windowing(embedder: Embedder, window: float | None, hop: float | None) -> None:
    """``window`` and ``hop`` against the loaded model's front end."""
    fc = embedder.feature_config
    for value, check, flag in ((window, check_window, "--window"), (hop, check_hop, "--hop")):
        try:
            if value is not None:
                check(fc, value)
        except ConfigError as exc:
            raise OptionError(flag, str(exc)) from None


def _index_model(index: Path) -> tuple[Path, dict | None]:
    """The model an existing index holds, and its windowing, without opening the rest (so
    that ``rebuild`` works on an index whose other files are damaged)."""
    try:
        gen = L.IndexLayout(index).current()
    except IndexStoreError:
        gen = None
    meta = None
    if gen is not None:
        try:
            meta = L.read_index_json(gen)
        except IndexStoreError:
            meta = None
    if meta is None or not (gen / L.MODEL).is_file():
        raise IndexStoreError(f"no usable index at {index} to take the model from: pass "
                              "--model PATH")
    return gen / L.MODEL, meta.get("features")


def _live_meta(index: Path) -> dict[str, Any]:
    """The live generation's index.json; empty when there is no index yet or it is too
    damaged to say (``rebuild`` with a model then starts over)."""
    try:
        gen = L.IndexLayout(index).current()
        return L.read_index_json(gen) if gen is not None else {}
    except IndexStoreError:
        return {}


def _ray_embedder(embedder: Embedder, device: str, address: str | None,
                  workers: int | None, fast: bool = False) -> Embedder:
    """Wrap the model for Ray: workers load the file the driver loaded (not the name the
    build was given, such as "base", which a worker would take for a path), windowed
    alike."""
    factory = functools.partial(api.load_embedder, str(Path(embedder.model_path).resolve()),
                                "auto" if device == "auto" else device, fast=fast)
    where = f"Ray at {address}" if address else "a local Ray"
    log(f"embedding on {where} with {workers or 'all'} workers")
    return RayEmbedder(embedder, factory, address, workers)
