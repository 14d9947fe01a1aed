// A real FHIR client library (fhir-kit-client) against a running Confidant:
// conditional create twice, paging forwards and back through the Bundle's
// links, and a resource's history. FHIR_BASE and FHIR_TOKEN name the server;
// the last line printed is a JSON report that the Rust test checks
// (crates/cli/tests/it/fhir_conformance.rs).
import { Client } from 'fhir-kit-client';

const client = new Client({ baseUrl: process.env.FHIR_BASE, bearerToken: process.env.FHIR_TOKEN });
const report = {};

// Conditional create: If-None-Exist, twice; the second finds the first.
const hetu = 'urn:oid:1.2.246.21|070707-777G';
const body = {
  resourceType: 'Patient',
  identifier: [{ system: 'urn:oid:1.2.246.21', value: '070707-777G' }],
  name: [{ family: 'Kirjasto', given: ['Kaisa'] }],
};
const options = { headers: { 'If-None-Exist': `identifier=${hetu}` } };
const first = await client.create({ resourceType: 'Patient', body, options });
report.created = Client.httpFor(first).response.status === 201;
report.id = first.id;
const again = await client.create({ resourceType: 'Patient', body, options });
report.again = again.id;
report.againStatus = Client.httpFor(again).response.status;
const found = await client.search({ resourceType: 'Patient', searchParams: { identifier: hetu } });
report.total = found.total;

// Paging: two per page, forwards through `next`, back through `previous`.
const given = (bundle) => (bundle.entry ?? []).map((e) => e.resource.name[0].given[0]).sort();
const page1 = await client.search({ resourceType: 'Patient', searchParams: { family: 'Asiakas', _count: 2 } });
const page2 = await client.nextPage({ bundle: page1 });
const back = await client.prevPage({ bundle: page2 });
report.pages = [given(page1), given(page2), given(back)];

// History: an update, then the resource's history, newest first.
await client.update({ resourceType: 'Patient', id: first.id, body: { ...first, gender: 'female' } });
const history = await client.resourceHistory({ resourceType: 'Patient', id: first.id });
report.history = history.entry.map((e) => e.resource.meta.versionId);
report.historyRequests = history.entry.map((e) => e.request.method);

console.log(JSON.stringify(report));
