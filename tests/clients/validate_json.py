"""Validates answers against JSON Schemas with the `jsonschema` package (installed by
`just tools`).

Usage: validate_json.py < [{"schema": ..., "answer": "..."}, ...]
Prints a JSON list of the failures (index, answer, error); empty when every answer is valid.
"""

import json
import sys

import jsonschema

failures = []
for i, item in enumerate(json.load(sys.stdin)):
    try:
        jsonschema.Draft202012Validator(item["schema"]).validate(json.loads(item["answer"]))
    except Exception as e:  # not JSON, or not valid: both are failures
        failures.append({"index": i, "answer": item["answer"], "error": str(e)[:300]})
print(json.dumps(failures))
