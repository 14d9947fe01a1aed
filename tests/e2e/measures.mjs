// Outcome measures in headless Chromium: the clinician sends a PHQ-9 to the
// portal, the patient answers it with radio buttons (no script needed), the
// clinician sees the score, the item-9 flag and the SVG trend. Screenshots at
// desktop width and 375 px, in English and Finnish. Run by
// crates/cli/tests/it/measures.rs with BASE_URL, CLINICIAN, PATIENT_USER,
// PATIENT_ID, PASSWORD, SCREENSHOTS.
import fs from 'node:fs';
import { env, expect, launch, totp } from './lib.mjs';

const BASE = env('BASE_URL');
const SHOTS = env('SCREENSHOTS');
const PID = env('PATIENT_ID');
fs.mkdirSync(SHOTS, { recursive: true });

const browser = await launch();
const problems = [];
function watch(page, label) {
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${label} console: ${m.text()}`);
  });
  return page;
}

// Both at 1280 px and 375 px, in English and in Finnish.
async function shoot(ctx, path, name) {
  for (const lang of ['en', 'fi']) {
    await ctx.addCookies([{ name: 'confidant_lang', value: lang, url: BASE }]);
    const page = watch(await ctx.newPage(), name);
    for (const [w, tag] of [[1280, 'desktop'], [375, 'narrow']]) {
      await page.setViewportSize({ width: w, height: 900 });
      await page.goto(`${BASE}${path}`);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(overflow <= 1, `${name} ${lang} fits ${w} px (overflows by ${overflow})`);
      await page.screenshot({ path: `${SHOTS}/${name}-${lang}-${tag}.png`, fullPage: true });
    }
    await page.close();
  }
  await ctx.addCookies([{ name: 'confidant_lang', value: 'en', url: BASE }]);
}

// The clinician signs in (password, TOTP enrolment) and sends a PHQ-9.
const clin = await browser.newContext();
const page = watch(await clin.newPage(), 'clinician');
await page.goto(`${BASE}/login`);
await page.getByLabel('Username').fill(env('CLINICIAN'));
await page.getByLabel('Password').fill(env('PASSWORD'));
await page.getByRole('button', { name: 'Sign in', exact: true }).click();
await page.waitForURL(/\/mfa$/);
const secret = (await page.locator('#secret').textContent()).trim();
await page.getByLabel('Code from the app').fill(totp(secret));
await page.getByRole('button', { name: 'Confirm' }).click();
await page.getByRole('heading', { name: 'Recovery codes' }).waitFor();
await page.goto(`${BASE}/patients/${PID}`);
await page.getByRole('button', { name: 'Send to the portal' }).click();
await page.waitForURL(/#measures$/);
expect((await page.locator('#measures').textContent()).includes('Waiting for answers'), 'the chart shows the PHQ-9 waiting');

// The patient answers it in the portal, with JavaScript off: radio buttons and a form post.
const pat = await browser.newContext({ javaScriptEnabled: false });
const pt = watch(await pat.newPage(), 'patient');
await pt.goto(`${BASE}/login`);
await pt.getByLabel('Username').fill(env('PATIENT_USER'));
await pt.getByLabel('Password').fill(env('PASSWORD'));
await pt.getByRole('button', { name: 'Sign in', exact: true }).click();
await pt.getByRole('link', { name: 'Questionnaires from your clinician' }).click();
await pt.getByRole('link', { name: 'PHQ-9' }).click();
const formPath = new URL(pt.url()).pathname;
await shoot(pat, formPath, 'measure-form');
const choices = [1, 2, 1, 2, 1, 1, 2, 1, 1];
for (const [i, v] of choices.entries()) await pt.locator(`input[name="${i + 1}"][value="${v}"]`).check();
await pt.getByRole('button', { name: 'Submit answers' }).click();
await pt.getByRole('heading', { name: 'Thank you' }).waitFor();

// The clinician: the flag, the score in text, and a point on the trend; then "fill in now" for a second point.
await page.goto(`${BASE}/patients/${PID}`);
const section = await page.locator('#measures').textContent();
expect(section.includes('Needs attention:') && section.includes('Several days'), `the item-9 flag: ${section}`);
expect(section.includes('Latest PHQ-9: 12 / 27 (moderate)'), `the latest score: ${section}`);
expect((await page.locator('#measures svg.trend circle.point').count()) === 1, 'one point on the trend');
await page.getByRole('button', { name: 'Fill in now' }).click();
await page.waitForURL(/\/measures\//);
for (const [i, v] of [0, 1, 0, 1, 0, 1, 0, 1, 0].entries()) await page.locator(`input[name="${i + 1}"][value="${v}"]`).check();
await page.getByRole('button', { name: 'Submit answers' }).click();
await page.waitForURL(/#measures$/);
expect((await page.locator('#measures svg.trend circle.point').count()) === 2, 'two points on the trend');
await shoot(clin, `/patients/${PID}`, 'measures-chart');
await page.goto(`${BASE}/patients`);
expect((await page.locator('section.attention li.flag').count()) === 1, 'the flag on the patients list');
await page.screenshot({ path: `${SHOTS}/measures-patients.png`, fullPage: true });
await page.locator('#measures .flag').count();
await page.goto(`${BASE}/patients/${PID}`);
await page.getByRole('button', { name: 'Acknowledge' }).click();
await page.waitForURL(/#measures$/);
expect((await page.locator('#measures .flag').count()) === 0, 'the flag is gone once acknowledged');

await browser.close();
expect(problems.length === 0, problems.join('\n'));
console.log('all expectations met');
