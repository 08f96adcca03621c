"""runner: launch every comparison job of a ptychography study and keep a SQLite ledger of it."""

__version__ = "0.1.0"
