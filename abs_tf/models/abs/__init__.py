"""ABS and Binary ABS: the class VAEs, the latent search, calibration and certified bounds."""
