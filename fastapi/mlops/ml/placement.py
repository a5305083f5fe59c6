"""Where the platform's work runs in Ray, named once for the code that starts Ray nodes
(`local/components.py`; helm-values/ray-cluster.yaml in the cluster) and the code that
places work on them (`ml/trainer.py`). Imports nothing, so the supervisor need not
import Ray."""

# The custom resource of the nodes the warm trainer may run on: the cluster's worker
# group, never the head with Ray's control processes; locally, the one node.
TRAINER_RESOURCE = "trainer"
# What one trainer takes of it: a mark of placement rather than a share, since a node
# holds the trainers of several tracking servers or code versions.
TRAINER_SHARE = 0.01
