"""The classifiers: ABS (models/abs) and the baselines (CNN, nearest neighbour)."""
