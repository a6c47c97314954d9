"""Tasks: prompts, splits and rewards; one module per task family (base.py: the Task protocol).

May import: edgees.errors, numpy, and (onnx_reward only) onnxruntime and tokenizers. A task talks
to the engine it is handed (generate, score); it never imports engine, qes, run or commands.
"""
