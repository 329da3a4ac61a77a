"""sonicsearch: audio similarity search with fine-tuned CNN embeddings and FAISS."""

from __future__ import annotations

from sonicsearch._version import __version__
from sonicsearch.audio import load_audio

__all__ = ["AudioIndex", "Embedder", "load_audio", "__version__"]


def __getattr__(name: str):
    # Heavy parts (torchvision, faiss) load on first use, so `import sonicsearch` stays quick.
    if name == "Embedder":
        from sonicsearch.embed.embedder import Embedder

        return Embedder
    if name == "AudioIndex":
        from sonicsearch.index import AudioIndex

        return AudioIndex
    raise AttributeError(f"module 'sonicsearch' has no attribute {name!r}")
