from __future__ import annotations

import os
import time

import numpy as np
import pytest
from audio_files import tone, write_audio

from sonicsearch.audio import (
    audio_info,
    check_usable,
    find_audio_files,
    frame_windows,
    iter_blocks,
    iter_windows,
    load_audio,
    window_starts,
)
from sonicsearch.errors import AudioError


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "opus", "mp3"])
@pytest.mark.parametrize("sr", [8000, 44100, 48000])
def test_every_format_and_rate_to_mono_22k(tmp_path, ext, sr):
    if ext == "opus" and sr == 44100:
        sr = 24000  # opus only codes 8/12/16/24/48 kHz
    path = write_audio(tmp_path / f"x.{ext}", tone(2.0, sr, 300, channels=2), sr)
    wave, out_sr = load_audio(path, sample_rate=22050)
    assert out_sr == 22050 and wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size - 2.0 * 22050) <= 0.03 * 22050  # codecs pad a little
    # The dominant frequency survives decoding and resampling (mono mix of 300 + 600 Hz).
    spec = np.abs(np.fft.rfft(wave[2000:2000 + 22050]))
    assert abs(np.argmax(spec) - 300) <= 3


def test_native_rate_kept_when_no_rate_given(tmp_path):
    path = write_audio(tmp_path / "a.flac", tone(1.0, 96000), 96000)
    wave, sr = load_audio(path)
    assert sr == 96000 and wave.size == 96000


def test_six_channels_are_averaged(tmp_path):
    sr = 16000
    data = np.zeros((sr, 6), np.float32)
    data[:, 2] = 0.6
    path = write_audio(tmp_path / "six.wav", data, sr)
    wave, _ = load_audio(path)
    assert np.allclose(wave, 0.1, atol=1e-4)
    assert audio_info(path).channels == 6


def test_offset_and_duration_read_only_that_span(tmp_path):
    sr = 22050
    ramp = (np.arange(10 * sr) / (10 * sr)).astype(np.float32)[:, None] * 0.9
    path = write_audio(tmp_path / "ramp.wav", ramp, sr)
    part, _ = load_audio(path, offset=4.0, duration=2.0)
    assert part.size == 2 * sr
    assert np.allclose(part, ramp[4 * sr:6 * sr, 0], atol=1e-4)
    tail, _ = load_audio(path, offset=9.5)
    assert tail.size == sr // 2
    with pytest.raises(AudioError, match="past the end"):
        load_audio(path, offset=11.0)


def test_offset_seeks_instead_of_decoding_everything(tmp_path):
    sr = 8000
    long = np.zeros((sr * 60 * 30, 1), np.float32)  # 30 minutes
    long[::97] = 0.1
    path = write_audio(tmp_path / "long.flac", long, sr)
    t0 = time.perf_counter()
    load_audio(path, offset=1700.0, duration=8.0)
    seek_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_audio(path)
    full_time = time.perf_counter() - t0
    assert seek_time < full_time / 5


@pytest.mark.parametrize("ext", ["wav", "mp3", "opus"])
def test_streaming_blocks_equal_whole_file(tmp_path, ext):
    sr = 48000
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((sr * 7, 1)) * 0.1).astype(np.float32)
    path = write_audio(tmp_path / f"n.{ext}", data, sr)
    whole, _ = load_audio(path, 22050)
    for seconds in (0.3, 2.0, 100.0):
        blocks = np.concatenate([b for b, _ in iter_blocks(path, 22050, seconds)])
        assert blocks.shape == whole.shape
        assert np.abs(blocks - whole).max() < 1e-5


def test_streaming_windows_equal_in_memory_windows(tmp_path):
    sr = 22050
    path = write_audio(tmp_path / "t.wav", tone(20.3, sr, 220), sr)
    wave, _ = load_audio(path)
    windows, spans = frame_windows(wave, sr, 3.0, 1.5)
    streamed = list(iter_windows(path, sr, 3.0, 1.5, block_seconds=2.0))
    assert len(streamed) == len(windows)
    for (start, w), ref, span in zip(streamed, windows, spans):
        assert start == pytest.approx(span[0])
        assert np.abs(w - ref).max() < 1e-6


def test_streaming_memory_is_flat(tmp_path):
    import tracemalloc

    sr = 8000
    peaks = []
    for minutes in (2, 16):
        path = write_audio(tmp_path / f"m{minutes}.wav", np.full((sr * 60 * minutes, 1), 0.1,
                                                                   np.float32), sr)
        tracemalloc.start()
        n = sum(1 for _ in iter_windows(path, 16000, 3.0, 1.5, block_seconds=10.0))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert n > 0
    assert peaks[1] < peaks[0] * 1.5  # 8x longer file, about the same peak memory


def test_window_starts_cover_the_end():
    assert window_starts(100, 30, 15) == [0, 15, 30, 45, 60, 70]
    assert window_starts(20, 30, 15) == [0]
    assert window_starts(90, 30, 15)[-1] == 60


def test_short_clip_is_one_padded_window():
    wave = np.ones(1000, np.float32)
    windows, spans = frame_windows(wave, 1000, 3.0, 1.5)
    assert windows.shape == (1, 3000) and windows[0, 999] == 1 and windows[0, 1000] == 0
    assert spans.tolist() == [[0.0, 1.0]]


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"this is not audio at all" * 40), "not a readable audio"),
        (lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt "), "not a readable audio"),
    ],
)
def test_bad_files_raise_typed_errors(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=reason) as info:
        load_audio(path)
    assert info.value.path == str(path)


def test_truncated_and_zero_length_files(tmp_path):
    sr = 8000
    good = write_audio(tmp_path / "g.flac", tone(3.0, sr), sr)
    blob = open(good, "rb").read()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(blob[: len(blob) // 3])
    try:
        wave, _ = load_audio(cut)
        assert wave.size < 3 * sr  # libsndfile may return what is there
    except AudioError as exc:
        assert "corrupt" in exc.reason or "truncated" in exc.reason
    zero = write_audio(tmp_path / "zero.wav", np.zeros((0, 1), np.float32), sr)
    with pytest.raises(AudioError, match="zero-length"):
        load_audio(zero)


def test_missing_and_folder_and_nan(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="folder"):
        load_audio(tmp_path)
    data = tone(1.0, 8000)
    data[100] = np.nan
    import soundfile as sf

    sf.write(tmp_path / "nan.wav", data, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(tmp_path / "nan.wav")


def test_check_usable_rejects_silence_and_too_short():
    with pytest.raises(AudioError, match="silent"):
        check_usable(np.zeros(16000, np.float32), 16000, "x", 0.5)
    with pytest.raises(AudioError, match="too short"):
        check_usable(np.ones(100, np.float32), 16000, "x", 0.5)
    check_usable(np.ones(16000, np.float32) * 0.1, 16000, "x", 0.5)


def test_find_audio_files_recursive_unicode_and_symlink_loop(tmp_path):
    sr = 8000
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_audio(tmp_path / "a" / "b" / "ünï cødé.flac", tone(1, sr), sr)
    write_audio(tmp_path / "a" / "x.WAV", tone(1, sr), sr)
    (tmp_path / "a" / "notes.txt").write_text("hi")
    os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "loop")
    errors: list = []
    files = find_audio_files([tmp_path, tmp_path / "a" / "x.WAV"], errors)
    names = sorted(f.name for f in files)
    assert names == ["x.WAV", "ünï cødé.flac"]
    with pytest.raises(AudioError, match="no such file"):
        find_audio_files([tmp_path / "missing"])


def test_unicode_path_loads(tmp_path):
    path = write_audio(tmp_path / "日本語 é.ogg", tone(1.0, 16000), 16000)
    wave, sr = load_audio(path, 16000)
    assert sr == 16000 and wave.size > 15000


@pytest.mark.parametrize("ext", ["ogg", "opus", "mp3"])
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_encoded_files_are_errors_not_shorter_files(tmp_path, ext, keep):
    sr = 16000 if ext == "opus" else 22050
    rng = np.random.default_rng(1)
    noise = (0.1 * rng.standard_normal((6 * sr, 1))).astype(np.float32)
    good = write_audio(tmp_path / f"good.{ext}", noise, sr)
    assert load_audio(good)[0].size == 6 * sr  # complete: fine
    assert sum(w.size for w, _ in iter_blocks(good, 8000, block_seconds=1.0)) == 6 * 8000
    blob = open(good, "rb").read()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(blob[: int(len(blob) * keep)])
    readers = [lambda: audio_info(cut), lambda: load_audio(cut),
               lambda: load_audio(cut, 8000),
               lambda: list(iter_windows(cut, 8000, 1.0, 0.5, block_seconds=1.0))]
    for read in readers:
        with pytest.raises(AudioError, match="truncated"):
            read()


def test_a_file_name_that_is_not_utf8_loads(tmp_path):
    name = os.fsdecode(b"caf\xe9.wav")  # Latin-1 bytes: a lone surrogate in the str
    import soundfile as sf

    sf.write(os.fsencode(tmp_path / name), tone(1.0, 8000)[:, 0], 8000)
    files = find_audio_files([tmp_path])
    assert [f.name for f in files] == [name]
    assert audio_info(files[0]).frames == 8000
    assert load_audio(files[0])[0].size == 8000
    assert sum(w.size for w, _ in iter_blocks(files[0])) == 8000


def test_a_small_shortfall_against_the_header_is_not_truncation():
    from sonicsearch.audio_integrity import check_complete

    sr, promised = 44100, 441 * 44100
    check_complete("a.mp3", promised - int(0.38 * sr), promised, sr)  # 0.09 %: complete
    with pytest.raises(AudioError, match="truncated"):
        check_complete("a.mp3", int(promised * 0.97), promised, sr)


def test_a_self_pointing_symlink_is_skipped_and_named(tmp_path):
    """A link to itself (and a dangling one) used to vanish from a build without a word."""
    write_audio(tmp_path / "ok.wav", tone(1.0, 8000), 8000)
    os.symlink("loop.wav", tmp_path / "loop.wav")
    os.symlink("gone.wav", tmp_path / "dangling.wav")
    errors: list[tuple[str, str]] = []
    assert find_audio_files([tmp_path], errors) == [(tmp_path / "ok.wav").absolute()]
    reasons = dict(errors)
    assert reasons[str(tmp_path / "loop.wav")].startswith("too many levels of symbolic links")
    assert reasons[str(tmp_path / "dangling.wav")].startswith("broken symbolic link")
    with pytest.raises(AudioError, match="too many levels of symbolic links"):
        find_audio_files([tmp_path / "loop.wav"])  # named directly, as query does
    with pytest.raises(AudioError, match="too many levels of symbolic links"):
        audio_info(tmp_path / "loop.wav")


@pytest.mark.parametrize("seconds,minimum,shown", [
    (0.4995, 0.5, "too short (0.499s < 0.500s)"),  # used to print 0.50s < 0.50s
    (0.1, 0.5, "too short (0.10s < 0.50s)"),
    (0.4999999, 0.5, "too short (0.4999999s < 0.5000000s)"),
])
def test_too_short_prints_enough_digits_to_tell_the_numbers_apart(seconds, minimum, shown):
    from sonicsearch.audio import too_short

    assert too_short(seconds, minimum) == shown


def test_a_clip_just_under_the_minimum_says_so_in_digits(tmp_path):
    sr = 8000
    path = tmp_path / "short.wav"
    write_audio(path, tone(0.4995, sr), sr)
    with pytest.raises(AudioError, match=r"too short \(0\.499s < 0\.500s\)"):
        check_usable(load_audio(path, sample_rate=sr)[0], sr, path, 0.5)


def _mp3_with_wrong_xing_size(path, sr: int = 16000) -> None:
    """An MP3 whose Xing header says the stream is 10% shorter than it is: the decoder
    warns "Xing stream size off by more than 1%" from C while opening it."""
    import struct

    import soundfile as sf

    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write MP3")
    sf.write(path, tone(3.0, sr) * 0.3, sr, format="MP3")
    data = bytearray(path.read_bytes())
    at = data.find(b"Xing")
    flags = struct.unpack(">I", data[at + 4:at + 8])[0]
    assert at >= 0 and flags & 3 == 3, "no Xing frames+bytes fields to change"
    data[at + 12:at + 16] = struct.pack(">I", int(len(data) * 0.9))  # the bytes field
    path.write_bytes(bytes(data))


def test_the_decoder_s_xing_warning_names_the_file(tmp_path, capfd):
    path = tmp_path / "odd-xing.mp3"
    _mp3_with_wrong_xing_size(path)
    capfd.readouterr()
    assert audio_info(path).frames > 0
    load_audio(path, sample_rate=16000)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "Xing stream size off" in line]
    assert len(lines) == 1, err  # named once, not once per open
    assert str(path) in lines[0] and lines[0].startswith("warning: ")


def test_other_output_on_fd_2_passes_through_a_capture(capfd):
    from sonicsearch.utils.native_stderr import native_stderr

    with native_stderr() as notes:
        os.write(2, b"a progress line\nWarning: from the decoder\n")
    assert notes == ["from the decoder"]
    assert capfd.readouterr().err == "a progress line\n"
