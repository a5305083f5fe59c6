"""Names of what training stores beside a model version and serving reads back."""

COMPILED_DIR = "compiled"
COMPILED_FILE = "model.onnx"
TAG_COMPILED = "mlops.compiled"  # "onnx" or "none"
TAG_COMPILED_REASON = "mlops.compiled_reason"
TAG_CLASSES = "mlops.classes"  # JSON list, in the order of the probability columns
TAG_FEATURES = "mlops.features"  # JSON list, the input columns in order
