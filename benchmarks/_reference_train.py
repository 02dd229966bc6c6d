"""Reference side of bench_train.py: the original KAMoE (PyPI ``kamoe`` on Keras 3 + JAX) on the California
configuration. Runs inside the reference virtual environment (benchmarks/.envs/reference), never imports
kamoe_viz, and prints one JSON line with its timings.

Usage: python _reference_train.py DATA.npz BATCH EPOCHS SEED
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
T_START = time.perf_counter()


def main() -> None:
    data_path, batch_size, epochs, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    import keras
    import numpy as np
    from kamoe import KAMoE

    data = np.load(data_path)
    X, y = data["X"], data["y"]
    keras.utils.set_random_seed(seed)
    t_import = time.perf_counter()
    model = keras.Sequential(
        [
            keras.Input(shape=(X.shape[1],)),
            KAMoE(
                keras.Sequential([keras.layers.Dense(100, activation="relu")]),
                n_experts=3,
                gating_network_activation="sigmoid",
            ),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="mse")
    params = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    epoch_ends: list[float] = []
    losses: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epoch_ends.append(time.perf_counter())
            losses.append(float((logs or {}).get("loss", float("nan"))))

    t_fit = time.perf_counter()
    model.fit(X, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[Clock()])
    starts = [t_fit] + epoch_ends[:-1]
    print(
        json.dumps(
            {
                "side": "reference",
                "backend": keras.backend.backend(),
                "device": str(__import__("jax").devices()[0].platform),
                "versions": {"keras": keras.__version__, "jax": __import__("jax").__version__},
                "batch_size": batch_size,
                "epochs": epochs,
                "rows": int(X.shape[0]),
                "params": params,
                "import_seconds": t_import - T_START,
                "first_epoch_end_seconds": epoch_ends[0] - t_import,  # build + compile + first epoch
                "epoch_seconds": [end - start for start, end in zip(starts, epoch_ends)],
                "final_loss": losses[-1],
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
