"""Re-checking stored records against the model: a record is believed only if its stored
adversarial, classified again, is adversarial and measures what the record says.

    rejections = recheck(records, model, test_images, root=output_dir, strict=False)

Per success record: its shard exists and holds the image, the image hashes to the record's
``adversarial_sha256``, the shard's label is the record's, the model (asked again through the
one verifier, `abs_tf.attacks.verify`) misclassifies it, predicts the recorded class, and the
L0/L1/L2/L∞ distances from the test image equal the recorded ones. A clean-error record must
sit at distance 0 (its stored image is the original, which the model must misclassify).
Per failure record: no distances (all inf) and no stored image. Each shard is verified in one
model call holding all its rows in their stored order, the layout in which the runner
verified them, so float round-off cannot differ between the two.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import numpy as np

from abs_tf.attacks.verify import NORMS, verify
from abs_tf.evaluation.records import image_sha256, load_shard

# Distances are recomputed by the same code on the same float32 images: equal up to JSON's
# float round trip (exact for float32 values); the tolerance only absorbs platform noise.
RELATIVE_TOLERANCE = 1e-5


class RecordRejected(ValueError):
    """Stored records that do not survive `recheck` (tampered, corrupt, or from another model)."""

    def __init__(self, rejections):
        self.rejections = list(rejections)
        shown = "; ".join(f"{r.key}: {r.reason}" for r in self.rejections[:5])
        more = f" (and {len(self.rejections) - 5} more)" if len(self.rejections) > 5 else ""
        super().__init__(f"{len(self.rejections)} record(s) rejected by re-verification: {shown}{more}")


@dataclasses.dataclass(frozen=True)
class Rejection:
    key: tuple
    reason: str


def _distances_match(recorded: dict, measured: dict, i: int) -> bool:
    for n in NORMS:
        a, b = float(recorded[n]), float(measured[n][i])
        if not math.isfinite(a) or abs(a - b) > RELATIVE_TOLERANCE * max(abs(b), 1.0):
            return False
    return True


def _check_failure(r) -> str:
    if r.clean_error:
        return "a clean error is adversarial at distance 0, but the record claims no adversarial"
    if r.adversarial_file is not None or r.adversarial_sha256 is not None:
        return "a record without adversarial references a stored image"
    if any(math.isfinite(r.distances[n]) for n in NORMS):
        return "a record without adversarial has finite distances"
    return ""


def recheck(records, model, images, *, root, labels=None, strict: bool = True) -> list:
    """Re-verifies ``records`` (of one model) on ``model``.

    Args:
      records: `Record`s of this model. model: images float32 [N, 28, 28, 1] -> logits.
      images: the test set, float32 [T, 28, 28, 1] in [0, 1], indexed by ``record.index``.
      root: the output directory holding the shards. labels: optional int [T] true classes
        (checked against the records' labels).
      strict: raise `RecordRejected` if any record is rejected; else return the rejections.
    Returns: list of `Rejection` (empty when all records hold).
    """
    records = list(records)
    models = {r.model for r in records}
    if len(models) > 1:
        raise ValueError(f"recheck takes the records of one model, got {sorted(models)}")
    images = np.asarray(images, np.float32)
    rejections = []
    by_shard = defaultdict(list)
    for r in records:
        if not 0 <= r.index < len(images):
            rejections.append(Rejection(r.key, f"index {r.index} is outside the {len(images)} test images"))
        elif labels is not None and int(labels[r.index]) != r.label:
            rejections.append(Rejection(r.key, f"label {r.label} is not the test set's {int(labels[r.index])}"))
        elif not r.success:
            reason = _check_failure(r)
            if reason:
                rejections.append(Rejection(r.key, reason))
        elif r.adversarial_file is None:
            rejections.append(Rejection(r.key, "a success without a stored adversarial"))
        elif r.clean_error and any(r.distances[n] != 0 for n in NORMS):
            rejections.append(Rejection(r.key, "a clean error must have distance 0"))
        else:
            by_shard[r.adversarial_file].append(r)
    for relative, shard_records in by_shard.items():
        rejections.extend(_recheck_shard(root, relative, shard_records, model, images))
    if strict and rejections:
        raise RecordRejected(rejections)
    return rejections


def _recheck_shard(root, relative, shard_records, model, images) -> list:
    try:
        indices, shard_labels, adversarials = load_shard(root, relative)
    except (FileNotFoundError, ValueError) as e:
        return [Rejection(r.key, str(e)) for r in shard_records]
    if np.any(indices < 0) or np.any(indices >= len(images)):
        return [Rejection(r.key, f"shard {relative} holds indices outside the test set") for r in shard_records]
    v = verify(model, images[indices], shard_labels, adversarials)
    row_of = {int(i): k for k, i in enumerate(indices)}
    out = []
    for r in shard_records:
        k = row_of.get(r.index)
        if k is None:
            reason = f"shard {relative} holds no image {r.index}"
        elif image_sha256(adversarials[k]) != r.adversarial_sha256:
            reason = "the stored adversarial does not hash to the record's adversarial_sha256"
        elif int(shard_labels[k]) != r.label:
            reason = f"label {r.label} differs from the shard's {int(shard_labels[k])}"
        elif not v.is_adversarial[k]:
            reason = f"not adversarial: the model classifies the stored image as {int(v.predictions[k])}"
        elif int(v.predictions[k]) != r.prediction:
            reason = f"the model predicts {int(v.predictions[k])}, the record says {r.prediction}"
        elif not _distances_match(r.distances, v.distances, k):
            measured = {n: round(float(v.distances[n][k]), 6) for n in NORMS}
            reason = f"distances {r.distances} do not match the stored image's {measured}"
        else:
            continue
        out.append(Rejection(r.key, reason))
    return out
