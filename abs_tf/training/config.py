"""The training configurations: one frozen dataclass per procedure, validated on construction.

    VAETrainingConfig          the ten class VAEs of ABS (ELBO, each on its own class)
    MarginFineTuneConfig       class-margin fine-tuning of trained VAEs' decoders
    ClassifierTrainingConfig   the feed-forward baselines (cnn, binary_cnn, madry, substitute)

Field names are those of `train.py`'s flags, so that an error names what the user typed. The
allowed range of every numeric field is stated once, in `RANGES`; the dataclasses check it in
``__post_init__`` and `train.py` registers the same checks as flag validators (so a bad flag is
refused before any work starts). This module imports no TensorFlow: `train.py` parses flags
against it cheaply.

`training_record()` is what determines the trained weights: a run directory remembers it and
refuses to resume (or re-run) with another one (`abs_tf.training.run_dir`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Optional, Tuple

from abs_tf.constants import NUM_CLASSES

# The per-class seed 100 * seed + class and the per-step seeds are int32.
SEED_MAX = (2 ** 31 - 1) // 100 - NUM_CLASSES
MNIST_TRAIN_IMAGES = 60000
MNIST_TEST_IMAGES = 10000
SCHEDULES = ("cosine", "triangular")
FINE_TUNE_PROCEDURES = ("class_margin",)


@dataclasses.dataclass(frozen=True)
class Range:
    """An allowed interval (either end may be open or absent); ``integer``: whole numbers only."""
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def contains(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and value != int(value):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """E.g. "> 0", "an integer >= 1", "in [0, 1]", "an integer in 0..60000"."""
        kind = "an integer " if self.integer else ""
        low, high = (None if v is None else f"{int(v)}" if v == int(v) else f"{v:g}" for v in (self.low, self.high))
        if low is not None and high is not None:
            if self.integer and not (self.low_open or self.high_open):
                return f"{kind}in {low}..{high}"
            return f"{kind}in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if low is not None:
            return f"{kind}{'>' if self.low_open else '>='} {low}"
        return f"{kind}{'<' if self.high_open else '<='} {high}"


_POSITIVE = Range(0, low_open=True)
_COUNT = Range(1, integer=True)
_TEST_IMAGES = Range(0, MNIST_TEST_IMAGES, integer=True)
# The one statement of every numeric field's allowed values (flags and configs alike).
RANGES = {
    "epochs": _COUNT,
    "batch_size": _COUNT,
    "learning_rate": _POSITIVE,
    "seed": Range(0, SEED_MAX, integer=True),
    "train_images": Range(0, MNIST_TRAIN_IMAGES, integer=True),
    "beta": _POSITIVE,
    "augment_probability": Range(0, 1),
    "augment_max_shift": Range(0, 14),
    "margin_alpha": _POSITIVE,
    "margin_pool_ratio": Range(1, low_open=True),
    "margin_search_samples": _COUNT,
    "margin_search_steps": _COUNT,
    "margin_refresh": _COUNT,
    "adv_eps": Range(0, 1, low_open=True),
    "adv_step_size": _POSITIVE,
    "adv_steps": _COUNT,
    "monitor_images": _TEST_IMAGES,
    "robust_eval_images": _TEST_IMAGES,
    "pgd100_eval_images": _TEST_IMAGES,
}


class ConfigValueError(ValueError):
    """A configuration field holds a value outside its allowed range; ``field`` names it (as its flag)."""

    def __init__(self, config_cls, field: str, problem: str):
        super().__init__(f"{config_cls.__name__}.{field} {problem}")
        self.field, self.problem = field, problem


def classes_problem(classes) -> Optional[str]:
    """Why ``classes`` is not a valid list of VAE classes (None if it is)."""
    try:
        values = [int(c) for c in classes]
    except (TypeError, ValueError):
        return f"must be digits 0..9, got {classes!r}"
    if not values:
        return "must name at least one digit class 0..9 (got none)"
    if any(not 0 <= v < NUM_CLASSES for v in values) or len(set(values)) != len(values):
        return f"must be distinct digits 0..9, got {list(classes)}"
    return None


class _Config:
    """Validation and records shared by the configuration dataclasses."""

    # Fields that configure evaluation, not training: not part of `training_record`.
    EVALUATION_FIELDS: ClassVar[Tuple[str, ...]] = ()

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            allowed = RANGES.get(field.name)
            if allowed is not None and not allowed.contains(value):
                raise ConfigValueError(type(self), field.name, f"must be {allowed.describe()}, got {value!r}")

    def record(self) -> dict:
        """Every field, JSON-ready (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def training_record(self) -> dict:
        """The fields that determine the trained weights (a run refuses to resume with others)."""
        return {k: v for k, v in self.record().items() if k not in self.EVALUATION_FIELDS}


def build(cls, **options):
    """``cls(**options)`` with the options that are None left at their defaults (unset flags)."""
    return cls(**{k: v for k, v in options.items() if v is not None})


@dataclasses.dataclass(frozen=True)
class VAETrainingConfig(_Config):
    """The class VAEs: Adam with cosine decay to 5 %, per-class seed 100 * seed + class.

    classes: which digit classes to train (each independently; several processes may share a
      run directory with disjoint classes). beta: KL weight of the training ELBO.
    augment: light random zoom/rotation/shift (`augment.random_affine`) of a fraction
      ``augment_probability`` of the training images, shifts up to ``augment_max_shift`` pixels.
    train_images: use only the first this-many training images (0: all; for smoke tests).
    init_from: a directory of ``vae_{c}.weights.h5`` to start from (fine-tuning), or None.
    """
    classes: Tuple[int, ...] = tuple(range(NUM_CLASSES))
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    beta: float = 1.0
    augment: bool = True
    augment_probability: float = 0.3
    augment_max_shift: float = 1.5
    seed: int = 0
    train_images: int = 0
    init_from: Optional[str] = None

    # Several processes train disjoint classes of one run: the classes are not a training setting.
    EVALUATION_FIELDS: ClassVar[Tuple[str, ...]] = ("classes",)

    def __post_init__(self):
        problem = classes_problem(self.classes)
        if problem:
            raise ConfigValueError(type(self), "classes", problem)
        object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        super().__post_init__()

    def class_seed(self, class_id: int) -> int:
        return 100 * self.seed + int(class_id)


@dataclasses.dataclass(frozen=True)
class MarginFineTuneConfig(_Config):
    """Class-margin fine-tuning of the decoders of ten trained VAEs (`abs_tf.training.margin`).

    init_from: the directory of the ten ``vae_{c}.weights.h5`` to fine-tune (required).
    margin_alpha: sharpness of the soft margin, 1 / (per-pixel loss units).
    margin_pool_ratio: train on images whose best wrong class's loss is within this factor of
      the true class's (under sample selection).
    margin_search_samples / margin_search_steps: the training-time latent search;
    margin_refresh: rebuild it from the current decoders every this-many updates.
    """
    init_from: str = ""
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-4
    margin_alpha: float = 1000.0
    margin_pool_ratio: float = 1.5
    margin_search_samples: int = 2000
    margin_search_steps: int = 20
    margin_refresh: int = 20
    seed: int = 0
    train_images: int = 0

    def __post_init__(self):
        if not self.init_from:
            raise ConfigValueError(type(self), "init_from", "must name the directory of the ten trained "
                                   "vae_{c}.weights.h5 to fine-tune")
        super().__post_init__()

    def training_record(self) -> dict:
        return {"fine_tune": "class_margin", **super().training_record()}


@dataclasses.dataclass(frozen=True)
class ClassifierTrainingConfig(_Config):
    """A feed-forward baseline: cross-entropy, Adam, a ``schedule`` over all steps.

    model: registry name (one of `CLASSIFIER_DEFAULTS`). Build it with `classifier_config`,
      which fills that model's defaults.
    adversarial: L-infinity adversarial training (Madry et al.): every batch replaced by its
      PGD adversarial (``adv_steps`` steps of ``adv_step_size``, random start, radius ``adv_eps``).
    monitor_images: adversarial training only: per epoch, PGD-40 accuracy on this many first
      test images (TensorBoard; 0: off). robust_eval_images / pgd100_eval_images: after
      training, PGD-40 / PGD-100 with 10 restarts (eps 0.3, step 0.01) on this many first test
      images (0: skip). Evaluation settings, not part of the training record.
    """
    model: str
    epochs: int
    batch_size: int = 100
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    augment: bool = False
    adversarial: bool = False
    adv_eps: float = 0.3
    adv_step_size: float = 0.1
    adv_steps: int = 4
    seed: int = 0
    train_images: int = 0
    init_from: Optional[str] = None
    monitor_images: int = 200
    robust_eval_images: int = 1000
    pgd100_eval_images: int = 0

    EVALUATION_FIELDS: ClassVar[Tuple[str, ...]] = ("monitor_images", "robust_eval_images", "pgd100_eval_images")

    def __post_init__(self):
        if self.model not in CLASSIFIER_DEFAULTS:
            raise ConfigValueError(type(self), "model", f"must be one of {tuple(CLASSIFIER_DEFAULTS)}, "
                                                        f"got {self.model!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigValueError(type(self), "schedule", f"must be one of {SCHEDULES}, got {self.schedule!r}")
        super().__post_init__()
        if self.adversarial and self.adv_step_size > self.adv_eps:
            raise ConfigValueError(type(self), "adv_step_size",
                                   f"must be <= adv_eps ({self.adv_eps}), got {self.adv_step_size}")

    def training_record(self) -> dict:
        record = super().training_record()
        if not self.adversarial:  # the attack settings mean nothing then
            for key in ("adv_eps", "adv_step_size", "adv_steps"):
                record.pop(key)
        return record


# Per-model defaults of the baselines (what `train.py --model=<name>` trains when flags are unset).
CLASSIFIER_DEFAULTS = {
    "cnn": dict(epochs=5, augment=True),
    "binary_cnn": dict(epochs=3),
    "substitute": dict(epochs=3),
    # PGD-4 adversarial training, Adam with a one-cycle learning rate (as in Wong et al. 2020).
    "madry": dict(epochs=3, schedule="triangular", adversarial=True),
}


def classifier_config(model: str, **options) -> ClassifierTrainingConfig:
    """The configuration of baseline ``model``: its defaults, overridden by the options not None."""
    if model not in CLASSIFIER_DEFAULTS:
        raise ValueError(f"model must be one of {tuple(CLASSIFIER_DEFAULTS)}, got {model!r}")
    chosen = {k: v for k, v in options.items() if v is not None}
    return ClassifierTrainingConfig(model=model, **{**CLASSIFIER_DEFAULTS[model], **chosen})
