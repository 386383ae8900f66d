"""Monitoring sessions."""
