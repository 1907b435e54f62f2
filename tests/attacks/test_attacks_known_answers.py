"""Known answers on non-linear models: a strong attack gets within 5 % of the exact minimal
perturbation, and a deliberately weakened variant of it (one step, no random start, no
bisection) fails the very same check, so the check can tell a weak attack from a strong one.

Models (abs_tf/attacks/known_answers.py): a max of linear pieces whose closest adversarial is
the corner of two pieces (one gradient step reaches only one of them), and a radial boundary
whose centre has an exactly zero gradient (only a random start moves).
"""

import numpy as np
import pytest

from abs_tf import attacks
from abs_tf.attacks.known_answers import polytope_problem, radial_problem

LOWER = 1 - 1e-3  # float32 slack: nothing verified may beat the exact optimum
UPPER = 1.05


def _problems():
    radial = radial_problem(seed=0, n=4)
    return {
        "corner": polytope_problem(seed=0, n=4, cos_angle=0.5),      # L2 optimum at an oblique corner
        "orthogonal": polytope_problem(seed=2, n=4, cos_angle=0.0),  # ... at a right-angled corner
        "disjoint": polytope_problem(seed=1, n=4, disjoint=True),    # pieces on disjoint pixels (L∞ answer)
        "radial": radial,
        "radial_centre": (radial[0], radial[1][:1], radial[2][:1]),    # zero gradient at the image
        "radial_off_centre": (radial[0], radial[1][1:], radial[2][1:]),
    }


PROBLEMS = _problems()

# (problem, strong attack, weakened variant, minimize keyword arguments)
CASES = {
    "pgd_linf_random_start": ("radial_centre", attacks.PGD(norm="linf"), attacks.PGD(norm="linf", random_start=False), {}),
    "pgd_l2_random_start": ("radial", attacks.PGD(norm="l2"), attacks.PGD(norm="l2", random_start=False), {}),
    "pgd_linf_corner": ("disjoint", attacks.PGD(norm="linf"), attacks.PGD(norm="linf", steps=1, rel_stepsize=1.0), {}),
    "pgd_l2_corner": ("corner", attacks.PGD(norm="l2"), attacks.PGD(norm="l2", steps=1, rel_stepsize=1.0), {}),
    "deepfool_l2": ("orthogonal", attacks.DeepFool(norm="l2"), attacks.DeepFool(norm="l2", steps=1), {}),
    "deepfool_linf": ("disjoint", attacks.DeepFool(norm="linf"), attacks.DeepFool(norm="linf", steps=1), {}),
    "cw_corner": ("corner", attacks.CarliniWagnerL2(steps=1000, stepsize=1e-2), attacks.CarliniWagnerL2(steps=1), {}),
    "cw_radial": ("radial_off_centre", attacks.CarliniWagnerL2(steps=1000, stepsize=1e-2),
                  attacks.CarliniWagnerL2(steps=1), {}),
    "ddn": ("corner", attacks.DDN(), attacks.DDN(steps=3), {}),
    "fmn_l2": ("corner", attacks.FMN(norm="l2"), attacks.FMN(norm="l2", steps=3), {}),
    "fmn_linf": ("disjoint", attacks.FMN(norm="linf"), attacks.FMN(norm="linf", steps=3), {}),
}
# The minimal search itself (grid + bisection) with a strong attack: without bisection it stops
# at the grid's resolution.
SEARCH = ("radial_off_centre", attacks.PGD(norm="l2"))


def _ratios(problem, attack, **kwargs):
    model, x, y = PROBLEMS[problem]
    best = attacks.minimize(attack, model, x, y, **kwargs)
    exact = model.minimal_distance(x, attack.norm)
    # Whatever was found is verified and cannot beat the optimum (a distance/verifier bug would).
    found = best.is_adversarial
    assert np.all(best.distances[attack.norm][found] >= LOWER * exact[found]), (attack, best.distances, exact)
    return best.distances[attack.norm] / exact


def _passes(ratios) -> bool:
    return bool(np.all(ratios <= UPPER))


@pytest.mark.parametrize("case", sorted(CASES))
def test_strong_attack_reaches_the_known_minimum(case):
    problem, strong, _, kwargs = CASES[case]
    ratios = _ratios(problem, strong, **kwargs)
    assert _passes(ratios), (strong, ratios)


@pytest.mark.parametrize("case", sorted(CASES))
def test_weakened_attack_fails_the_same_check(case):
    problem, _, weak, kwargs = CASES[case]
    ratios = _ratios(problem, weak, **kwargs)
    assert not _passes(ratios), (weak, ratios)


def test_minimal_search_needs_its_bisection():
    problem, attack = SEARCH
    assert _passes(_ratios(problem, attack))
    assert not _passes(_ratios(problem, attack, bisection_steps=0))


def test_zero_gradient_centre_is_reported_without_random_start():
    model, x, y = PROBLEMS["radial_centre"]
    stuck = attacks.minimize(attacks.PGD(norm="linf", random_start=False), model, x, y)
    assert stuck.no_gradient.all() and stuck.accuracy(1.0) == 0.0  # failed, not robust
    moved = attacks.minimize(attacks.PGD(norm="linf"), model, x, y)
    assert moved.is_adversarial.all() and not moved.no_gradient.any()
