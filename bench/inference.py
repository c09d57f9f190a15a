"""Inference speed of the active model on this machine: cold start, warm latency, batch throughput, memory.

    python bench/inference.py [--n 200] [--model DIR_OR_ID]

Prints one figure per line, `name: value unit`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


from _common import ROOT, emit, peak_rss_mb, pct, sample_images  # noqa: E402

# The child prints the wall-clock time at which its first answer exists; the parent subtracts its spawn time.
# Interpreter teardown after the answer (TensorFlow's takes about a second) is reported apart.
COLD = """
import time, sys
t0 = time.perf_counter()
from cxr_core.request import Request
from cxr_core.site.models import quiet_store
from cxr_core.model.predict import Predictor
p = Predictor(Request.resolve(quiet_store(), sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else None).model_dir)
r = p.predict(sys.argv[2])
assert r.error is None and r.heatmap is not None
print(time.perf_counter() - t0, time.time())
"""
COLD_RUNS = 3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="images for the batch and latency figures")
    ap.add_argument("--model", default="")
    ap.add_argument("--jit", action="store_true", help="compile the forward pass with XLA (jit_compile=True)")
    ap.add_argument("--intra", type=int, default=0, help="TensorFlow intra-op threads (0 = TensorFlow's default)")
    ap.add_argument("--inter", type=int, default=0, help="TensorFlow inter-op threads (0 = TensorFlow's default)")
    args = ap.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.intra)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter)
    emit("settings", f"jit_compile={args.jit} intra_op={args.intra or 'default'} inter_op={args.inter or 'default'}")
    folder, kind = sample_images(args.n)
    files = sorted(folder.glob("*.jpeg"))
    emit("images", f"{len(files)} {kind}")
    emit("cpu_cores", str(os.cpu_count()))

    # Cold start: a new process (default settings), from its spawn, imports included, to the first prediction
    # with its heatmap. Median of COLD_RUNS processes (one sample swings by a second on 2 shared cores).
    to_answer, in_process, to_exit = [], [], []
    for _ in range(COLD_RUNS):
        spawned, t0 = time.time(), time.perf_counter()
        out = subprocess.run([sys.executable, "-c", COLD, args.model, str(files[0])], cwd=ROOT, capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        to_exit.append(time.perf_counter() - t0)
        if out.returncode != 0:
            sys.exit(out.stderr[-2000:])
        inside, answered = (float(v) for v in out.stdout.strip().splitlines()[-1].split())
        to_answer.append(answered - spawned)
        in_process.append(inside)
    emit("cold_start_to_first_prediction_with_gradcam_s", pct(to_answer, 50), "s")
    emit("cold_start_to_first_prediction_with_gradcam_max_s", max(to_answer), "s")
    emit("cold_start_in_process_s", pct(in_process, 50), "s")
    emit("cold_start_process_spawn_to_exit_s", pct(to_exit, 50), "s")

    from cxr_core.request import Request
    from cxr_core.site.models import quiet_store
    from cxr_core.model.predict import Predictor

    predictor = Predictor(Request.resolve(quiet_store(), args.model or None).model_dir, jit_compile=args.jit)
    emit("model", predictor.card.model_id)
    predictor.predict(files[0])  # warm-up

    # Warm latency: one file's bytes to label + probabilities + heatmap (decode included).
    lat = []
    for f in files[:100]:
        data = f.read_bytes()
        t = time.perf_counter()
        r = predictor.predict(data, name=f.name)
        lat.append(time.perf_counter() - t)
        assert r.heatmap is not None
    emit("warm_predict_with_gradcam_p50_s", pct(lat, 50), "s")
    emit("warm_predict_with_gradcam_p95_s", pct(lat, 95), "s")

    # Prediction only (no decode, no heatmap): the compiled forward pass, and for comparison the eager Keras call.
    import numpy as np

    x = predictor.preprocess.load(files[0])[None]
    predictor._forward(x)
    lat = []
    for _ in range(100):
        t = time.perf_counter()
        np.asarray(predictor._forward(x)[1])
        lat.append(time.perf_counter() - t)
    emit("warm_prediction_only_compiled_p50_s", pct(lat, 50), "s")
    emit("warm_prediction_only_compiled_p95_s", pct(lat, 95), "s")
    predictor.model(x, training=False)
    lat = []
    for _ in range(100):
        t = time.perf_counter()
        np.asarray(predictor.model(x, training=False))
        lat.append(time.perf_counter() - t)
    emit("warm_prediction_only_keras_eager_call_p50_s", pct(lat, 50), "s")
    emit("warm_prediction_only_keras_eager_call_p95_s", pct(lat, 95), "s")

    # Batch: predict_many over the folder (parallel decode, batches of 32, heatmaps included).
    items = [(f.name, f) for f in files]
    list(predictor.predict_many(items[:32]))
    t = time.perf_counter()
    n = sum(1 for r in predictor.predict_many(items, batch_size=32) if r.error is None)
    emit("batch_predict_throughput_img_per_s", n / (time.perf_counter() - t), "img/s")
    emit("peak_resident_memory_mb", peak_rss_mb(), "MB")


if __name__ == "__main__":
    main()
