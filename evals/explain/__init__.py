"""Explanation quality: does the top cause of a failure explanation match the true cause."""
