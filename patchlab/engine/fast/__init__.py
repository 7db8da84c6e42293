"""Fast exact patching in plain torch on the bridge's weights.

Applies to architectures whose forward pass it implements (GPT-2 style, GPT-NeoX, Llama-style
RMSNorm/rotary/GQA/gated MLP) after checking its own unpatched run against the bridge's;
anything else falls back to the generic hook-based backend with the reason recorded.
"""

from patchlab.engine.fast.backend import NAME, Mismatch, iter_rows, unsupported_reason

__all__ = ["NAME", "Mismatch", "iter_rows", "unsupported_reason"]
