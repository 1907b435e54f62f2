"""Paired comparison of two rows of one evaluation: is one model measurably less robust?

The issue this answers: the shipped ABS (stage 8) fine-tunes the purely generative stage-7
decoders on a class margin, a step the paper does not take; if that made ABS less robust at
similar accuracy, the report must say so; likewise against the original release's weights, the
model the paper evaluated, and stage 7 against the release (whether a gap begins before the
fine-tuning). Medians of a few images differ by chance, so the comparison is paired: on the
images both rows have complete in a norm, each image's smallest verified adversarial
(`protocol.per_image_minimum`) of model a against model b. Images whose two distances lie within
``RELATIVE_TIE`` of each other are ties (attack noise); the others go to an exact two-sided sign
test. "Measurably" means p < ``ALPHA``: with n untied images the smallest p is 2 / 2^n, so fewer
than 6 can never show a difference, and the verdict says so.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from abs_tf.evaluation import protocol

# (a, b, what the comparison asks, what it means if a is measurably less robust): rows of one
# evaluation compared when both are present.
PAIRS = (
    ("abs", "abs_stage7", "the shipped ABS (stage 8: decoders fine-tuned on a class margin) against stage 7, the "
                          "purely generative VAEs it started from (all 10000 test images: 99.02 % vs 98.79 % clean, "
                          "weights/abs_vae/PROVENANCE.md)",
     "the class-margin fine-tuning costs robustness: reconsider which weights are the shipped default"),
    ("abs", "abs_official", "the shipped ABS against the original release's weights, the model the paper evaluated "
                            "(all 10000 test images: 99.02 % clean both)",
     "our training does not reach the release's robustness"),
    ("abs_stage7", "abs_official", "stage 7, our purely generative VAEs, against the original release's weights "
                                   "(98.79 % vs 99.02 % clean): whether our generative training alone reaches "
                                   "the release's robustness, or the shipped ABS's gap to it begins before the "
                                   "fine-tuning",
     "our generative training does not reach the release's robustness, before any fine-tuning"),
)
RELATIVE_TIE = 0.05
ALPHA = 0.05
LESS, MORE, UNMEASURABLE, NO_DIFFERENCE = "less robust", "more robust", "not measurable", "no measurable difference"


def sign_test(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n fair coin flips (1.0 for n = 0)."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


@dataclasses.dataclass(frozen=True)
class PairedNorm:
    """One norm of a paired comparison.

    indices: int64 [N] images both rows have complete. distances_a, distances_b: float64 [N]
    their per-image minima (0: clean error, inf: no adversarial). lower / higher / ties: images
    where a's distance is below / above b's beyond ``RELATIVE_TIE`` / within it. p_value: the
    sign test of lower against higher. verdict: a is `LESS` / `MORE` robust than b, there is
    `NO_DIFFERENCE`, or the untied images are too few to tell (`UNMEASURABLE`).
    """

    norm: str
    indices: np.ndarray
    distances_a: np.ndarray
    distances_b: np.ndarray
    lower: int
    higher: int
    ties: int
    p_value: float
    verdict: str

    @property
    def images(self) -> int:
        return int(self.indices.size)


def _tied(a: float, b: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= RELATIVE_TIE * max(a, b)


def compare_norm(records, model_a: str, model_b: str, norm: str, attacks_a=None, attacks_b=None) -> PairedNorm:
    """Model a against model b in ``norm`` on the images both have complete (module doc)."""
    ra = protocol.per_image_minimum(records, model_a, norm, attacks_a)
    rb = protocol.per_image_minimum(records, model_b, norm, attacks_b)
    common = np.intersect1d(ra.indices, rb.indices)
    da = ra.distances[np.searchsorted(ra.indices, common)]
    db = rb.distances[np.searchsorted(rb.indices, common)]
    tied = np.array([_tied(x, y) for x, y in zip(da, db)], bool)
    ties, lower = int(tied.sum()), int(np.sum((da < db) & ~tied))
    higher = len(common) - ties - lower
    untied = lower + higher
    p = sign_test(lower, untied)
    if sign_test(0, untied) >= ALPHA:
        verdict = UNMEASURABLE
    elif p < ALPHA:
        verdict = LESS if lower > higher else MORE
    else:
        verdict = NO_DIFFERENCE
    return PairedNorm(norm, common.astype(np.int64), da, db, lower, higher, ties, p, verdict)


def compare(records, model_a: str, model_b: str, expected: dict) -> dict:
    """{norm: `PairedNorm`} over the norms both models have attacks for in ``expected``
    ({model: {norm: [attack, ...]}}, `abs_tf.evaluation.settings.expected_attacks`)."""
    out = {}
    for norm in protocol.PROTOCOL_NORMS:
        a, b = expected.get(model_a, {}).get(norm), expected.get(model_b, {}).get(norm)
        if a and b:
            out[norm] = compare_norm(records, model_a, model_b, norm, a, b)
    return out
