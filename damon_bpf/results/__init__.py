"""Results: record files, perf script, damo-style reports, IP attribution."""
