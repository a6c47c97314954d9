"""GGUF files: strict validation, the parsed header, mapped tensor views, the working copy, codecs.

The only code in edgees that knows file offsets. May import: edgees.errors, edgees.fileio, numpy,
gguf (constants and the tiny-model writer). Never imports qes, engine, run, tasks or commands.
  header.py        constants, TensorInfo, GGUFFile, StringArray
  reader.py        read_gguf: every size field checked before anything is allocated
  writer.py        a header with metadata added; a model streamed atomically to a new file
  working_copy.py  read-only TensorMap; the writable RAM-backed WorkingCopy llama.cpp maps
  quants.py        the trainable types' block layouts and numpy codecs (the C twin: native/codes.c)
  tiny.py          tiny generated models of every type, for tests
"""
