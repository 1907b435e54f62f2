"""Attack sets of an evaluation ("quick", "table1") and how each attack meets each model.

An `AttackEntry` names an attack of `abs_tf.attacks.ATTACKS` with its budget (hyper-parameters,
the epsilon grid and bisections of `abs_tf.attacks.minimize`, an optional per-image query
budget), the norm it minimises and the norms in which its adversarials count (`counts_for`;
Pointwise also in L2, as the paper measured it), and its kind:

* ``gradient``: white-box, with each model's strongest defaults: the model's own gradient
  (ABS: the exact envelope gradient; the attacks' default loss is the logit margin), through
  `abs_tf.attacks.StraightThrough` for models with a binarizing front end
  (``abs_tf.models.preprocessing.front_end(model) is not None``);
* ``estimated``: the same attacks on `abs_tf.attacks.EstimatedGradients` (the paper's way on
  ABS: coordinate-wise finite differences, or antithetic Gaussian sampling), ABS models only;
* ``decision``: decision-based (noise, salt-and-pepper, Pointwise, Boundary), every model;
* ``transfer``: adversarials of a substitute CNN, then a line search on the target;
* ``abs_specific``: Latent Descent (reads ABS's reconstructions), ABS models only.

Attacks whose names `ATTACKS` does not (yet) register are skipped with a note, so a preset runs
while the library grows; `plan` says per model what runs and what was skipped and why.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Optional

from abs_tf import attacks
from abs_tf.models.preprocessing import BY_NAME, front_end

KINDS = ("gradient", "estimated", "decision", "transfer", "abs_specific")
MODEL_SETS = ("all", "abs")


@dataclasses.dataclass(frozen=True)
class ModelTraits:
    """What a model offers the evaluation. front_end: its declared preprocessing's name
    ("binarize") or None. latent_search: an ABS model (``search`` gives reconstructions).
    certified_bounds: `abs_tf.models.abs.certify.logits_and_bounds` applies (ABS, not binary).
    adversarial_projection: "nearest_preimage" when every adversarial is stored as the nearest
    input with the same preprocessed image (`abs_tf.attacks.session`; binarizing front ends),
    else None (then absent from settings.json, as in directories made before the field)."""

    front_end: Optional[str] = None
    latent_search: bool = False
    certified_bounds: bool = False
    adversarial_projection: Optional[str] = None

    def describe(self) -> dict:
        """settings.json's entry."""
        out = dataclasses.asdict(self)
        if out["adversarial_projection"] is None:
            del out["adversarial_projection"]
        return out


def adversarial_projection(declared) -> Optional[str]:
    """ModelTraits.adversarial_projection of a front end (a `Preprocessing`, its name, or None)."""
    declared = BY_NAME.get(declared, declared) if isinstance(declared, str) else declared
    return "nearest_preimage" if getattr(declared, "nearest_preimage", None) is not None else None


def traits_of(model) -> ModelTraits:
    """Traits read from the model itself (drivers may pass the registry's instead)."""
    declared = front_end(model)
    searches = callable(getattr(model, "search", None))
    return ModelTraits(front_end=None if declared is None else getattr(declared, "name", str(declared)),
                       latent_search=searches,
                       certified_bounds=searches and declared is None and not getattr(model, "binary", False),
                       adversarial_projection=adversarial_projection(declared))


@dataclasses.dataclass(frozen=True)
class AttackEntry:
    """One attack of a preset (module doc). ``params`` are keyword hyper-parameters of
    ``ATTACKS[factory]``; ``estimator`` those of `EstimatedGradients` (kind "estimated");
    ``substitute_attack`` = (factory, params) of the attack run on the substitute (kind
    "transfer"). ``grid``: ascending epsilons of `minimize`'s coarse stage (None: its default
    grid; unused by minimization attacks). ``max_queries``: per-image budget or None."""

    name: str
    factory: str
    norm: str
    params: Mapping = dataclasses.field(default_factory=dict)
    kind: str = "gradient"
    counts_for: tuple = ()
    models: str = "all"
    estimator: Optional[Mapping] = None
    substitute_attack: Optional[tuple] = None
    grid: Optional[tuple] = None
    bisection_steps: int = 10
    max_queries: Optional[float] = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.models not in MODEL_SETS:
            raise ValueError(f"{self.name}: models must be one of {MODEL_SETS}, got {self.models!r}")
        if (self.kind == "estimated") != (self.estimator is not None):
            raise ValueError(f"{self.name}: an estimator is given exactly for kind 'estimated'")
        if (self.kind == "transfer") != (self.substitute_attack is not None):
            raise ValueError(f"{self.name}: a substitute_attack is given exactly for kind 'transfer'")
        if not self.counts_for:
            object.__setattr__(self, "counts_for", (self.norm,))

    def describe(self) -> dict:
        """JSON-able description (settings.json; the report's budget table)."""
        return {"factory": self.factory, "norm": self.norm, "counts_for": list(self.counts_for),
                "params": dict(self.params), "kind": self.kind, "models": self.models,
                "estimator": None if self.estimator is None else dict(self.estimator),
                "substitute_attack": None if self.substitute_attack is None else
                [self.substitute_attack[0], dict(self.substitute_attack[1])],
                "grid": None if self.grid is None else list(self.grid), "bisection_steps": self.bisection_steps,
                "max_queries": self.max_queries}


LINF_GRID = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.7, 1.0)
L2_GRID = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0, 28.0)
COARSE_LINF_GRID = (0.1, 0.2, 0.3, 0.45, 0.7, 1.0)
COARSE_L2_GRID = (0.5, 1.0, 1.5, 2.5, 4.0, 8.0, 28.0)
COORDINATES = {"method": "coordinates", "sigma": 0.01}
GAUSSIAN = {"method": "gaussian", "samples": 50, "sigma": 0.01}

QUICK = (
    AttackEntry("fgsm", "fgsm", "linf", bisection_steps=6),
    AttackEntry("pgd_linf", "pgd_linf", "linf", {"steps": 10}, grid=COARSE_LINF_GRID, bisection_steps=4),
    AttackEntry("fgm", "fgm", "l2", bisection_steps=6),
    AttackEntry("deepfool_l2", "deepfool_l2", "l2", {"steps": 20}),
    AttackEntry("salt_and_pepper", "salt_and_pepper", "l0", {"repetitions": 2}, kind="decision"),
)

# The paper's attack set per norm (SPEC §4) plus the later minimum-norm attacks, with budgets.
TABLE1 = (
    # L∞
    AttackEntry("fgsm", "fgsm", "linf"),
    AttackEntry("pgd_linf", "pgd_linf", "linf", {"steps": 40, "rel_stepsize": 0.1}, grid=LINF_GRID, bisection_steps=6),
    AttackEntry("mim_linf", "mim_linf", "linf", {"steps": 10}, grid=LINF_GRID, bisection_steps=6),
    AttackEntry("deepfool_linf", "deepfool_linf", "linf", {"steps": 50}),
    AttackEntry("fmn_linf", "fmn_linf", "linf", {"steps": 100}),
    AttackEntry("uniform_noise", "uniform_noise", "linf", {"repetitions": 10}, kind="decision"),
    AttackEntry("transfer_linf", "transfer", "linf", kind="transfer", substitute_attack=("deepfool_linf", {})),
    AttackEntry("fgsm_estimated", "fgsm", "linf", kind="estimated", models="abs", estimator=COORDINATES),
    AttackEntry("bim_linf_estimated", "bim_linf", "linf", {"steps": 10}, kind="estimated", models="abs",
                estimator=GAUSSIAN, grid=COARSE_LINF_GRID, bisection_steps=4),
    # L2
    AttackEntry("fgm", "fgm", "l2"),
    AttackEntry("pgd_l2", "pgd_l2", "l2", {"steps": 50, "rel_stepsize": 0.1}, grid=L2_GRID, bisection_steps=6),
    AttackEntry("bim_l2", "bim_l2", "l2", {"steps": 10}, grid=L2_GRID, bisection_steps=6),
    AttackEntry("deepfool_l2", "deepfool_l2", "l2", {"steps": 50}),
    AttackEntry("cw_l2", "cw_l2", "l2", {"binary_search_steps": 5, "steps": 200}),
    AttackEntry("ddn_l2", "ddn_l2", "l2", {"steps": 100}),
    AttackEntry("fmn_l2", "fmn_l2", "l2", {"steps": 100}),
    AttackEntry("gaussian_noise", "gaussian_noise", "l2", {"repetitions": 10}, kind="decision"),
    AttackEntry("boundary", "boundary", "l2", {"steps": 2000}, kind="decision"),
    AttackEntry("transfer_l2", "transfer", "l2", kind="transfer", substitute_attack=("deepfool_l2", {})),
    AttackEntry("latent_descent", "latent_descent", "l2", kind="abs_specific", models="abs"),
    AttackEntry("fgm_estimated", "fgm", "l2", kind="estimated", models="abs", estimator=COORDINATES),
    AttackEntry("bim_l2_estimated", "bim_l2", "l2", {"steps": 10}, kind="estimated", models="abs",
                estimator=GAUSSIAN, grid=COARSE_L2_GRID, bisection_steps=4),
    # L0 (Pointwise also counts in L2: the paper measured it there too)
    AttackEntry("salt_and_pepper", "salt_and_pepper", "l0", {"repetitions": 10}, kind="decision"),
    AttackEntry("pointwise", "pointwise", "l0", {"binary_search_steps": 10}, kind="decision", counts_for=("l0", "l2")),
    # the best of 5 runs (new starts and orders): one run's L0 varies widely with them
    AttackEntry("pointwise_best_of_5", "pointwise", "l0", {"binary_search_steps": 10, "restarts": 5}, kind="decision",
                counts_for=("l0", "l2")),
    AttackEntry("fmn_l0", "fmn_l0", "l0", {"steps": 100}),
)

PRESETS = {"quick": QUICK, "table1": TABLE1}


@dataclasses.dataclass(frozen=True)
class DistalBudget:
    """Distal adversarials per model (`abs_tf.evaluation.distal`): ``images`` uniform-noise
    images (targets 0..9 cycling; 0: off), each raised for at most ``steps`` momentum steps
    until the target's probability reaches ``threshold``, descending ``loss``
    (`abs_tf.attacks.decision.distal_adversarials`: "logit" is its strongest on ABS)."""

    images: int = 0
    steps: int = 0
    threshold: float = 0.9
    loss: str = "logit"

    def describe(self) -> dict:
        """settings.json's entry (a growing section: a later run must agree on it)."""
        return {"factory": "distal_adversarials", "kind": "distal", "norm": None, "counts_for": [],
                "params": {"images": self.images, "steps": self.steps, "threshold": self.threshold,
                           "loss": self.loss}, "models": "all"}


# Per preset: the distal budget, and the attacks the "more steps never weaken a result" check
# re-runs with MORE_STEPS_FACTOR times their steps (`abs_tf.evaluation.repeats`). Steps needed to
# reach 0.9 (seed 0, 2026-11-28): CNN and Binary CNN 0-3, nearest neighbour 5, Madry 3-15 (20
# images), ABS 37-59 (4 images, 48 s); Binary ABS stays at p 0.11 after 200 (2 images, 105 s):
# 200 steps leave ABS > 3x its need and bound the models that never get there.
DISTAL = {"quick": DistalBudget(images=2, steps=5), "table1": DistalBudget(images=20, steps=200)}
MORE_STEPS = {"quick": ("pgd_linf",), "table1": ("pgd_linf", "mim_linf", "pgd_l2", "bim_l2")}
MORE_STEPS_FACTOR = 2


def get_preset(name: str) -> tuple:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What runs on one model: ``entries`` (preset order) and ``skipped`` {name: reason}."""

    entries: tuple
    skipped: dict


def unavailable(entry: AttackEntry) -> Optional[str]:
    """Why ``entry`` cannot be built with the attack library as it is (None: it can)."""
    for name in (entry.factory,) + ((entry.substitute_attack[0],) if entry.substitute_attack else ()):
        if name not in attacks.ATTACKS:
            return f"attack {name!r} is not registered in abs_tf.attacks.ATTACKS"
    return None


def plan(entries, traits: ModelTraits, *, substitute_available: bool = True, only=None) -> Plan:
    """The entries of a preset that apply to a model with ``traits``.

    Args: entries: a preset (tuple of `AttackEntry`). only: optional names to keep (others
      are skipped, "not selected"). substitute_available: whether transfer attacks can run.
    """
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"attack names in a preset must be unique, got {names}")
    if only is not None:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"unknown attack(s) {', '.join(unknown)}; this preset has: {', '.join(names)}")
    run, skipped = [], {}
    for e in entries:
        reason = None
        if only is not None and e.name not in only:
            reason = "not selected"
        elif e.models == "abs" and not traits.latent_search:
            reason = "ABS models only"
        elif e.kind == "transfer" and not substitute_available:
            reason = "no substitute model given"
        else:
            reason = unavailable(e)
        if reason:
            skipped[e.name] = reason
        else:
            run.append(e)
    return Plan(tuple(run), skipped)


def build(entry: AttackEntry, model, *, substitute=None):
    """(attack, the model to run it on) for ``entry`` and ``model`` (module doc). The second
    has ``model``'s forward pass, so what the attack verifies is ``model``'s decision."""
    reason = unavailable(entry)
    if reason:
        raise KeyError(f"{entry.name}: {reason}")
    params = dict(entry.params)
    if entry.kind == "transfer":
        if substitute is None:
            raise ValueError(f"{entry.name}: a transfer attack needs a substitute model")
        factory, sub_params = entry.substitute_attack
        params.update(substitute=substitute, attack=attacks.ATTACKS[factory](**dict(sub_params)))
    attack = attacks.ATTACKS[entry.factory](**params)
    if attack.norm != entry.norm:
        raise ValueError(f"{entry.name}: the preset says norm {entry.norm!r}, {attack!r} minimises {attack.norm!r}")
    if entry.kind == "gradient" and front_end(model) is not None:
        return attack, attacks.StraightThrough(model)
    if entry.kind == "estimated":
        return attack, attacks.EstimatedGradients(model, **dict(entry.estimator))
    return attack, model


def _is_minimization(factory: str) -> bool:
    """Whether ``ATTACKS[factory]`` builds a `MinimizationAttack` (False if unregistered)."""
    cls = attacks.ATTACKS.get(factory)
    while isinstance(cls, functools.partial):
        cls = cls.func
    return isinstance(cls, type) and issubclass(cls, attacks.MinimizationAttack)


def budget_rows(entries) -> list:
    """One row per entry for the report's budget table: name, norm, counts in, kind, models,
    hyper-parameters, search (grid points + bisections or "own"), gradient."""
    rows = []
    for e in entries:
        params = ", ".join(f"{k}={v}" for k, v in e.params.items()) or "defaults"
        if e.substitute_attack:
            params = f"substitute: {e.substitute_attack[0]}" + (f"; {params}" if e.params else "")
        if unavailable(e):
            search = "not available: " + unavailable(e)
        elif _is_minimization(e.factory):
            search = "runs once (minimisation attack)"
        else:
            grid = "default grid" if e.grid is None else f"{len(e.grid)} points ({e.grid[0]}..{e.grid[-1]})"
            search = f"{grid} + {e.bisection_steps} bisections"
        gradient = {"gradient": "model's own (straight-through for binarizing front ends)",
                    "estimated": ", ".join(f"{k}={v}" for k, v in (e.estimator or {}).items())}.get(e.kind, "none")
        rows.append({"attack": e.name, "norm": e.norm, "counts_for": "/".join(e.counts_for), "kind": e.kind,
                     "models": e.models, "params": params, "search": search, "gradient": gradient,
                     "max_queries": "none" if e.max_queries is None else f"{e.max_queries:g}"})
    return rows
