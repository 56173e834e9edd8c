"""What the explainer shows, as plain JSON-able data: every layer's activations for an image,
the gradients flowing back for a chosen class, and the computation behind any one value.

Nothing here knows a layer by name: each layer describes itself (``operation``,
``config()``, ``explain``, ``explain_gradient``, ``explain_state``), so every sequential
model the engine can build is explained the same way.

Arrays travel as ``{"shape": [...], "data": base64 of little-endian float32}`` (see
:func:`encode`), which a browser turns into a ``Float32Array`` without parsing text.
"""

from .trace import decode, describe, encode, explain_parameter, explain_value, trace

__all__ = ["decode", "describe", "encode", "explain_parameter", "explain_value", "trace"]
