"""Configuration: units, DAMOS schemes."""
