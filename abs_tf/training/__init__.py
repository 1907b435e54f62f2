"""Training: configurations (`config`), one entry per procedure (`run`), the resumable loop
(`loop`), run directories (`run_dir`), seeds (`determinism`), augmentation (`augment`), the
class VAEs (`vae`), the classifiers (`classifier`), adversarial training (`adversarial`), the
class-margin fine-tuning (`margin`), and shipping weights with their provenance (`provenance`)."""
