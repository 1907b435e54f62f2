"""Adversarial attacks with verified results (see docs/attacking.md).

    from abs_tf import attacks
    result = attacks.PGD(norm="linf", steps=40)(model, images, labels, epsilons=[0.1, 0.3])
    result.is_adversarial            # [E, B] bool, re-verified
    best = attacks.minimize(attacks.FGSM(), model, images, labels)
    best.distances["linf"]           # [B], +inf where no adversarial was found

Models: any callable ``images float32 [B, 28, 28, 1] in [0, 1] -> logits [B, 10]``.
`ATTACKS` maps names (as used by evaluate.py) to factories taking keyword hyper-parameters.
"""

from __future__ import annotations

import functools

from abs_tf.attacks.base import Attack, AttackResult, FixedEpsilonAttack, MinimizationAttack
from abs_tf.attacks.carlini_wagner import CarliniWagnerL2
from abs_tf.attacks.counting import CountingModel
from abs_tf.attacks.deepfool import DeepFool
from abs_tf.attacks.estimation import EstimatedGradients, StraightThrough, binarize
from abs_tf.attacks.gradient import BIM, FGM, FGSM, MIM, PGD
from abs_tf.attacks.linear import LinearModel, random_linear_model
from abs_tf.attacks.minimize import (DEFAULT_GRIDS, MinimalResult, best_of, bracket_search,
                                     line_search, minimize)
from abs_tf.attacks.spsa import SPSA
from abs_tf.attacks.transfer import Transfer
from abs_tf.attacks.verify import (L0_TOLERANCE, NORMS, Misclassification, Verified, distances,
                                   project, verify)

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
    "transfer": Transfer,
}

__all__ = [
    "ATTACKS", "Attack", "AttackResult", "BIM", "CarliniWagnerL2", "CountingModel", "DEFAULT_GRIDS",
    "DeepFool", "EstimatedGradients", "FGM", "FGSM", "FixedEpsilonAttack", "L0_TOLERANCE", "LinearModel", "MIM",
    "MinimalResult", "MinimizationAttack", "Misclassification", "NORMS", "PGD", "SPSA",
    "StraightThrough", "Transfer", "Verified", "best_of", "binarize", "bracket_search", "distances",
    "line_search", "minimize", "project", "random_linear_model", "verify",
]
