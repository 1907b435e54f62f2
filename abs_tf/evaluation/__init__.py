"""The robustness evaluation: per model, image and norm the smallest verified adversarial over
all attacks (the paper's Table 1 protocol, SPEC §4-5), resumable, sharded, re-checkable.

    from abs_tf.evaluation import EvaluationConfig, run_evaluation, write_report
    config = EvaluationConfig(preset="table1", num_images=100, batch_size=16)
    run_evaluation(config, {"cnn": cnn, "abs": abs_model}, test_images, test_labels, "results/table1",
                   substitute=substitute_cnn)
    write_report("results/table1", test_images)

Modules: `settings` (the configuration, image selection and sharding, the run-settings file),
`presets` (attack sets and budgets; how each attack meets each model), `records` (one verified
record per model x attack x image; append-only storage; adversarial shards), `recheck`
(re-verifying stored records), `runner` (the run), `distal` (distal adversarials per model),
`repeats` (the checks that repeat attacks: determinism, more steps), `merge` (shards and
directories), `protocol` (the paper's numbers, pure numpy), `report` and `figures` (report.md,
PNGs); with Apache Beam installed (requirements-beam.txt) `beam_pipeline` (the evaluation as a
Beam pipeline; `remote`: its URL output directories through tf.io.gfile) and `classify` (bulk
classification of an exported SavedModel with RunInference).
"""

from abs_tf.evaluation.merge import merge
from abs_tf.evaluation.presets import PRESETS, AttackEntry, ModelTraits, traits_of
from abs_tf.evaluation.recheck import RecordRejected, recheck
from abs_tf.evaluation.records import CleanRecord, Record, read_clean, read_records
from abs_tf.evaluation.report import write_report
from abs_tf.evaluation.runner import Progress, ProgbarProgress, run_evaluation, write_summary
from abs_tf.evaluation.settings import EvaluationConfig, select_indices

__all__ = [
    "AttackEntry", "CleanRecord", "EvaluationConfig", "ModelTraits", "PRESETS", "Progress", "ProgbarProgress",
    "Record", "RecordRejected", "merge", "read_clean", "read_records", "recheck", "run_evaluation",
    "select_indices", "traits_of", "write_report", "write_summary",
]
