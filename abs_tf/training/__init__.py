"""Training: the resumable loop, augmentation, the class VAEs, the classifiers, adversarial
training, the class-margin fine-tuning, and shipping weights with their provenance."""
