"""A synthetic labelled "genre" corpus in the GTZAN layout, for demos, tests and benchmarks.

Each genre is a :class:`Recipe`: a tempo range, swing, drum patterns and kits, scales and
chord progressions, and palettes of bass, chord and lead instruments, noise and room. A clip
draws everything from its recipe with its own RNG (seeded from the corpus seed, the genre
index and the clip index), so the same arguments give byte-identical files (on one platform
and library versions: vector math may round differently elsewhere), and any one clip can be
made alone (:func:`synth_clip`).

Classes are meant to be hard, like real genres: every clip gets a random key, tempo,
instrument choices, mix, section changes, loudness, EQ tilt and background noise, and
neighbouring genres share instruments, patterns and tempi.

Sound sources, all vectorised numpy: wavetable additive synthesis, FM, Karplus-Strong
plucked strings, saturated (tanh) leads, and noise/sine drum synthesis; effects are
noise-convolution reverb, a feedback (dub) delay, Butterworth filters and an FFT EQ.

The stages, one module each: ``recipes`` (scales, drum patterns, the genre table),
``instruments`` (timbres, notes, drum kits), ``filters``, ``arrange`` (sections, bars,
notes), ``render`` (a clip's buffers and the master bus, :func:`synth_clip`) and ``corpus``
(the files, :func:`make_synth_corpus`).
"""

from sonicsearch.data.synth.corpus import make_synth_corpus
from sonicsearch.data.synth.instruments import TIMBRES
from sonicsearch.data.synth.recipes import GENRES, MAX_GENRES, PATTERNS, RECIPES, SCALES, Recipe
from sonicsearch.data.synth.render import synth_clip

__all__ = ["GENRES", "MAX_GENRES", "PATTERNS", "RECIPES", "SCALES", "TIMBRES", "Recipe",
           "make_synth_corpus", "synth_clip"]
