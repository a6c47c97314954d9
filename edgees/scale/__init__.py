"""Scale-out: a run's population evaluated by Ray worker processes, here or on a cluster (the
`edgees[ray]` extra; Ray is imported only by `--executor ray`).

May import: edgees.gguf, edgees.qes, edgees.engine, edgees.tasks, edgees.run. Nothing here prints.
    cluster.py   connect to a Ray cluster or start a private local one; the one-line checks
    worker.py    one worker's working copy, weight state and engine, kept in step with the log (no Ray)
    executor.py  RayExecutor: members out in chunks, rewards back, every worker's hash checked
"""
