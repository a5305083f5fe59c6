"""The records that cross a process boundary, typed once for their writers and readers:
the API, Ray's jobs and trainer, and the Serve replicas. They import nothing of the
platform (`.importlinter` checks it), so every process can load them."""
