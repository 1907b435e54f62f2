"""Serving export: versioned SavedModels that TF Serving and any TF program use without abs-tf.

  savedmodel.py        ExportConfig, export_registered, export_model: the entry points
  signatures.py        the exported module: serving_default, classify_uint8, explain, config
  explain.py           the explain signature's certified-L2 estimate, in the graph
  decoded_samples.py   ABS's decoded samples computed when the SavedModel loads
  writer.py            <export_base>/<name>/<version>/ folders, written atomically, never overwritten

Only drivers (export/export_savedmodel.py, scripts/) import this package.
"""
