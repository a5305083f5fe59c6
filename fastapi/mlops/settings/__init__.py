"""The platform's settings, read from MLOPS_* environment variables, one class per
runtime: what every process reads (`base`), a training job (`training`), a Serve
replica (`serving`), the API (`api`, which passes the first two on), and `make up`
(`platform`). Each process imports its own module. Defaults are the local platform's;
the Kubernetes manifests override them.
"""
