"""How well each class decoder fills its prior: decode latents at fixed radii, classify them.

ABS explains an image by the best latent of each class decoder, with the prior cost ½||z||²
(per pixel: /784). A decoder whose latents near the origin decode to garbage or to shapes of
other digits offers other classes cheap explanations. This script decodes ``--num_directions``
random unit directions scaled to each radius in ``--radii`` with every class decoder, labels the
images with a CNN (the shipped vanilla CNN by default) and reports, per set of VAEs, radius and
class, the fraction decoded to the decoder's own class. It also writes a figure of the decoded
images of one class (rows: radii, columns: directions) for each set of VAEs.

  python scripts/decoder_prior_coverage.py --weights=weights/abs_vae,official --output_dir=out/coverage

Output: ``<output_dir>/coverage.json`` ({weights: {"radii": [...], "own_class_fraction": [radius][class]}})
and ``<output_dir>/decoded_class<k>.png``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from abs_tf.paths import reference_dir  # noqa: E402  (after the path insert)

FLAGS = flags.FLAGS


def define_flags():
    """Only when run as a script, so that tests can import the helpers next to other absl programs."""
    flags.DEFINE_list("weights", ["weights/abs_vae", "official"], "VAE weight directories, or 'official'.")
    flags.DEFINE_list("radii", ["0", "1", "2", "3", "4", "5"], "Latent norms to decode at (the search's ball has radius 5).")
    flags.DEFINE_integer("num_directions", 1000, "Random unit directions per radius (the same for every decoder).")
    flags.DEFINE_integer("seed", 0, "Seed of the directions.")
    flags.DEFINE_string("classifier", "cnn", "Registered model that labels the decoded images (e.g. cnn, cnn_official).")
    flags.DEFINE_integer("figure_class", 9, "Class whose decoded images are drawn.")
    flags.DEFINE_string("official_dir", str(reference_dir()), "The release's reference directory "
                        "(default: $ABS_TF_REFERENCE_DIR, else ../shared/reference/abs_official).")
    flags.DEFINE_string("output_dir", "out/decoder_prior_coverage", "Where coverage.json and the figures go.")


def unit_directions(num: int, seed: int):
    """[num, 8] float32 random directions of norm 1."""
    import numpy as np

    d = np.random.default_rng(seed).standard_normal((num, 8))
    return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


def decode_all_classes(model, latents):
    """latents [N, 8] (the same for every class) -> images [N, 28, 28, 10] in (0, 1)."""
    import numpy as np
    import tensorflow as tf

    z = np.repeat(latents[:, None, :], 10, axis=1)
    return tf.sigmoid(model.decoder(tf.constant(z), False)).numpy()


def label_function(classifier_name: str):
    """The registered classifier ``classifier_name`` as images [M,28,28,1] -> labels [M]."""
    from abs_tf.models import cnn
    from abs_tf.registry import load_model

    classifier = load_model(classifier_name)
    return lambda x: cnn.predict_logits(classifier, x).argmax(1)


def own_class_fraction(images, classify):
    """images [N, 28, 28, 10] (class c in channel c), classify: [M,28,28,1] -> labels [M]
    -> fraction of each class's images labelled as that class, [10]."""
    import numpy as np

    return np.array([np.mean(classify(images[..., c:c + 1]) == c) for c in range(images.shape[-1])])


def main(argv):
    del argv
    import numpy as np

    from abs_tf import ABS

    out_dir = Path(FLAGS.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classify = label_function(FLAGS.classifier)
    radii = [float(r) for r in FLAGS.radii]
    directions = unit_directions(FLAGS.num_directions, FLAGS.seed)
    results, rows_per_weights = {}, {}
    for weights in FLAGS.weights:
        model = (ABS.from_official_dir(FLAGS.official_dir, n_steps=1) if weights == "official"
                 else ABS.from_weights(weights, n_steps=1, n_samples=10))
        fractions, rows = [], []
        for r in radii:
            images = decode_all_classes(model, directions * r)
            fractions.append(own_class_fraction(images, classify))
            rows.append(np.concatenate(list(images[:10, ..., FLAGS.figure_class]), axis=1))
            print(f"{weights:>24s}  radius {r:3.1f}: own class {fractions[-1].mean():6.1%}  "
                  f"per class {np.round(fractions[-1], 2).tolist()}")
        results[weights] = {"radii": radii, "own_class_fraction": np.array(fractions).tolist(),
                            "mean_over_classes": np.array(fractions).mean(1).tolist()}
        rows_per_weights[weights] = np.concatenate(rows, axis=0)
    config = {k: FLAGS[k].value for k in ("weights", "radii", "num_directions", "seed", "classifier")}
    (out_dir / "coverage.json").write_text(json.dumps({"config": config, "results": results}, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows_per_weights), figsize=(5 * len(rows_per_weights), 3.5), squeeze=False)
    for ax, (weights, grid) in zip(axes[0], rows_per_weights.items()):
        ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{weights}: class {FLAGS.figure_class}", fontsize=9)
        ax.set_yticks([14 + 28 * i for i in range(len(radii))], [f"|z|={r:g}" for r in radii])
        ax.set_xticks([])
    fig.tight_layout()
    fig.savefig(out_dir / f"decoded_class{FLAGS.figure_class}.png", dpi=80)
    print(f"wrote {out_dir / 'coverage.json'} and {out_dir / f'decoded_class{FLAGS.figure_class}.png'}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
