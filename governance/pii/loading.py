"""Loading Presidio the way the scanner needs it: fast, and quiet about text."""

from __future__ import annotations

import logging
import sys


class _NoText(logging.Filter):
    """Drop Presidio's and spaCy's records below WARNING, and strip the arguments of the rest:
    their debug lines carry context words and values, and a log is no place for PII."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        record.msg = f"{record.name}: {record.levelname.lower()} (message withheld)"
        record.args = ()
        return True


def silence_libraries() -> None:
    """Keep text out of the logs of the NLP libraries, at every level."""
    for name in ("presidio-analyzer", "presidio-anonymizer", "spacy", "presidio_analyzer"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoText) for f in logger.filters):
            logger.addFilter(_NoText())
        logger.setLevel(logging.WARNING)


def import_presidio() -> None:
    """Import Presidio without transformers and torch.

    Presidio's NLP-engine package imports its Hugging Face engine, which imports transformers
    and torch (10 to 40 s here) only to offer an engine the scanner never uses. Both are
    hidden while Presidio loads; Presidio treats them as absent, and they import normally
    afterwards for whoever needs them.
    """
    if "presidio_analyzer" in sys.modules:
        return
    hidden = [name for name in ("transformers", "torch") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import presidio_analyzer
        import presidio_analyzer.predefined_recognizers  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    silence_libraries()
