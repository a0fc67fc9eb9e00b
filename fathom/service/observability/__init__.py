"""Metrics, traces and JSON logs for the request path."""
