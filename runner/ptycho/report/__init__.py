"""The study's report: read from the ledger alone (snapshot), summarised (build), written as
text, CSV, JSON, plots and one HTML page (write)."""
