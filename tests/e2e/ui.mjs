// End-to-end test of the web UI in headless Chromium (Debian's chromium,
// driven by playwright-core). Run by crates/cli/tests/it/ui.rs, which starts
// a Confidant instance and passes it in the environment:
//   BASE_URL, CLINICIAN, RECEPTION, PASSWORD, PATIENT_FAMILY, SCREENSHOTS
// Exits non-zero with a message on the first failed expectation.
import { chromium } from 'playwright-core';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { env, expect, launch, totp } from './lib.mjs';

const BASE = env('BASE_URL');
const SHOTS = env('SCREENSHOTS');
fs.mkdirSync(SHOTS, { recursive: true });

const browser = await launch();

// Every page must carry the security headers, and the CSP must never fire.
function watch(page, label) {
  const problems = [];
  page.on('console', (m) => {
    // A refused page (401/403/404) logs its own status; those are asserted where they happen.
    if (m.type() === 'error' && !/status of 40[134]/.test(m.text())) problems.push(`${label} console: ${m.text()}`);
  });
  page.on('dialog', async (d) => {
    problems.push(`${label}: a script ran and opened a dialog: ${d.message()}`);
    await d.dismiss();
  });
  page.on('response', (r) => {
    const h = r.headers();
    if ((h['content-type'] || '').startsWith('text/html')) {
      for (const need of ['content-security-policy', 'x-content-type-options', 'referrer-policy']) {
        if (!h[need]) problems.push(`${label}: ${r.url()} lacks ${need}`);
      }
      const csp = h['content-security-policy'] || '';
      if (!/default-src 'none'/.test(csp) || /unsafe-inline|unsafe-eval/.test(csp) || !/frame-ancestors 'none'/.test(csp)) {
        problems.push(`${label}: weak CSP on ${r.url()}: ${csp}`);
      }
    }
  });
  return problems;
}

// Sign in for the first time: password, then TOTP enrolment; returns the page on the home screen.
async function firstSignIn(context, username, label) {
  const page = await context.newPage();
  const problems = watch(page, label);
  await page.goto(`${BASE}/`);
  expect(page.url().endsWith('/login'), `${label}: an anonymous visitor is sent to sign in (at ${page.url()})`);
  await page.screenshot({ path: `${SHOTS}/login.png`, fullPage: true });
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(env('PASSWORD'));
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL(/\/mfa$/);
  const secret = (await page.locator('#secret').textContent()).trim();
  expect(await page.locator('figure.qr svg').count() === 1, `${label}: the QR code is shown`);
  await page.screenshot({ path: `${SHOTS}/mfa-${label}.png`, fullPage: true });
  await page.getByLabel('Code from the app').fill(totp(secret));
  await page.getByRole('button', { name: 'Confirm' }).click();
  await page.getByRole('heading', { name: 'Recovery codes' }).waitFor();
  expect(await page.locator('ul.codes li').count() === 10, `${label}: ten recovery codes`);
  const recovery = await page.locator('ul.codes code').allTextContents();
  await page.getByRole('link', { name: 'Continue' }).click();
  return { page, problems, recovery };
}

const clinicianCtx = await browser.newContext();
const { page, problems, recovery } = await firstSignIn(clinicianCtx, env('CLINICIAN'), 'clinician');
await page.waitForURL(/\/patients$/);
await page.screenshot({ path: `${SHOTS}/patients.png`, fullPage: true });

// Find the patient by family name and open the chart.
await page.getByLabel(/Find by family name/).fill(env('PATIENT_FAMILY'));
await page.getByRole('button', { name: 'Search' }).click();
const link = page.locator('ul.list a').first();
expect(await link.count() === 1, 'the search finds the patient');
await link.click();
await page.waitForURL(/\/patients\/[0-9a-f]+$/);
const chartUrl = page.url();

// Write a note with markup in it; it must come back as text, and no script may run.
const text = `Session 3: client slept better. <script>alert('x')</script> <b>not bold</b>`;
await page.getByLabel('Note').fill(text);
await page.getByRole('button', { name: 'Save note' }).click();
await page.waitForURL(chartUrl);
const shown = await page.locator('article.note p.text').first().textContent();
expect(shown === text, `the note reads back as written, as text (got ${JSON.stringify(shown)})`);
expect(await page.locator('article.note b').count() === 0, 'markup in a note is not rendered');
await page.screenshot({ path: `${SHOTS}/chart.png`, fullPage: true });
const noteHref = await page.locator('article.note a').first().getAttribute('href');

// A form post without the CSRF token is refused, and nothing is saved.
const before = await page.locator('article.note').count();
const forged = await page.request.post(`${chartUrl}/notes`, { form: { text: 'forged' }, maxRedirects: 0 });
expect(forged.status() === 403, `a post without the CSRF token is refused (got ${forged.status()})`);
await page.reload();
expect(await page.locator('article.note').count() === before, 'the forged note was not saved');

// A draft: saved on the server (marked Draft), continued later, then finished.
await page.getByLabel('Note').fill('Draft: themes to pick up next time');
await page.getByRole('button', { name: 'Save as draft' }).click();
await page.waitForURL(chartUrl);
const draft = page.locator('article.note', { hasText: 'themes to pick up' });
expect(await draft.locator('.badge', { hasText: 'Draft' }).count() === 1, 'the draft is marked as a draft');
await draft.getByRole('link', { name: 'Continue writing' }).click();
await page.getByRole('heading', { name: 'Continue the draft' }).waitFor();
await page.getByLabel('Note').fill('Finished: themes picked up, homework agreed.');
await page.screenshot({ path: `${SHOTS}/note-edit.png`, fullPage: true });
await page.getByRole('button', { name: 'Save note' }).click();
await page.waitForURL(chartUrl);
const finished = page.locator('article.note', { hasText: 'homework agreed' });
expect(await finished.count() === 1 && (await finished.locator('.badge').count()) === 0, 'the finished note is no longer a draft');
expect((await finished.textContent()).includes('edited'), 'an edited note says so');
expect(await page.locator('article.note', { hasText: 'themes to pick up next time' }).count() === 0, 'the draft text was replaced');

// The pages in Finnish, and back; English is the default.
expect(await page.locator('html').getAttribute('lang') === 'en', 'English by default');
await page.getByRole('link', { name: 'Suomeksi' }).click();
await page.waitForURL(chartUrl);
expect(await page.locator('html').getAttribute('lang') === 'fi', 'the page says it is Finnish');
await page.getByRole('heading', { name: 'Uusi käyntimerkintä' }).waitFor();
expect((await page.locator('header nav').textContent()).includes('Potilaani'), 'the navigation is Finnish');
await page.screenshot({ path: `${SHOTS}/chart-fi.png`, fullPage: true });
await page.getByRole('link', { name: 'In English' }).click();
await page.getByRole('heading', { name: 'New session note' }).waitFor();

// Another clinician: the chart is not theirs (404, nothing shown) until they break the glass.
const c2Ctx = await browser.newContext();
const c2 = await firstSignIn(c2Ctx, env('CLINICIAN2'), 'clinician2');
const r2 = await c2.page.goto(chartUrl);
expect(r2.status() === 404, `another clinician gets 404 (got ${r2.status()})`);
expect(!(await c2.page.content()).includes(env('PATIENT_FAMILY')), 'nothing of the patient is shown');
await c2.page.getByLabel(/Reason/).fill('Covering the on-call line: the patient phoned in crisis');
await c2.page.screenshot({ path: `${SHOTS}/break-glass.png`, fullPage: true });
await c2.page.getByRole('button', { name: 'Open the record' }).click();
await c2.page.waitForURL(chartUrl);
expect((await c2.page.locator('h1').textContent()).includes(env('PATIENT_FAMILY')), 'break-glass opens the chart');

// Reception cannot open the note's URL.
const receptionCtx = await browser.newContext();
const rec = await firstSignIn(receptionCtx, env('RECEPTION'), 'reception');
const r = await rec.page.goto(`${BASE}${noteHref}`);
expect(r.status() === 403 || r.status() === 404, `reception cannot open a note (got ${r.status()})`);
expect(!(await rec.page.content()).includes('client slept better'), 'reception sees nothing of the note');
await rec.page.screenshot({ path: `${SHOTS}/reception-note-refused.png`, fullPage: true });

// Reception registers a walk-in, then books the clinician's patient a session; no note anywhere.
const rp = rec.page;
await rp.goto(`${BASE}/`);
await rp.getByRole('link', { name: 'Register a patient' }).click();
await rp.getByLabel('Given name').fill('Walk');
await rp.getByLabel('Family name').fill('Inregistered');
await rp.getByLabel('Birth date').fill('1990-05-17');
await rp.getByLabel('Phone (optional)').fill('+358 40 555 0199');
await rp.screenshot({ path: `${SHOTS}/register.png`, fullPage: true });
await rp.getByRole('button', { name: 'Register' }).click();
await rp.getByRole('heading', { name: 'Walk Inregistered' }).waitFor();
await rp.goto(`${BASE}/patients`);
await rp.getByLabel(/Find by family name/).fill(env('PATIENT_FAMILY'));
await rp.getByRole('button', { name: 'Search' }).click();
await rp.locator('ul.list a').first().click();
await rp.getByRole('heading', { name: 'Book an appointment' }).waitFor();
expect(await rp.locator('a[href^="/notes"]').count() === 0, 'reception sees no link to a note');
expect(!/note/i.test(await rp.locator('main').textContent()), 'reception sees nothing about notes');
await rp.getByLabel('With').selectOption({ label: env('CLINICIAN_NAME') });
await rp.getByLabel('Date', { exact: true }).fill('2026-12-14');
await rp.getByLabel('Time (clinic time)').fill('09:00');
await rp.getByLabel('Appointment type').selectOption('first-visit');
await rp.getByLabel('Repeat', { exact: true }).selectOption('weekly');
await rp.getByLabel('How many times (if it repeats)').fill('3');
await rp.screenshot({ path: `${SHOTS}/booking-form.png`, fullPage: true });
await rp.getByRole('button', { name: 'Book' }).click();
await rp.locator('ul.list li', { hasText: '2026-12-14 09:00' }).waitFor();
await rp.screenshot({ path: `${SHOTS}/reception-patient.png`, fullPage: true });
// Reception's calendar of that week: the name, linked to the reception view; nothing clinical.
await rp.goto(`${BASE}/calendar?view=week&date=2026-12-14`);
expect((await rp.locator('main').textContent()).includes('09:00–10:00'), 'reception sees the booking in the week');
expect(await rp.locator('main a[href^="/notes"]').count() === 0, 'no clinical link on reception\'s calendar');
await rp.screenshot({ path: `${SHOTS}/calendar-week-reception.png`, fullPage: true });
// The clinician sees it in their calendar (My schedule), day and week, desktop and 375 px, English and Finnish.
await page.goto(`${BASE}/schedule`);
await page.screenshot({ path: `${SHOTS}/schedule.png`, fullPage: true });
for (const lang of ['en', 'fi']) {
  await clinicianCtx.addCookies([{ name: 'confidant_lang', value: lang, url: BASE }]);
  for (const width of [1280, 375]) {
    await page.setViewportSize({ width, height: 800 });
    await page.goto(`${BASE}/calendar?view=week&date=2026-12-14`);
    expect((await page.locator('main').textContent()).includes('09:00–10:00'), 'the booking is in the clinician\'s week');
    await page.screenshot({ path: `${SHOTS}/calendar-week-${lang}-${width}.png`, fullPage: true });
    await page.goto(`${BASE}/calendar?view=day&date=2026-12-21`);
    expect((await page.locator('main').textContent()).includes('09:00–10:00'), 'the series is in the clinician\'s day');
    await page.screenshot({ path: `${SHOTS}/calendar-day-${lang}-${width}.png`, fullPage: true });
  }
}
await clinicianCtx.addCookies([{ name: 'confidant_lang', value: 'en', url: BASE }]);
await page.setViewportSize({ width: 1280, height: 720 });

// The patient sees the clinician's read in their access log, and downloads their data.
const patientCtx = await browser.newContext();
const pt = await patientCtx.newPage();
const ptProblems = watch(pt, 'patient');
// The patient signs in with the keyboard alone: Tab to the username, type, Tab, type, Enter.
await pt.goto(`${BASE}/login`);
for (let i = 0; i < 6 && (await pt.evaluate(() => document.activeElement.id)) !== 'username'; i++) await pt.keyboard.press('Tab');
expect((await pt.evaluate(() => document.activeElement.id)) === 'username', 'Tab reaches the username field');
await pt.keyboard.type(env('PATIENT_USER'));
await pt.keyboard.press('Tab');
expect((await pt.evaluate(() => document.activeElement.id)) === 'password', 'the password field comes next');
await pt.keyboard.type(env('PASSWORD'));
await pt.keyboard.press('Enter');
await pt.getByRole('heading', { name: 'Your records' }).waitFor();
await pt.getByRole('link', { name: 'Who has looked at my records' }).click();
await pt.getByRole('heading', { name: 'Who has looked at my records' }).waitFor();
const rows = await pt.locator('table.log tbody tr').allTextContents();
const seen = rows.some((r) => r.includes(env('CLINICIAN_NAME')) && r.includes('clinician') && r.includes('read'));
expect(seen, `the access log shows the clinician's read: ${JSON.stringify(rows.slice(0, 5))}`);
const glass = rows.some((r) => r.includes(env('CLINICIAN2_NAME')) && r.includes('the patient phoned in crisis'));
expect(glass, `the access log shows the break-glass with its reason: ${JSON.stringify(rows.slice(0, 8))}`);
await pt.screenshot({ path: `${SHOTS}/access-log.png`, fullPage: true });
const data = await pt.request.get(`${BASE}/me/data`);
expect(data.status() === 200 && /attachment/.test(data.headers()['content-disposition'] || ''), 'my data downloads');
const bundle = await data.json();
expect(bundle.resourceType === 'Bundle' && bundle.entry.some((e) => e.resource.resourceType === 'Patient'), 'a FHIR Bundle with my Patient');
expect(!JSON.stringify(bundle).includes('client slept better'), "the therapist's unshared note is not in the patient's download");

// The admin: open alerts to acknowledge, accounts, tokens, care teams, keys, posture; nothing clinical.
const adminCtx = await browser.newContext();
const adm = await firstSignIn(adminCtx, env('ADMIN'), 'admin');
await adm.page.getByRole('heading', { name: 'Alerts', exact: true }).waitFor();
const alertsText = await adm.page.locator('main').textContent();
expect(alertsText.includes('failed-logins') && alertsText.includes('break-glass'), 'the admin sees the open alerts');
expect((await adm.page.locator('article.alert').count()) === 2, 'exactly the two alerts: failed logins and the break-glass');
await adm.page.screenshot({ path: `${SHOTS}/admin.png`, fullPage: true });
for (let i = 0; i < 2; i++) {
  await adm.page.getByRole('button', { name: 'Acknowledge' }).first().click();
  await adm.page.getByRole('heading', { name: 'Alerts', exact: true }).waitFor();
}
expect((await adm.page.locator('main').textContent()).includes('No open alerts.'), 'acknowledged alerts are closed');
const adminPages = [
  ['Accounts', 'admin-accounts'],
  ['API tokens', 'admin-tokens'],
  ['Care teams', 'admin-care-teams'],
  ['Keys', 'admin-keys'],
  ['Security posture', 'admin-posture'],
];
for (const [tab, shot] of adminPages) {
  await adm.page.locator('nav.tabs').getByRole('link', { name: tab, exact: true }).click();
  await adm.page.getByRole('heading', { name: tab, exact: true }).waitFor();
  const text = await adm.page.locator('main').textContent();
  expect(!text.includes(env('PATIENT_FAMILY')) && !text.includes('slept better'), `the admin's ${tab} page shows nothing clinical`);
  if (tab === 'Accounts') expect(text.includes(env('CLINICIAN')) && text.includes('clinician'), 'the admin sees the accounts');
  if (tab === 'Security posture') expect(/key-files/.test(text) && /audit-witness/.test(text), 'the posture page shows the doctor checks');
  await adm.page.screenshot({ path: `${SHOTS}/${shot}.png`, fullPage: true });
}
// Working hours: the admin sets the clinician's Monday; the clinician's week shows them, and the
// 09:00 booking is outside them.
await adm.page.goto(`${BASE}/admin/hours`);
await adm.page.getByRole('heading', { name: 'Working hours', exact: true }).waitFor();
const hoursForm = adm.page.locator('form.hours', { hasText: env('CLINICIAN_NAME') });
await hoursForm.locator('input[name="mon_start"]').fill('10:00');
await hoursForm.locator('input[name="mon_end"]').fill('16:00');
await adm.page.screenshot({ path: `${SHOTS}/admin-hours.png`, fullPage: true });
await hoursForm.getByRole('button', { name: 'Save working hours' }).click();
await adm.page.getByRole('heading', { name: 'Working hours', exact: true }).waitFor();
expect((await hoursForm.locator('input[name="mon_start"]').inputValue()) === '10:00', 'the working hours are saved');
await page.goto(`${BASE}/calendar?view=week&date=2026-12-14`);
const withHours = await page.locator('main').textContent();
expect(withHours.includes('Outside working hours') && withHours.includes('10:00–16:00'), 'the week shows the working hours');
await page.screenshot({ path: `${SHOTS}/calendar-hours.png`, fullPage: true });
await page.setViewportSize({ width: 375, height: 800 });
await page.goto(`${BASE}/calendar?view=day&date=2026-12-14`);
await page.screenshot({ path: `${SHOTS}/calendar-hours-375.png`, fullPage: true });
await page.setViewportSize({ width: 1280, height: 720 });
await adm.page.goto(`${BASE}/admin`);
// An invitation: a one-time enrolment code, shown once.
await adm.page.locator('nav.tabs').getByRole('link', { name: 'Accounts', exact: true }).click();
await adm.page.getByLabel('Role').selectOption('reception');
await adm.page.getByRole('button', { name: 'Make an enrolment code' }).click();
const code = (await adm.page.locator('#enrolment-code').textContent()).trim();
expect(code.startsWith('enrol_'), 'an enrolment code is shown');
// The new receptionist creates their account with it.
const newCtx = await browser.newContext();
const np = await newCtx.newPage();
const npProblems = watch(np, 'enrol');
await np.goto(`${BASE}/login`);
await np.getByRole('link', { name: 'Create your account' }).click();
await np.getByLabel('Enrolment code').fill(code);
await np.getByLabel('Choose a username').fill('newdesk');
await np.getByLabel(/Choose a password/).fill(env('PASSWORD'));
await np.screenshot({ path: `${SHOTS}/enrol.png`, fullPage: true });
await np.getByRole('button', { name: 'Create account' }).click();
await np.getByRole('heading', { name: 'Account created' }).waitFor();
await newCtx.close();

// The auditor searches the audit log.
const audCtx = await browser.newContext();
const aud = await firstSignIn(audCtx, env('AUDITOR'), 'auditor');
await aud.page.getByRole('heading', { name: 'Audit log and alerts' }).waitFor();
await aud.page.getByLabel(/^Action/).fill('read');
await aud.page.getByRole('button', { name: 'Search' }).click();
const auditRows = await aud.page.locator('table.log tbody tr').count();
expect(auditRows > 0, 'the auditor finds the reads');
expect((await aud.page.locator('table.log tbody').textContent()).includes('read'), 'rows are reads');
await aud.page.screenshot({ path: `${SHOTS}/audit.png`, fullPage: true });
// ... and downloads the incident report: the patient the clinician read is in it.
await aud.page.getByRole('link', { name: 'Incident report' }).click();
await aud.page.getByRole('heading', { name: 'Incident report' }).waitFor();
await aud.page.screenshot({ path: `${SHOTS}/incident.png`, fullPage: true });
const download = aud.page.waitForEvent('download');
await aud.page.getByRole('button', { name: 'Download the report' }).click();
const report = JSON.parse(fs.readFileSync(await (await download).path(), 'utf8'));
expect(report.type === 'confidant-incident-report' && report.patients_disclosed >= 1, 'the incident report downloads');
expect(report.patients.some((p) => chartUrl.endsWith(p.patient.replace('Patient/', '')) && p.by.some((b) => b.role === 'clinician')),
  "the report lists the clinician's patient");
expect(!JSON.stringify(report).includes(env('PATIENT_FAMILY')), 'the report holds ids, not names');

// Two minutes before an idle session ends, a warning; "Stay signed in" keeps it (the page's clock is faked).
const tp = await clinicianCtx.newPage();
const tpProblems = watch(tp, 'timeout');
await tp.clock.install();
await tp.goto(`${BASE}/patients`);
expect(await tp.locator('#timeout-warning').isHidden(), 'no warning at first');
await tp.clock.fastForward('28:30');
await tp.locator('#timeout-warning').waitFor({ state: 'visible' });
await tp.screenshot({ path: `${SHOTS}/timeout-warning.png` });
await tp.getByRole('button', { name: 'Stay signed in' }).click();
await tp.locator('#timeout-warning').waitFor({ state: 'hidden' });
await tp.close();

// Accessibility: axe-core (WCAG 2.1 A and AA rules: labels, names, contrast, structure) on
// every main page of every role, in both languages. axe is injected as a script, which our
// CSP rightly forbids, so these visits use copies of the sessions in a context that ignores
// CSP; the checks above ran under the real policy.
const axePath = new URL(import.meta.resolve('axe-core/axe.min.js')).pathname;
async function accessible(ctx, paths, label) {
  const a11yCtx = await browser.newContext({ bypassCSP: true, storageState: await ctx.storageState() });
  const ap = await a11yCtx.newPage();
  const found = [];
  for (const path of paths) {
    await ap.goto(`${BASE}${path}`);
    await ap.addScriptTag({ path: axePath });
    const result = await ap.evaluate(async () => axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
    for (const v of result.violations) {
      found.push(`${label} ${path}: ${v.id} (${v.impact}) on ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
    }
  }
  await a11yCtx.close();
  return found;
}
const chartPath = new URL(chartUrl).pathname;
const a11y = [
  ...(await accessible(clinicianCtx, ['/patients', chartPath, '/schedule', '/me/passkeys', `/lang?to=fi&back=${chartPath}`], 'clinician')),
  ...(await accessible(receptionCtx, ['/patients', '/register', chartPath], 'reception')),
  ...(await accessible(adminCtx, ['/admin', '/admin/accounts', '/admin/tokens', `/admin/care-teams?patient=${chartPath.split('/').pop()}`, '/admin/keys', '/admin/posture'], 'admin')),
  ...(await accessible(audCtx, ['/audit', '/audit/incident'], 'auditor')),
  ...(await accessible(patientCtx, ['/', '/me/access-log'], 'patient')),
  ...(await accessible(await browser.newContext(), ['/login', '/enrol'], 'visitor')),
];
expect(a11y.length === 0, `accessibility violations:\n${a11y.join('\n')}`);
// A control: the same check on a page with an unlabelled field and grey-on-white text fails.
{
  const cp = await (await browser.newContext({ bypassCSP: true })).newPage();
  await cp.goto(`${BASE}/login`);
  await cp.evaluate(() => {
    document.querySelector('main').insertAdjacentHTML('beforeend', '<input id="nolabel"><p style="color:#bbb">faint</p>');
  });
  await cp.addScriptTag({ path: axePath });
  const ids = await cp.evaluate(async () => (await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa'] } })).violations.map((v) => v.id));
  expect(ids.includes('label') && ids.includes('color-contrast'), `axe finds what it must (found ${ids.join(', ')})`);
}

// A passkey (WebAuthn), with Chromium's virtual authenticator standing in for
// the laptop's: added on the Passkeys page, then used to sign in instead of the code.
await page.goto(`${BASE}/me/passkeys`);
const cdp = await clinicianCtx.newCDPSession(page);
await cdp.send('WebAuthn.enable', { enableUI: false });
const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
  options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true,
    isUserVerified: true, automaticPresenceSimulation: true },
});
await page.getByLabel(/Name it/).fill('work laptop');
await page.getByLabel(/Code from your authenticator app/).fill(recovery[1]);
await page.getByRole('button', { name: 'Add a passkey' }).click();
await page.locator('table.log td', { hasText: 'work laptop' }).waitFor();
expect((await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials.length === 1, 'the authenticator holds one passkey');
await page.screenshot({ path: `${SHOTS}/passkeys.png`, fullPage: true });

// Sign out ends the session: the chart is gone.
await page.getByRole('button', { name: 'Sign out' }).click();
await page.waitForURL(/\/login$/);
await page.goto(chartUrl);
expect(page.url().endsWith('/login'), 'after signing out, the chart needs a new sign-in');

// Sign in again: password, then the passkey instead of the authenticator code.
await page.getByLabel('Username').fill(env('CLINICIAN'));
await page.getByLabel('Password').fill(env('PASSWORD'));
await page.getByRole('button', { name: 'Sign in with a passkey instead of the code' }).click();
await page.waitForURL(/\/patients$/);
const used = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials[0];
expect(used.signCount >= 1, `the passkey signed the sign-in (signCount ${used.signCount})`);
await page.goto(`${BASE}/me/passkeys`);
expect(!(await page.locator('table.log tbody td').nth(2).textContent()).includes('—'), 'the passkey shows when it was last used');
// A wrong password never reaches the passkey step.
await page.getByRole('button', { name: 'Sign out' }).click();
await page.getByLabel('Username').fill(env('CLINICIAN'));
await page.getByLabel('Password').fill('not the password');
await page.getByRole('button', { name: 'Sign in with a passkey instead of the code' }).click();
await page.locator('#passkey-status', { hasText: 'Wrong username, password or passkey.' }).waitFor();
expect(page.url().endsWith('/login'), 'still signed out');

// A draft leaves no plaintext in the browser: nothing in web storage, nothing
// anywhere in the profile on disk (caches, session restore, form history)
// after a draft is saved and another is left typed but unsaved.
const profile = fs.mkdtempSync(`${os.tmpdir()}/confidant-profile-`);
const persistent = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const dp = await persistent.newPage();
const dpProblems = watch(dp, 'draft-storage');
await dp.goto(`${BASE}/login`);
await dp.getByLabel('Username').fill(env('CLINICIAN'));
await dp.getByLabel('Password').fill(env('PASSWORD'));
await dp.getByLabel(/Authenticator code/).fill(recovery[0]);
await dp.getByRole('button', { name: 'Sign in', exact: true }).click();
await dp.waitForURL(/\/patients$/);
await dp.goto(chartUrl);
const saved = `Saved draft ${crypto.randomBytes(8).toString('hex')}`;
const typed = `Unsaved words ${crypto.randomBytes(8).toString('hex')}`;
await dp.getByLabel('Note').fill(saved);
await dp.getByRole('button', { name: 'Save as draft' }).click();
await dp.waitForURL(chartUrl);
await dp.locator('article.note', { hasText: saved }).getByRole('link', { name: 'Continue writing' }).click();
await dp.getByLabel('Note').fill(typed);
await dp.goto(`${BASE}/schedule`);
const stored = await dp.evaluate(async () => ({
  local: localStorage.length,
  session: sessionStorage.length,
  idb: (await indexedDB.databases()).length,
  caches: (await caches.keys()).length,
}));
expect(stored.local === 0 && stored.session === 0 && stored.idb === 0 && stored.caches === 0,
  `no web storage is used: ${JSON.stringify(stored)}`);
// A control: text that IS put in web storage must be found by the scan below.
const control = `Control text ${crypto.randomBytes(8).toString('hex')}`;
await dp.evaluate((c) => localStorage.setItem('control', c), control);
await persistent.close();
const leaks = [];
(function scan(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) scan(path);
    else if (entry.isFile()) {
      const bytes = fs.readFileSync(path);
      for (const secret of [saved, typed, control]) {
        for (const enc of ['utf8', 'utf16le']) {
          if (bytes.includes(Buffer.from(secret, enc))) leaks.push(`${secret === control ? 'control' : 'draft'}: ${path} (${enc})`);
        }
      }
    }
  }
})(profile);
expect(leaks.some((l) => l.startsWith('control')), `the scan finds text a page did store (${leaks.join(', ')})`);
expect(leaks.every((l) => l.startsWith('control')), `draft text found in the browser profile: ${leaks.join(', ')}`);
fs.rmSync(profile, { recursive: true, force: true });

const all = [...problems, ...c2.problems, ...rec.problems, ...ptProblems, ...adm.problems, ...aud.problems, ...tpProblems, ...npProblems, ...dpProblems];
expect(all.length === 0, all.join('\n'));
await browser.close();
console.log('ui: all expectations met');
