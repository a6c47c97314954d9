"""A fine-tuning run: its directory and log, the training loop, replay, export, the curve.

May import: edgees.gguf, edgees.qes, edgees.engine, edgees.tasks (through the task objects it is
given), edgees.fileio, edgees.errors. Never imports commands; nothing here prints.
  log.py         the run directory: header, append-only checksummed step log, metrics, lock
  config.py      settings from the CLI, a TOML file, run.json and defaults, in that precedence
  events.py      TrainerEvents: what a trainer reports (progress bars, the daemon)
  executor.py    who evaluates a step's members: the interface, and the local loop (scale/ has Ray's)
  trainer.py     members on live perturbed weights, the update, the durable step record
  checkpoint.py  the state at step t: a verified cache in front of the replay
  rebuild.py     a run's weights rebuilt from base file + log (resume, verify, export)
  export.py      the adapted model as a GGUF, from a rebuild or from live weights
  probe.py       the signal probe: random members around the base, before a long run
  plot.py        curve.png from metrics.jsonl (matplotlib, optional)
"""
