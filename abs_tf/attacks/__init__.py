"""Adversarial attacks with verified results.

    from abs_tf import attacks
    result = attacks.PGD(norm="linf", steps=40)(model, images, labels, epsilons=[0.1, 0.3], seed=0)
    result.is_adversarial            # [E, B] bool, re-verified
    result.robust_accuracy           # [E]; images where the attack had no gradient are not robust
    best = attacks.minimize(attacks.FGSM(), model, images, labels)
    best.distances["linf"]           # [B], +inf where no adversarial was found
    overall = attacks.best_of([best, ...], "linf", model=model, images=images, labels=labels)

Models: any callable ``images float32 [B, 28, 28, 1] in [0, 1] -> logits [B, 10]``.
Criteria: `Misclassification()` (default; labels = true classes) or
`TargetedMisclassification()` (labels = target classes).
`ATTACKS` maps names (as used by evaluate.py) to factories taking keyword hyper-parameters.
"""

from __future__ import annotations

import functools

from abs_tf.attacks.base import Attack, AttackResult, FixedEpsilonAttack, MinimizationAttack
from abs_tf.attacks.session import QueryLedger, images_digest
from abs_tf.attacks.carlini_wagner import CarliniWagnerL2
from abs_tf.attacks.counting import CountingModel, DecisionModel
from abs_tf.attacks.criteria import MISCLASSIFICATION, Criterion, Misclassification, TargetedMisclassification
from abs_tf.attacks.ddn import DDN
from abs_tf.attacks.deepfool import DeepFool
from abs_tf.attacks.estimation import EstimatedGradients, StraightThrough, binarize
from abs_tf.attacks.fmn import FMN
from abs_tf.attacks.gradient import BIM, FGM, FGSM, MIM, PGD
from abs_tf.attacks.linear import LinearModel, random_linear_model
from abs_tf.attacks.losses import DEFAULT_LOSS, LOSSES, attack_loss, loss_and_gradient
from abs_tf.attacks.minimize import DEFAULT_GRIDS, bracket_search, line_search, minimize
from abs_tf.attacks.results import MinimalResult, best_of
from abs_tf.attacks.spsa import SPSA
from abs_tf.attacks.transfer import Transfer
from abs_tf.attacks.verify import L0_TOLERANCE, NORMS, Verified, distances, project, verify, within
from abs_tf.attacks.decision import (AdditiveGaussianNoise, AdditiveUniformNoise, Boundary,  # noqa: E402
                                    LatentDescent, Pointwise, SaltAndPepper)

ATTACKS = {
    "fgsm": FGSM,
    "fgm": FGM,
    "pgd_linf": functools.partial(PGD, norm="linf"),
    "pgd_l2": functools.partial(PGD, norm="l2"),
    "bim_linf": functools.partial(BIM, norm="linf"),
    "bim_l2": functools.partial(BIM, norm="l2"),
    "mim_linf": functools.partial(MIM, norm="linf"),
    "mim_l2": functools.partial(MIM, norm="l2"),
    "cw_l2": CarliniWagnerL2,
    "spsa_linf": SPSA,
    "deepfool_l2": functools.partial(DeepFool, norm="l2"),
    "deepfool_linf": functools.partial(DeepFool, norm="linf"),
    "ddn_l2": DDN,
    "fmn_l0": functools.partial(FMN, norm="l0"),
    "fmn_l1": functools.partial(FMN, norm="l1"),
    "fmn_l2": functools.partial(FMN, norm="l2"),
    "fmn_linf": functools.partial(FMN, norm="linf"),
    "transfer": Transfer,
    # decision-based and ABS-specific (abs_tf.attacks.decision)
    "salt_and_pepper": SaltAndPepper,
    "pointwise": Pointwise,
    "boundary": Boundary,
    "gaussian_noise": AdditiveGaussianNoise,
    "uniform_noise": AdditiveUniformNoise,
    "latent_descent": LatentDescent,
}

__all__ = [
    "ATTACKS", "Attack", "AttackResult", "BIM", "CarliniWagnerL2", "CountingModel", "Criterion", "DDN",
    "DEFAULT_GRIDS", "DEFAULT_LOSS", "DecisionModel", "DeepFool", "EstimatedGradients", "FGM", "FGSM", "FMN",
    "FixedEpsilonAttack", "L0_TOLERANCE", "LOSSES", "LinearModel", "MIM", "MISCLASSIFICATION", "MinimalResult",
    "MinimizationAttack", "Misclassification", "NORMS", "PGD", "QueryLedger", "SPSA", "StraightThrough",
    "TargetedMisclassification", "Transfer", "Verified", "attack_loss", "best_of", "binarize", "bracket_search",
    "distances", "images_digest", "line_search", "loss_and_gradient", "minimize", "project",
    "random_linear_model", "verify", "within",
]
