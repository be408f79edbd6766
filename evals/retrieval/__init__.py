"""Retrieval quality of execution-history search, against a keyword (BM25) baseline."""
