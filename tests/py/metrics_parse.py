"""Parses a node's /metrics text (read from stdin) with the Prometheus
client library's own parser and prints every sample as JSON, so the
integration tests check the text format with an implementation that is not
ours: [{"family", "type", "name", "labels", "value"}, ...]. A text the parser
refuses exits non-zero with its error on stderr."""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    samples = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            value = sample.value
            if math.isinf(value):
                value = "+Inf" if value > 0 else "-Inf"
            samples.append(
                {
                    "family": family.name,
                    "type": family.type,
                    "name": sample.name,
                    "labels": dict(sample.labels),
                    "value": value,
                }
            )
    json.dump(samples, sys.stdout)


if __name__ == "__main__":
    main()
