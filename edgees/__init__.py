"""edgees: fine-tune the packed low-bit weight codes of a GGUF model on CPU with Quantized ES."""

__version__ = "0.1.0"
