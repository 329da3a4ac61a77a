"""The embedding stage: audio -> L2-normalised window vectors with time spans.

``types`` is the model-to-index contract (:class:`EmbedderProtocol`, :class:`EmbeddedFile`,
window checks), light enough for the index to import (numpy and the config only);
``embedder`` is the torch :class:`Embedder` that satisfies it. Both are re-exported here;
the torch half loads on first use, so importing the contract never imports torch.
"""

from __future__ import annotations

from sonicsearch.embed.types import (
    EmbeddedFile,
    EmbedderProtocol,
    check_hop,
    check_window,
    min_window_samples,
    with_windows,
)

_EMBEDDER = ("Embedder", "QUIET_DBFS", "WAVEFORM_BLOCK_WINDOWS", "loud_mask", "window_rms_dbfs")

__all__ = ["EmbeddedFile", "EmbedderProtocol", "check_hop", "check_window",
           "min_window_samples", "with_windows", *_EMBEDDER]


def __getattr__(name: str):
    # The torch half loads on first use, so the contract stays importable without torch.
    if name in _EMBEDDER:
        from sonicsearch.embed import embedder

        return getattr(embedder, name)
    raise AttributeError(f"module 'sonicsearch.embed' has no attribute {name!r}")
