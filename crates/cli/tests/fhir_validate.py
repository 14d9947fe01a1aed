"""Validate FHIR R4 JSON resources with an independent implementation.

Reads a JSON array of resources on stdin; validates each with the
`fhir.resources` package (6.1.0, which models FHIR 4.0.1 = R4);
prints one line per problem and exits 1 if there was any.
"""
import json
import sys

import fhir.resources
from fhir.resources import construct_fhir_element

assert fhir.resources.__fhir_version__ == "4.0.1", fhir.resources.__fhir_version__

failed = 0
resources = json.load(sys.stdin)
for i, resource in enumerate(resources):
    kind = resource.get("resourceType", "?")
    try:
        construct_fhir_element(kind, resource)
    except Exception as e:  # noqa: BLE001 - report every kind of rejection
        failed += 1
        print(f"resource {i} ({kind}) is not valid FHIR R4: {e}")
print(f"validated {len(resources)} resources, {failed} invalid")
sys.exit(1 if failed else 0)
