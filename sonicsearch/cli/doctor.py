"""Checks that the compiled parts of the stack load and belong together.

A fresh install can resolve a torchaudio built for another torch (it imports, then dies on
an undefined C++ symbol); ``sonicsearch doctor`` and CI load every compiled extension right
after install so such a drift fails loudly, with the fix in the message.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from sonicsearch.errors import SonicsearchError

# torch, torchvision and torchaudio are built against each other and move as one.
TORCH_FAMILY = {"torch": "2.11.0", "torchvision": "0.26.0", "torchaudio": "2.11.0"}
FIX = 'reinstall with the lock: pip install -e ".[dev]" -c constraints.txt'


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    detail: str = ""


def _release(version: str) -> str:
    return version.split("+", 1)[0]


def _load(name: str):
    try:
        return importlib.import_module(name)
    except Exception as exc:  # an ImportError or an OSError from a shared library
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SonicsearchError(f"cannot load {name}: {first}; {FIX}") from exc


def check_stack() -> list[Component]:
    """Import torch, torchvision, torchaudio, faiss and soundfile and run one tiny op in each.

    Returns:
        One :class:`Component` per library, with its version.

    Raises:
        SonicsearchError: a library fails to load or run, or the torch family is mixed.
    """
    found = []
    for name, wanted in TORCH_FAMILY.items():
        module = _load(name)
        have = _release(module.__version__)
        if have != wanted:
            raise SonicsearchError(f"{name} {have} is installed, this release needs {wanted} "
                                   f"(torch, torchvision and torchaudio move together); {FIX}")
        found.append(Component(name, module.__version__))
    torch = importlib.import_module("torch")
    torchaudio = importlib.import_module("torchaudio")
    try:  # exercises torchaudio's compiled ops against this torch
        mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=256, n_mels=8)
        mel(torch.zeros(1, 1600))
    except Exception as exc:
        raise SonicsearchError(f"torchaudio does not run with this torch: {exc}; {FIX}") from exc
    cuda = torch.cuda.is_available()
    found[0] = Component("torch", torch.__version__,
                         f"CUDA {torch.version.cuda}, {'a GPU' if cuda else 'no GPU'} visible")
    faiss = _load("faiss")
    index = faiss.IndexFlatIP(4)
    index.add(torch.eye(4).numpy())
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    found.append(Component("faiss", faiss.__version__, f"{gpus} GPU(s) for FAISS"))
    soundfile = _load("soundfile")
    formats = soundfile.available_formats()
    missing = [f for f in ("WAV", "FLAC", "OGG", "MP3") if f not in formats]
    if missing:
        raise SonicsearchError(f"libsndfile {soundfile.__libsndfile_version__} cannot read "
                               f"{', '.join(missing)}; install soundfile >= 0.13")
    found.append(Component("soundfile", soundfile.__version__,
                           f"libsndfile {soundfile.__libsndfile_version__}"))
    return found
