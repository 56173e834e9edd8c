"""The explainer: ``convlens serve`` — a FastAPI app and a static page (vanilla ES modules).

The app only serialises what :mod:`convlens.explain` computes; the page draws it.
"""

from .app import create_app

__all__ = ["create_app"]
