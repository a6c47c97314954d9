"""edgees: fine-tune the packed low-bit weight codes of a GGUF model on CPU with Quantized ES.

Layers, lowest first; a layer imports only those below it:
  errors.py, fileio.py   one-line errors with their fix; atomic writes, sha256
  gguf/                  the file format: validation, views, the working copy, codecs
  qes/                   the algorithm, noise, kernels, weight state (imports gguf)
  engine/                llama.cpp over the live weights (imports gguf)
  tasks/                 prompts, splits, rewards (talk to an engine they are given)
  run/                   run dir and log, trainer, rebuild, export (imports gguf, qes, engine)
  bench/, models.py      benchmarks; the model registry and store
  commands/, cli.py      the CLI: the only code that prints or exits
"""

__version__ = "0.1.0"
