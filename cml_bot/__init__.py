"""cml-bot: machine learning in code review."""

__version__ = "0.1.0"
__all__ = ["__version__"]
