#!/usr/bin/env python3
"""Reads an exposition on stdin and parses it with prometheus_client's
OpenMetrics parser, as Prometheus would read it. Exit 1 if it does not parse."""
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

families = list(text_string_to_metric_families(sys.stdin.read()))
if not families:
    sys.exit("no metric families")
print(f"{len(families)} metric families, {sum(len(f.samples) for f in families)} samples")
