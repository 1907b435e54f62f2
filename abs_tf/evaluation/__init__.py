"""The robustness evaluation (per image the smallest verified adversarial over attacks and norms)."""
