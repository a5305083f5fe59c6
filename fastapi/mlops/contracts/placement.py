"""Where the platform's work runs in Ray, named once for the code that starts Ray nodes
(`local/components.py`; helm-values/ray-cluster.yaml in the cluster) and the code that
places work on them. Imports nothing, so the supervisor need not import Ray.

Two kinds of node, each marked by a custom resource, so that each holds only the
credentials of its own work (the cluster gives each worker group its own Secret):
- trainer nodes run what writes models: the job's entrypoint, the warm trainer, a
  fit's tree builders and a search's trials (MLflow's `trainer` user, the dataset's
  reader);
- serving nodes run Serve's replicas (MLflow's `serving` user, which only reads).
The cluster's head has neither: it runs Ray's control processes and no work of ours.
Locally, the one node is both.
"""

TRAINER_RESOURCE = "trainer"
SERVING_RESOURCE = "serving"
# What one piece of work takes of its node's resource: a mark of placement rather than
# a share (CPU and memory are reserved apart), so a node holds any number of them.
MARK = 0.01


def on_trainer_nodes() -> dict[str, float]:
    """Ray `resources` that place work on a trainer node."""
    return {TRAINER_RESOURCE: MARK}


def on_serving_nodes() -> dict[str, float]:
    """Ray `resources` that place work on a serving node."""
    return {SERVING_RESOURCE: MARK}
