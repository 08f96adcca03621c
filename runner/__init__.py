"""runner: run every job of a study (one subprocess each, on GPU slots or a cluster) and keep a SQLite
ledger of it. The engine is this package; the study it runs is runner.ptycho."""

__version__ = "0.1.0"
