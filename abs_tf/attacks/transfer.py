"""Transfer attack: adversarials of a substitute model, then a line search on the target.

For each image, ``attack`` is minimised on ``substitute`` (`minimize`: the smallest verified
adversarial of the substitute), giving a direction d = x_sub - x. On the target, a
`line_search` along d (coarse scales of t, then bisection) finds the smallest t with
clip(x + t d, 0, 1) adversarial for the target. Target queries are those of the line search
only; the substitute's queries are not charged to the target.
"""

from __future__ import annotations

import numpy as np

from abs_tf.attacks.base import MinimizationAttack
from abs_tf.attacks.criteria import MISCLASSIFICATION
from abs_tf.attacks.minimize import DEFAULT_SCALES, line_search, minimize


class Transfer(MinimizationAttack):
    """Transfer attack (minimization, norm = the substitute attack's norm).

    Args:
      substitute: callable images -> logits, with usable gradients (e.g. a CNN).
      attack: attack run on the substitute (default `DeepFool(norm="l2")`).
      scales: ascending scales t of the substitute's perturbation for the coarse search.
      bisection_steps: bisection steps along the line.
    """

    compile_run = False

    def __init__(self, *, substitute, attack=None, scales=DEFAULT_SCALES, bisection_steps: int = 10):
        if attack is None:
            from abs_tf.attacks.deepfool import DeepFool
            attack = DeepFool(norm="l2")
        if not callable(substitute):
            raise TypeError("substitute must be a callable images -> logits")
        self._store(substitute=substitute, attack=attack, scales=tuple(float(s) for s in scales),
                    bisection_steps=int(bisection_steps))
        self.norm = attack.norm

    def __repr__(self):
        name = getattr(self.substitute, "name", type(self.substitute).__name__)
        return (f"Transfer(substitute={name}, attack={self.attack!r}, scales={self.scales!r}, "
                f"bisection_steps={self.bisection_steps})")

    def run(self, model, images, labels, seed=0, criterion=MISCLASSIFICATION, starting_points=None):
        del starting_points
        on_substitute = minimize(self.attack, self.substitute, images, labels, criterion=criterion, seed=int(seed))
        x = np.asarray(images)
        directions = np.where(on_substitute.is_adversarial[:, None, None, None],
                              on_substitute.adversarials - x, 0.0).astype(np.float32)
        found = line_search(getattr(model, "logits", model), x, labels, directions, scales=self.scales,
                            bisection_steps=self.bisection_steps, norm=self.norm, criterion=criterion)
        return found.adversarials
