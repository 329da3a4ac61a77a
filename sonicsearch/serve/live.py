"""The index a server answers from, switched to each new generation without a restart.

A watcher polls the index's CURRENT pointer. When it names a new generation, the new
:class:`AudioIndex` is opened, its model made ready and its no-match calibration computed,
all off the event loop; then it replaces the live one in one assignment. Queries that
already hold the old index finish on it; it is closed when the last of them lets go.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sonicsearch.errors import IndexStoreError
from sonicsearch.index import AudioIndex
from sonicsearch.index import api as index_api
from sonicsearch.index import layout as L
from sonicsearch.index.calibration import calibration, confidence_model
from sonicsearch.index.rollups import ROLLUP_DEFAULT
from sonicsearch.index.types import Embedder

log = logging.getLogger("sonicsearch.serve")


class LiveIndex:
    """The live generation of one index directory, plus the lock its model runs under.

    Args:
        index_dir: the directory ``build-index`` writes.
        device: auto | cpu | cuda, for FAISS and the model.
        embedder: a loaded model to use (tests); None loads the index's own copy.
    """

    def __init__(self, index_dir: str | Path, device: str = "auto",
                 embedder: Embedder | None = None):
        self.layout = L.IndexLayout(index_dir)
        self.device = device
        self.model_lock = threading.Lock()  # one query runs the model and FAISS at a time
        self._lock = threading.Lock()
        self._refs: dict[int, int] = {}
        self._embedder = embedder
        self.current: AudioIndex = self._open()
        self.swaps = 0
        self.last_error: str | None = None

    @property
    def generation(self) -> str:
        return Path(self.current.gen).name

    def _open(self) -> AudioIndex:
        idx = None
        if self._embedder is not None:
            try:
                idx = AudioIndex.open(self.layout.root, embedder=self._embedder,
                                      device=self.device)
            except IndexStoreError:
                idx = None  # another model now (or damaged): opened again below
        if idx is None:
            idx = AudioIndex.open(self.layout.root, device=self.device)
        fc, feats = idx.embedder.feature_config, idx.meta["features"]
        if (fc.window_seconds, fc.hop_seconds) != (feats["window_seconds"],
                                                    feats["hop_seconds"]):
            # same model, other windowing: a fresh copy windowed as this index
            idx.use_embedder(_reload(idx))
        self._embedder = idx.embedder
        calibration(idx)  # computed (or read) now, not on the first query
        confidence_model(idx, ROLLUP_DEFAULT)  # the default roll-up's, likewise
        return idx

    def refresh(self) -> bool:
        """Switch to the generation CURRENT names, if it is a new one (blocking; call it
        off the event loop). Returns True when it switched; a failure keeps the old one."""
        try:
            name = self.layout.current_name()
            if name is None or name == self.generation:
                return False
            new = self._open()
        except Exception as exc:  # keep serving the old generation; retried next poll
            self.last_error = f"{exc.__class__.__name__}: {exc}"
            log.warning("index refresh failed, still serving %s: %s", self.generation, exc)
            return False
        with self._lock:
            old, self.current = self.current, new
            self.swaps += 1
            self.last_error = None
            idle = self._refs.get(id(old), 0) == 0
        if idle:
            old.close()
        log.info("now serving %s (%d files)", self.generation, len(new.store.records))
        return True

    @contextmanager
    def use(self) -> Iterator[AudioIndex]:
        """Hold the live index for one request; it stays open until released."""
        with self._lock:
            idx = self.current
            self._refs[id(idx)] = self._refs.get(id(idx), 0) + 1
        try:
            yield idx
        finally:
            with self._lock:
                left = self._refs[id(idx)] = self._refs[id(idx)] - 1
                if left == 0:
                    del self._refs[id(idx)]
                close = left == 0 and idx is not self.current
            if close:
                idx.close()

    def close(self) -> None:
        self.current.close()


def _reload(idx: AudioIndex) -> Embedder:
    return index_api.load_embedder(idx.model_path, idx.device, idx.meta["features"])
