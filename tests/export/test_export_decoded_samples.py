"""ABS's decoded samples computed at load time: the same table as the in-process model's cache
(the exported model's outputs are compared in test_export_signatures.py)."""

from __future__ import annotations

import numpy as np
import pytest

from abs_tf.export.decoded_samples import serving_abs


@pytest.mark.parametrize("chunk", [16, 60, 250], ids=["partial_last_chunk", "one_chunk", "chunk_over_S"])
def test_load_time_decoding_equals_the_in_process_cache(small_abs, chunk):
    serving = serving_abs(small_abs, chunk=chunk)
    table, norms = serving._decoded
    table._initialize()                     # what loading the SavedModel runs
    np.testing.assert_allclose(table.read().numpy(), small_abs.reconstructions_t.numpy(), atol=1e-6)
    np.testing.assert_allclose(norms.read().numpy(), small_abs.reconstruction_sq_norms.numpy(), rtol=1e-5)
