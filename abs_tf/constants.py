"""The project's fixed sizes, defined once: MNIST images and the ABS latent space."""

IMAGE_SHAPE = (28, 28, 1)    # one image, NHWC without the batch axis; pixels float32 in [0, 1]
NUM_PIXELS = 28 * 28         # 784: the ABS loss is per pixel
NUM_CLASSES = 10
LATENT_DIM = 8               # latent size of each class VAE of ABS
