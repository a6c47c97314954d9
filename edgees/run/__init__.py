"""A fine-tuning run: its directory and log, the training loop, replay, export, the curve.

May import: edgees.gguf, edgees.qes, edgees.engine, edgees.tasks (through the task objects it is
given), edgees.fileio, edgees.errors. Never imports commands; nothing here prints.
  log.py      the run directory: header, append-only checksummed step log, metrics, lock
  trainer.py  members on live perturbed weights, the update, the durable step record
  rebuild.py  a run's weights rebuilt from base file + log (resume, verify, export)
  export.py   the adapted model as a GGUF
  plot.py     curve.png from metrics.jsonl (matplotlib, optional)
"""
