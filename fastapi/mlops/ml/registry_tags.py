"""Names of what training stores beside a model version and serving reads back."""

COMPILED_DIR = "compiled"
COMPILED_FILE = "model.onnx"
TAG_COMPILED = "mlops.compiled"  # "onnx" or "none"
TAG_COMPILED_REASON = "mlops.compiled_reason"
TAG_CLASSES = "mlops.classes"  # JSON list, in the order of the probability columns
TAG_FEATURES = "mlops.features"  # JSON list, the input columns in order
TAG_FEATURE_COUNT = "mlops.feature_count"
TAG_DATASET = "mlops.dataset"  # JSON {"uri", "target"}: what it was trained on
TAG_JOB = "mlops.job_id"  # the training job that registered the version
TAG_ACCURACY = "mlops.accuracy"  # held-out accuracy, as text
TAG_F1 = "mlops.f1_macro"
TAG_PROMOTION = "mlops.promotion"  # "promoted" or "not promoted"
TAG_PROMOTION_REASON = "mlops.promotion_reason"
REFERENCE_DIR = "drift"
REFERENCE_FILE = "reference.json"  # the training features' profile (mlops.ml.drift)
TAG_SKOPS_SHA256 = "mlops.skops_sha256"  # digest of the pipeline's skops file
TAG_ONNX_SHA256 = "mlops.onnx_sha256"  # digest of the compiled form, when there is one
TAG_SEAL = "mlops.seal"  # the platform's HMAC over the rest (mlops.ml.provenance)
