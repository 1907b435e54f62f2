"""Decision-based and ABS-specific attacks (SPEC §4): they read the predicted class only (or,
for Latent Descent, ABS's reconstructions), never a gradient.

    from abs_tf.attacks.decision import Pointwise
    result = Pointwise()(model, images, labels, seed=0)     # a verified AttackResult
    result.distances["l0"]

Each algorithm is a function over a counted, batched `DecisionOracle` (exact per-image query
counts, per-image random streams), wrapped as a `MinimizationAttack` so that its results pass
through the project's verifier:

* `SaltAndPepper` (L0), `Pointwise` (L0, or ranked in L2), `Boundary` (L2),
  `AdditiveGaussianNoise` (L2), `AdditiveUniformNoise` (L∞): any model;
* `LatentDescent` (L2): ABS models (reads ``search``), Binary ABS variant included;
* `distal_adversarials`: noise images raised to a target class's probability 0.9 (not a
  minimisation attack; returns a `DistalResult`).
"""

from abs_tf.attacks.decision.boundary import Boundary, boundary
from abs_tf.attacks.decision.distal import DistalResult, distal_adversarials
from abs_tf.attacks.decision.latent_descent import LatentDescent, SearchOracle, binary_projection, latent_descent
from abs_tf.attacks.decision.noise import (AdditiveGaussianNoise, AdditiveUniformNoise, LineSearchResult,
                                           additive_noise, blended_noise, line_search)
from abs_tf.attacks.decision.oracle import DecisionAttack, DecisionOracle, DecisionResult, image_keys
from abs_tf.attacks.decision.pointwise import Pointwise, pointwise
from abs_tf.attacks.decision.salt_and_pepper import SaltAndPepper, salt_and_pepper

__all__ = [
    "AdditiveGaussianNoise", "AdditiveUniformNoise", "Boundary", "DecisionAttack", "DecisionOracle",
    "DecisionResult", "DistalResult", "LatentDescent", "LineSearchResult", "Pointwise", "SaltAndPepper",
    "SearchOracle", "additive_noise", "binary_projection", "blended_noise", "boundary", "distal_adversarials",
    "image_keys", "latent_descent", "line_search", "pointwise", "salt_and_pepper",
]
