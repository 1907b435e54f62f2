"""Clean evaluation: accuracy, throughput and (for ABS) the certified-L2 estimate per image.

`evaluate_clean(model, images, labels, ...)` classifies the images in batches and returns a
`CleanResult`. The first batch includes tracing and is timed apart, so ``images_per_second``
is the steady-state rate.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

import numpy as np

CERTIFIED_NOTE = ("estimate of a certificate: the latent search stands in for the minimum over z "
                  "(SPEC section 3); misclassified images count 0")


@dataclasses.dataclass(frozen=True)
class CleanResult:
    """logits float32 [N, 10]; predictions int64 [N]; certified_l2 float [N] or None (models
    without certified bounds); timings in seconds."""
    logits: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    certified_l2: Optional[np.ndarray]
    images_per_second: float
    first_batch_seconds: float

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.predictions == self.labels))

    def summary(self) -> dict:
        """The JSON-able figures (no per-image arrays)."""
        out = {"num_images": int(len(self.labels)), "clean_accuracy": self.accuracy,
               "num_correct": int(np.sum(self.predictions == self.labels)),
               "images_per_second": float(self.images_per_second),
               "first_batch_seconds": float(self.first_batch_seconds)}
        if self.certified_l2 is not None:
            out["certified_l2_estimate_median"] = float(np.median(self.certified_l2))
            out["certified_l2_estimate_note"] = CERTIFIED_NOTE
        return out

    def per_image(self, indices) -> dict:
        """Arrays for ``per_image.npz``: indices, labels, logits, predictions (and bounds)."""
        out = dict(indices=np.asarray(indices), labels=self.labels, logits=self.logits, predictions=self.predictions)
        if self.certified_l2 is not None:
            out["certified_l2_estimate"] = self.certified_l2
        return out


def evaluate_clean(model, images, labels, *, batch_size: int = 64, certified_bounds: bool = False,
                   progress: Optional[Callable[[int, float], None]] = None) -> CleanResult:
    """Classifies ``images`` float32 [N,28,28,1] in [0,1] against ``labels`` int [N].

    certified_bounds: also compute each image's certified-L2 estimate
      (`abs_tf.models.abs.certify.logits_and_bounds`; ABS models only).
    progress: optional ``progress(images_done, running_accuracy)`` after every batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    labels = np.asarray(labels)
    logits, bounds = [], []
    first_batch_s, timed_s, timed_n = 0.0, 0.0, 0
    for i in range(0, len(images), batch_size):
        x, y = images[i:i + batch_size], labels[i:i + batch_size]
        t = time.time()
        if certified_bounds:
            from abs_tf.models.abs.certify import logits_and_bounds
            batch_logits, batch_bounds = logits_and_bounds(model, x, y)
            bounds.append(np.asarray(batch_bounds))
        else:
            batch_logits = np.asarray(model(x))
        dt = time.time() - t
        if i == 0:
            first_batch_s = dt
        else:
            timed_s, timed_n = timed_s + dt, timed_n + len(x)
        logits.append(np.asarray(batch_logits))
        if progress is not None:
            done = i + len(x)
            progress(done, float(np.mean(np.concatenate(logits).argmax(1) == labels[:done])))
    logits = np.concatenate(logits) if logits else np.zeros([0, 10], np.float32)
    rate = timed_n / timed_s if timed_n else len(images) / max(first_batch_s, 1e-9)
    return CleanResult(logits=logits, predictions=logits.argmax(1), labels=labels,
                       certified_l2=np.concatenate(bounds) if bounds else None,
                       images_per_second=float(rate), first_batch_seconds=float(first_batch_s))
