"""Audio in: decoding (soundfile), mono down-mix, resampling (torchaudio), windowing, and
finding audio files under folders.

Every failure is an :class:`~sonicsearch.errors.AudioError` naming the file and the reason.
File names need not be UTF-8: a name's bytes reach libsndfile as they are on disk
(``os.fsencode``).

Truncated files are errors, not shorter files: an Ogg stream (Vorbis, Opus, FLAC in Ogg)
must end with its end-of-stream page, and a file that decodes to fewer frames than its
header promises (an MP3 with a Xing/Info frame count, a WAV cut short) is truncated.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from sonicsearch.audio_integrity import check_complete as _check_complete
from sonicsearch.audio_integrity import mp3_truncated, ogg_truncated
from sonicsearch.errors import AudioError
from sonicsearch.utils.native_stderr import native_stderr
from sonicsearch.utils.progress import log
from sonicsearch.utils.reporting import display_path

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au"}
)
SILENCE_PEAK = 1e-4  # a file whose peak stays below this (-80 dBFS) counts as silent
_MPEG_FRAME = 1152  # samples per MPEG-1 Layer III frame
_RESAMPLE_MARGIN_S = 0.05  # context read around a span so resampling has no edge effects
_warned: set[tuple[str, str]] = set()  # (path, decoder warning) already printed


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | Path) -> AudioInfo:
    """Read the header of an audio file.

    Raises:
        AudioError: missing, a folder, empty, not audio, or corrupt.
    """
    with _open(path) as f:
        return AudioInfo(str(path), f.samplerate, f.channels, f.frames, f.format)


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    offset: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode (part of) a file to float32 mono, resampled to ``sample_rate``.

    Only the requested span is decoded: the reader seeks to ``offset``, so taking 8 s from a
    3-hour file costs the same as taking 8 s from a 10-second one. Seeks are sample-exact
    for every format but MP3, where libsndfile's fast seek lands within about 50 ms.

    Args:
        path: a file libsndfile reads (wav, flac, ogg/vorbis, opus, mp3, aiff, au).
        sample_rate: output rate; None keeps the file's rate.
        offset: start in seconds.
        duration: length in seconds; None reads to the end.

    Returns:
        ``(wave, sr)``: a 1-D float32 array and its sample rate.

    Raises:
        AudioError: unreadable, empty, corrupt or truncated, non-audio, zero-length, an
            offset past the end, or NaN/inf samples.
    """
    if offset < 0 or (duration is not None and duration <= 0):
        raise AudioError(path, f"bad span offset={offset} duration={duration}")
    with _open(path) as f:
        native = f.samplerate
        target = sample_rate or native
        start = int(round(offset * native))
        if start >= f.frames and f.frames > 0 and offset > 0:
            end = f.frames / native
            raise AudioError(path, f"offset {offset:.2f}s is past the end ({end:.2f}s)")
        count = f.frames - start if duration is None else int(round(duration * native))
        count = max(0, min(count, f.frames - start))
        wave = _read_resampled(f, path, start, count, target)
    if wave.size == 0:
        raise AudioError(path, "no audio samples (zero-length)")
    return wave, target


def iter_blocks(
    path: str | Path, sample_rate: int | None = None, block_seconds: float = 60.0
) -> Iterator[tuple[np.ndarray, int]]:
    """Stream a file as consecutive mono blocks at ``sample_rate``; memory stays flat.

    The file is read sequentially (never seeking, which is exact for every format), and
    each block is resampled with context from its neighbours on block boundaries that fall
    on exact output samples, so the blocks joined equal the whole file resampled at once
    (to float rounding).

    Yields:
        ``(block, sr)``; every block but the last has the same length.
    """
    with _open(path) as f:
        native = f.samplerate
        target = sample_rate or native
        g = math.gcd(native, target)
        unit = native // g  # input frames that map to a whole number of output samples
        block = max(unit, int(block_seconds * native) // unit * unit)
        margin = 0 if target == native else _margin(native, unit)
        # libsndfile's MP3 decoder returns different samples when reads do not cover whole
        # MPEG frames (1152 samples) or are short, so reads go in >= 128 whole frames.
        chunk = max(128, -(-block // _MPEG_FRAME)) * _MPEG_FRAME
        raw = np.zeros(0, dtype=np.float32)
        raw_lo = 0  # native frame index of raw[0]
        pos = 0  # native frame index where the next output block starts
        eof = False
        while True:
            while not eof and raw_lo + raw.size < pos + block + margin:
                more = _read_mono(f, path, None, chunk)
                eof = more.size < chunk
                raw = np.concatenate([raw, more])
                if eof:
                    _check_complete(path, raw_lo + raw.size, f.frames, native)
            end = raw_lo + raw.size
            if pos >= end:
                return
            count = min(block, end - pos)
            if target == native:
                out = raw[pos - raw_lo : pos - raw_lo + count].copy()
            else:
                lo = max(raw_lo, pos - margin)
                hi = min(end, pos + count + margin)
                res = resample(torch.from_numpy(raw[lo - raw_lo : hi - raw_lo]), native, target)
                a = (pos - lo) * target // native
                out = res.numpy()[a : a + math.ceil(count * target / native)].copy()
            yield out, target
            pos += count
            keep_from = max(raw_lo, pos - margin)
            raw, raw_lo = raw[keep_from - raw_lo :], keep_from


def iter_windows(
    path: str | Path,
    sample_rate: int,
    window_seconds: float,
    hop_seconds: float,
    block_seconds: float = 60.0,
) -> Iterator[tuple[float, np.ndarray]]:
    """Stream fixed windows ``(start_seconds, wave)`` from a file of any length.

    Windows follow :func:`window_starts`; a file shorter than one window gives one
    window of its own length, not padded (the model takes it: zero padding made a 1-s
    clip half silence, and it rarely found its source). Memory is bounded by one block
    plus one window.
    """
    win = int(round(window_seconds * sample_rate))
    hop = int(round(hop_seconds * sample_rate))
    buffer = np.zeros(0, dtype=np.float32)
    buffer_start = 0  # absolute sample index of buffer[0]
    next_start, last_emitted = 0, -1
    total = 0
    for chunk, _ in iter_blocks(path, sample_rate, block_seconds):
        buffer = np.concatenate([buffer, chunk])
        total += chunk.size
        while next_start + win <= buffer_start + buffer.size:
            i = next_start - buffer_start
            yield next_start / sample_rate, buffer[i : i + win].copy()
            last_emitted = next_start
            next_start += hop
        # keep the last window's worth: the end-aligned tail window may need it
        drop = max(0, min(next_start - buffer_start, buffer.size - win))
        buffer, buffer_start = buffer[drop:], buffer_start + drop
    if total == 0:
        return
    last = window_starts(total, win, hop)[-1]
    if last > last_emitted:  # the end-aligned tail window, or a short clip as it is
        i = last - buffer_start
        yield last / sample_rate, buffer[i : i + win].copy()


def window_starts(n_samples: int, win: int, hop: int) -> list[int]:
    """Start samples of the windows that cover ``n_samples``.

    Regular starts every ``hop``; when more than a quarter window at the end is left over,
    one more window aligned to the end covers it. Shorter than one window: ``[0]`` (the
    embedder takes the clip as it is; :func:`frame_windows` pads it).
    """
    if n_samples <= win:
        return [0]
    starts = list(range(0, n_samples - win + 1, hop))
    if n_samples - (starts[-1] + win) > win // 4:
        starts.append(n_samples - win)
    return starts


def frame_windows(wave: np.ndarray, sample_rate: int, window_seconds: float, hop_seconds: float):
    """Cut an in-memory wave into windows: ``(windows (n, win) float32, spans (n, 2) s)``."""
    win = int(round(window_seconds * sample_rate))
    hop = int(round(hop_seconds * sample_rate))
    starts = window_starts(wave.size, win, hop)
    windows = np.stack([pad_to(wave[s : s + win], win) for s in starts]).astype(np.float32)
    ends = [min(s + win, wave.size) for s in starts]
    spans = np.array([[s / sample_rate, e / sample_rate] for s, e in zip(starts, ends)])
    return windows, spans


def pad_to(wave: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad (at the end) or cut a 1-D wave to ``length`` samples."""
    if wave.size >= length:
        return wave[:length]
    return np.pad(wave, (0, length - wave.size))


def check_usable(wave: np.ndarray, sample_rate: int, path: str | Path, min_seconds: float) -> None:
    """Raise AudioError for a clip that is too short or silent throughout."""
    seconds = wave.size / sample_rate
    if seconds < min_seconds:
        raise AudioError(path, too_short(seconds, min_seconds))
    if float(np.max(np.abs(wave))) < SILENCE_PEAK:
        raise AudioError(path, "silent (peak below -80 dBFS)")


def too_short(seconds: float, min_seconds: float) -> str:
    """``too short (0.10s < 0.50s)``, with as many decimals as it takes for the two numbers
    to differ when printed (``0.4995s < 0.5000s``, not ``0.50s < 0.50s``)."""
    for digits in range(2, 10):
        a, b = f"{seconds:.{digits}f}", f"{min_seconds:.{digits}f}"
        if a != b:
            break
    return f"too short ({a}s < {b}s)"


def find_audio_files(
    inputs: Iterable[str | Path], errors: list[tuple[str, str]] | None = None
) -> list[Path]:
    """Files and folders -> sorted, de-duplicated audio files (folders searched recursively).

    Symlinked folders are followed once (loops are cut); unreadable entries are skipped
    and, when ``errors`` is given, appended to it as ``(path, reason)``.

    Raises:
        AudioError: an input that does not exist.
    """
    found: dict[str, Path] = {}
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise AudioError(p, _missing(p, "no such file or folder"))
        if p.is_file():
            found.setdefault(os.path.realpath(p), p.absolute())
            continue
        seen_dirs: set[str] = set()

        def onerror(exc: OSError) -> None:
            if errors is not None:
                errors.append((str(exc.filename), f"unreadable ({exc.strerror})"))

        for root, dirs, files in os.walk(p, onerror=onerror, followlinks=True):
            real = os.path.realpath(root)
            if real in seen_dirs:
                dirs[:] = []
                continue
            seen_dirs.add(real)
            dirs.sort()
            for name in sorted(files):
                if Path(name).suffix.lower() in AUDIO_EXTENSIONS and not name.startswith("."):
                    fp = Path(root) / name
                    if fp.is_file():
                        found.setdefault(os.path.realpath(fp), fp.absolute())
                    elif errors is not None and fp.is_symlink():  # a loop or a dangling link
                        errors.append((str(fp.absolute()),
                                       _missing(fp, "broken symbolic link (no such file)")))
    return sorted(found.values())


def _missing(path: Path, absent: str) -> str:
    """Why ``path`` cannot be reached: ``absent`` when nothing is there, else the OS's reason
    (a symlink pointing at itself: "too many levels of symbolic links")."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return absent
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "too many levels of symbolic links (a symlink loop)"
        return f"unreadable ({exc.strerror})"
    return absent


def _warn(path: Path, notes: list[str]) -> None:
    """The decoder's warnings about ``path``, on stderr with its name, once per process."""
    for note in notes:
        if (str(path), note) not in _warned:
            _warned.add((str(path), note))
            log(f"warning: {display_path(path)}: {note}")


def _open(path: str | Path) -> sf.SoundFile:
    p = Path(path)
    if not p.exists():
        raise AudioError(p, _missing(p, "no such file"))
    if p.is_dir():
        raise AudioError(p, "is a folder, not an audio file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise AudioError(p, f"unreadable ({exc.strerror})") from None
    if size == 0:
        raise AudioError(p, "empty file (0 bytes)")
    with native_stderr() as notes:  # the MP3 decoder warns from C, without a file name
        try:
            f = sf.SoundFile(os.fsencode(p))  # the name's bytes, UTF-8 or not
        except sf.LibsndfileError as exc:
            raise AudioError(p, f"not a readable audio file ({_short(exc)})") from None
        except (OSError, RuntimeError) as exc:
            raise AudioError(p, f"unreadable ({exc})") from None
    _warn(p, notes)
    check = {"OGG": ogg_truncated, "MP3": mp3_truncated}.get(f.format)
    if check is not None and (why := check(p, size)) is not None:
        f.close()
        raise AudioError(p, why)
    if f.samplerate <= 0 or f.channels <= 0:
        f.close()
        raise AudioError(p, "corrupt header (no sample rate or channels)")
    if f.frames <= 0:
        f.close()
        raise AudioError(p, "no audio samples (zero-length)")
    return f


def _read_resampled(f: sf.SoundFile, path, start: int, count: int, target: int) -> np.ndarray:
    """Read ``count`` native frames from ``start`` and resample them, with context."""
    native = f.samplerate
    if count <= 0:
        return np.zeros(0, dtype=np.float32)
    if target == native:
        wave = _read_mono(f, path, start, count)
        if start + count == f.frames:
            _check_complete(path, start + wave.size, f.frames, native)
        return wave
    unit = native // math.gcd(native, target)
    margin = _margin(native, unit)
    lo = max(0, (start - margin) // unit * unit)
    hi = min(f.frames, start + count + margin)
    raw = _read_mono(f, path, lo, hi - lo)
    if hi == f.frames:
        _check_complete(path, lo + raw.size, f.frames, native)
    out = resample(torch.from_numpy(raw), native, target).numpy()
    a = (start - lo) * target // native
    b = a + math.ceil(count * target / native)
    return np.ascontiguousarray(out[a:b], dtype=np.float32)


def _margin(native: int, unit: int) -> int:
    return max(unit, int(_RESAMPLE_MARGIN_S * native) // unit * unit)


def _read_mono(f: sf.SoundFile, path, start: int | None, count: int) -> np.ndarray:
    """Read ``count`` frames (from ``start``, or from where the reader is when None)."""
    try:
        if start is not None:
            f.seek(start)
        data = f.read(count, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(path, f"corrupt or truncated ({_short(exc)})") from None
    if data.shape[0] == 0 and count > 0 and start is not None:
        raise AudioError(path, "truncated (no samples where the header promises some)")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).all():
        bad = int((~np.isfinite(wave)).sum())
        raise AudioError(path, f"contains {bad} NaN or infinite samples")
    return np.ascontiguousarray(wave, dtype=np.float32)


@lru_cache(maxsize=16)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(orig, new)


def resample(wave: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """``wave`` from ``orig`` Hz to ``new`` Hz with torchaudio's windowed-sinc resampler
    (one cached per rate pair); what every file read uses, so in-memory clips match."""
    with torch.no_grad():
        return _resampler(orig, new)(wave)


def _short(exc: Exception) -> str:
    text = getattr(exc, "error_string", None) or str(exc)  # libsndfile's, without the path
    text = text.strip().splitlines()[0] if text.strip() else exc.__class__.__name__
    return text[:160]
