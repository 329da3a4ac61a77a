"""Per-patch musicnn features (MSD_musicnn / MSD_vgg) of a DATA CSV: the style peer.

musicnn (PyPI 0.1.0, ISC licence, weights in its wheel) needs TensorFlow 2.15 and tf-keras
for its tf.compat.v1 graph, so it runs in a virtual environment of its own; it is a
benchmark peer only, never a dependency of sonicsearch:

    python3 -m venv ~/.venvs/musicnn
    ~/.venvs/musicnn/bin/pip install "tensorflow-cpu==2.15.*" "tf-keras==2.15.*" soundfile librosa
    ~/.venvs/musicnn/bin/pip install --no-deps musicnn==0.1.0
    ~/.venvs/musicnn/bin/python benchmarks/musicnn_features.py CSV OUTDIR \
        --model MSD_musicnn [--max-seconds 300]

Writes OUTDIR/<sha1(path)[:16]>.npz per row (skips existing ones: resumable) with
  feats   float32 (n_patches, D)  MSD_musicnn: 'penultimate' (bn_dense, D=200)
                                  MSD_vgg:     'pool5' flattened as the model does before its
                                               output dense layer (2 time x 1 freq x 128 -> D=256)
  starts  float32 (n_patches,)    patch start time [s]
  taggram float32 (n_patches, 50) sigmoid tag outputs (MSD labels)
  MSD_musicnn also: mean_pool, max_pool float32 (n_patches, 753);
  MSD_vgg also: pool5_mean (n_patches, 128)
  path, label, package            strings from the CSV
Front end, patching (3 s = 187 frames, non-overlapping) and graph are musicnn's own
(musicnn/extractor.py batch_data + models.define_model); the graph is built once and one
tf.compat.v1 Session is reused, avoiding extractor()'s bug that repeats the first patch's
penultimate value for every patch.
"""
# ruff: noqa: E402  (thread variables must be set before numpy and TensorFlow load)
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import csv
import hashlib
import sys
import time
import warnings

warnings.filterwarnings("ignore", category=UserWarning)
from pathlib import Path

import librosa
import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()
from musicnn import configuration as config
from musicnn import models

BATCH = 32


class Musicnn:
    def __init__(self, model, threads=2):
        self.model = model
        self.labels = config.MSD_LABELS if "MSD" in model else config.MTT_LABELS
        # same as extractor(): input_length=3, input_overlap=False
        self.n_frames = librosa.time_to_frames(3, sr=config.SR, n_fft=config.FFT_SIZE,
                                               hop_length=config.FFT_HOP) + 1
        self.hop_frames = self.n_frames
        self.graph = tf.Graph()
        with self.graph.as_default():
            with tf.name_scope("model"):
                self.x = tf.compat.v1.placeholder(tf.float32, [None, self.n_frames, config.N_MELS])
                self.is_training = tf.compat.v1.placeholder(tf.bool)
                out = models.define_model(self.x, self.is_training, model, len(self.labels))
                y = out[0]
                taggram = tf.nn.sigmoid(y)
                if "vgg" in model:
                    pool5 = out[5]  # (B, 2, 1, 128)
                    self.fetch = {"taggram": taggram,
                                  "feats": tf.compat.v1.layers.flatten(pool5),  # as vgg() does
                                  "pool5_mean": tf.reduce_mean(pool5, axis=[1, 2])}
                else:
                    _, timbral, temporal, cnn1, cnn2, cnn3, mean_pool, max_pool, penultimate = out
                    self.fetch = {"taggram": taggram, "feats": penultimate,
                                  "mean_pool": mean_pool, "max_pool": max_pool}
            cfg = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                           inter_op_parallelism_threads=1)
            self.sess = tf.compat.v1.Session(graph=self.graph, config=cfg)
            self.sess.run(tf.compat.v1.global_variables_initializer())
            saver = tf.compat.v1.train.Saver()
            saver.restore(self.sess, os.path.dirname(models.__file__) + "/" + model + "/")

    def spectrogram(self, path, max_seconds=None):
        # musicnn extractor.batch_data front end (only decoding limited to max_seconds)
        audio, sr = librosa.load(path, sr=config.SR, duration=max_seconds)
        min_len = (self.n_frames - 1) * config.FFT_HOP
        if audio.size < min_len:  # shorter than one patch: zero-pad to one patch
            audio = np.pad(audio, (0, min_len - audio.size))
        rep = librosa.feature.melspectrogram(y=audio, sr=sr, hop_length=config.FFT_HOP,
                                             n_fft=config.FFT_SIZE, n_mels=config.N_MELS).T
        rep = rep.astype(np.float16)
        rep = np.log10(10000 * rep + 1)
        return rep

    def patches(self, rep):
        last = rep.shape[0] - self.n_frames + 1
        idx = np.arange(0, last, self.hop_frames)
        batch = np.stack([rep[t:t + self.n_frames] for t in idx]).astype(np.float32)
        starts = (idx * config.FFT_HOP / config.SR).astype(np.float32)
        return batch, starts

    def run(self, batch):
        outs = {k: [] for k in self.fetch}
        for b in range(0, len(batch), BATCH):
            feed = {self.x: batch[b:b + BATCH], self.is_training: False}
            r = self.sess.run(self.fetch, feed_dict=feed)
            for k, v in r.items():
                outs[k].append(np.asarray(v, dtype=np.float32))
        return {k: np.concatenate(v, axis=0) for k, v in outs.items()}

    def file(self, path, max_seconds=None):
        batch, starts = self.patches(self.spectrogram(path, max_seconds))
        out = self.run(batch)
        out["starts"] = starts
        return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("csv")
    p.add_argument("out")
    p.add_argument("--model", required=True, choices=["MSD_musicnn", "MSD_vgg"])
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="only the first N rows (testing)")
    a = p.parse_args()
    threads = max(1, min(2, a.threads))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader(open(a.csv, newline="")))
    if a.limit:
        rows = rows[:a.limit]
    net = None
    t_all, audio_all, done, failed = 0.0, 0.0, 0, 0
    for i, r in enumerate(rows):
        # relative paths are the CSV's folder's, keyed as benchmarks/style.py keys them
        path = r["path"] if Path(r["path"]).is_absolute() else str(Path(a.csv).parent / r["path"])
        key = hashlib.sha1(str(path).encode()).hexdigest()[:16]
        dest = out / f"{key}.npz"
        if dest.exists():
            continue
        if net is None:
            tl = time.time()
            net = Musicnn(a.model, threads)
            print(f"graph {a.model} built+restored in {time.time() - tl:.1f}s", flush=True)
        t0 = time.time()
        try:
            res = net.file(path, a.max_seconds)
        except Exception as e:  # noqa: BLE001 - skip undecodable files, keep going
            failed += 1
            print(f"FAIL {path}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            continue
        dt = time.time() - t0
        secs = float(res["starts"][-1]) + 3.0
        tmp = out / f".{key}.npz.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, path=np.array(path), label=np.array(r["label"]),
                     package=np.array(r["package"]), **res)
        os.replace(tmp, dest)
        done += 1
        t_all += dt
        audio_all += secs
        print(f"[{i + 1}/{len(rows)}] {key} {res['feats'].shape} {secs:.0f}s audio in {dt:.1f}s "
              f"({dt / (secs / 60):.2f}s per audio-min) {path}", flush=True)
    if done:
        print(f"done {done} files, {failed} failed, {audio_all / 60:.1f} audio-min in {t_all:.0f}s "
              f"= {t_all / (audio_all / 60):.2f}s per audio-minute", flush=True)
    else:
        print(f"nothing to do ({failed} failed)", flush=True)


if __name__ == "__main__":
    main()
