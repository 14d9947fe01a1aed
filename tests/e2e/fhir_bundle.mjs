// A real FHIR client library (fhir-kit-client) posts Bundles to a running
// Confidant: a transaction (a Patient and its Appointment, referring to it by
// urn:uuid) and a batch (a read that works and one that does not). FHIR_BASE,
// FHIR_TOKEN and PRACTITIONER name the server, the clinician's token and their
// Practitioner id; the last line printed is a JSON report that the Rust test
// checks (crates/cli/tests/it/fhir_transaction.rs).
import { Client } from 'fhir-kit-client';

const client = new Client({ baseUrl: process.env.FHIR_BASE, bearerToken: process.env.FHIR_TOKEN });
const report = {};

const patientUrl = 'urn:uuid:7d1f0c2a-3b4e-4f5a-8b6c-9d0e1f2a3b4c';
const transaction = await client.transaction({
  body: {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        fullUrl: patientUrl,
        resource: { resourceType: 'Patient', name: [{ family: 'Kirjasto', given: ['Kalle'] }] },
        request: { method: 'POST', url: 'Patient' },
      },
      {
        resource: {
          resourceType: 'Appointment',
          status: 'booked',
          start: '2027-09-01T08:00:00Z',
          end: '2027-09-01T08:45:00Z',
          participant: [
            { actor: { reference: patientUrl }, status: 'accepted' },
            { actor: { reference: `Practitioner/${process.env.PRACTITIONER}` }, status: 'accepted' },
          ],
        },
        request: { method: 'POST', url: 'Appointment' },
      },
    ],
  },
});
report.transactionType = transaction.type;
report.statuses = transaction.entry.map((e) => e.response.status);
report.patient = transaction.entry[0].resource.id;
report.appointmentPatient = transaction.entry[1].resource.participant[0].actor.reference;

const batch = await client.batch({
  body: {
    resourceType: 'Bundle',
    type: 'batch',
    entry: [
      { request: { method: 'GET', url: `Patient/${report.patient}` } },
      { request: { method: 'GET', url: 'Patient/nosuchpatient' } },
    ],
  },
});
report.batchType = batch.type;
report.batchStatuses = batch.entry.map((e) => e.response.status);

console.log(JSON.stringify(report));
