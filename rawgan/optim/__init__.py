"""Optimizers over a network's flat parameter buffer."""
from .adam import Adam

__all__ = ["Adam"]
