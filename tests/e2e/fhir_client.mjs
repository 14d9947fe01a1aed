// A real FHIR client library (fhir-kit-client) against a running Confidant:
// conditional create twice, paging forwards and back through the Bundle's
// links, and a resource's history. FHIR_BASE and FHIR_TOKEN name the server;
// the last line printed is a JSON report that the Rust test checks
// (crates/cli/tests/it/fhir_conformance.rs). With FHIR_SCENARIO=include:
// _include, _revinclude and Patient/$everything paged through its next links
// (crates/cli/tests/it/fhir_include.rs).
import { Client } from 'fhir-kit-client';

const client = new Client({ baseUrl: process.env.FHIR_BASE, bearerToken: process.env.FHIR_TOKEN });
const report = {};

if (process.env.FHIR_SCENARIO === 'include') {
  await includes();
  process.exit(0);
}

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

// _include, _revinclude and $everything, as an integrator's client asks for them.
async function includes() {
  const me = await fetch(new URL('/api/v1/me', process.env.FHIR_BASE), {
    headers: { authorization: `Bearer ${process.env.FHIR_TOKEN}` },
  }).then((r) => r.json());
  const patient = await client.create({
    resourceType: 'Patient',
    body: { resourceType: 'Patient', name: [{ family: 'Sisallytys', given: ['Iida'] }] },
  });
  const ref = { reference: `Patient/${patient.id}` };
  for (const text of ['first note', 'second note']) {
    await client.create({
      resourceType: 'DocumentReference',
      body: {
        resourceType: 'DocumentReference', status: 'current', subject: ref,
        content: [{ attachment: { contentType: 'text/plain', data: Buffer.from(text).toString('base64') } }],
      },
    });
  }
  await client.create({
    resourceType: 'Appointment',
    body: {
      resourceType: 'Appointment', status: 'booked', start: '2027-02-01T09:00:00Z', end: '2027-02-01T09:50:00Z',
      participant: [
        { actor: ref, status: 'accepted' },
        { actor: { reference: `Practitioner/${me.practitioner_id}` }, status: 'accepted' },
      ],
    },
  });
  const summary = (bundle) => ({
    match: (bundle.entry ?? []).filter((e) => e.search.mode === 'match').length,
    include: (bundle.entry ?? []).filter((e) => e.search.mode === 'include')
      .map((e) => `${e.resource.resourceType}/${e.resource.id}`),
  });
  const included = await client.search({
    resourceType: 'DocumentReference',
    searchParams: { patient: patient.id, _include: 'DocumentReference:subject' },
  });
  const revincluded = await client.search({
    resourceType: 'Patient',
    searchParams: {
      _id: patient.id,
      _revinclude: ['DocumentReference:subject', 'Appointment:patient', 'CareTeam:subject'],
    },
  });
  // $everything, two a page, through the next links.
  let page = await client.operation({
    name: '$everything', resourceType: 'Patient', id: patient.id, method: 'get', input: { _count: 2 },
  });
  const everything = [];
  let pages = 0;
  const everythingTotal = page.total;
  while (page) {
    pages += 1;
    everything.push(...(page.entry ?? []).map((e) => `${e.resource.resourceType}/${e.resource.id}`));
    page = await client.nextPage({ bundle: page });
  }
  let refused = null;
  try {
    await client.search({ resourceType: 'DocumentReference', searchParams: { _include: 'Foo:bar' } });
  } catch (e) {
    refused = e.response?.status ?? String(e);
  }
  console.log(JSON.stringify({
    patient: patient.id,
    include: summary(included),
    revinclude: summary(revincluded),
    everything,
    everythingPages: pages,
    everythingTotal,
    refused,
  }));
}
