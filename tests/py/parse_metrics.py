"""Parse Prometheus exposition text with the official prometheus_client parser.

Reads the text from the file given as argv[1] (or stdin for "-") and prints JSON:
{"families": {name: type}, "samples": [[name, labels, value], ...]}. Exits non-zero with the
parser's message if the text is not valid exposition format.
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    src = sys.argv[1]
    text = sys.stdin.read() if src == "-" else open(src, encoding="utf-8").read()
    families = {}
    samples = []
    for fam in text_string_to_metric_families(text):
        families[fam.name] = fam.type
        for s in fam.samples:
            samples.append([s.name, s.labels, s.value])
    json.dump({"families": families, "samples": samples}, sys.stdout)


if __name__ == "__main__":
    main()
