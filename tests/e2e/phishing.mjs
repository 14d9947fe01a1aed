// Phishing drills in headless Chromium (issue 16, "must hold"): a drill mail's
// link opens the look-alike sign-in page; typing canaries into it and signing
// in shows the lesson (in the recipient's language); the clinician reports a
// drill mail and sees their own results; the admin sees the results tab.
// Screenshots at 1280 and 375 px, English and Finnish.
//
// Run by crates/cli/tests/it/phishing.rs with BASE_URL, LINK_EN (clin1's link,
// English), LINK_FI (desk's, Finnish), CANARY_USER, CANARY_PASSWORD, CLINICIAN,
// ADMIN, PASSWORD, SCREENSHOTS.
import fs from 'node:fs';
import { env, expect, launch, totp } from './lib.mjs';

const BASE = env('BASE_URL');
const SHOTS = env('SCREENSHOTS');
fs.mkdirSync(SHOTS, { recursive: true });
const browser = await launch();
const problems = [];
async function open(ctx, label) {
  const page = await ctx.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${label}: ${m.text()}`);
  });
  return page;
}
async function shot(page, name, width) {
  await page.setViewportSize({ width, height: 900 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.screenshot({ path: `${SHOTS}/phishing-${name}.png`, fullPage: true });
  const wide = await page.evaluate(() => [...document.querySelectorAll('body *')]
    .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
    .slice(0, 5).map((e) => `${e.tagName}.${e.className}`).join(' '));
  expect(overflow <= 1, `${name}: ${overflow} px wider than the screen (${wide})`);
}
async function staff(username, label) {
  const ctx = await browser.newContext();
  const page = await open(ctx, label);
  await page.goto(`${BASE}/login`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(env('PASSWORD'));
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL(/\/mfa$/);
  const secret = (await page.locator('#secret').textContent()).trim();
  await page.getByLabel('Code from the app').fill(totp(secret));
  await page.getByRole('button', { name: 'Confirm' }).click();
  await page.getByRole('heading', { name: 'Recovery codes' }).waitFor();
  await page.getByRole('link', { name: 'Continue' }).click();
  return page;
}

// 1. The English link, as a mail client opens it: the look-alike sign-in page.
const anon = await open(await browser.newContext(), 'recipient');
await anon.goto(`${BASE}/p/${env('LINK_EN')}`);
expect((await anon.locator('h1').textContent()).includes('Sign in'), 'the look-alike page says Sign in');
expect(!(await anon.content()).includes('drill'), 'the look-alike page does not give the drill away');
await shot(anon, '1-lookalike-1280-en', 1280);
await anon.getByLabel('Username').fill(env('CANARY_USER'));
await anon.getByLabel('Password').fill(env('CANARY_PASSWORD'));
await anon.getByRole('button', { name: 'Sign in' }).click();
// 2. The lesson at once, with the clues of that mail.
await anon.getByRole('heading', { name: 'This was a phishing drill' }).waitFor();
expect(await anon.getByText('Nothing you typed was saved, sent or even read.').isVisible(), 'nothing typed was kept');
expect((await anon.locator('ul.clues li').count()) >= 3, 'the clues are listed');
const shown = await anon.content();
expect(!shown.includes(env('CANARY_USER')) && !shown.includes(env('CANARY_PASSWORD')), 'nothing typed is shown back');
await shot(anon, '2-lesson-1280-en', 1280);
await shot(anon, '2-lesson-375-en', 375);

// The Finnish link: the look-alike page and the lesson in Finnish.
const fi = await open(await browser.newContext(), 'recipient-fi');
await fi.setViewportSize({ width: 375, height: 800 });
await fi.goto(`${BASE}/p/${env('LINK_FI')}`);
expect((await fi.locator('h1').textContent()).includes('Kirjaudu sisään'), 'the Finnish look-alike page');
await shot(fi, '1-lookalike-375-fi', 375);
await fi.getByLabel('Käyttäjätunnus').fill(env('CANARY_USER'));
await fi.getByLabel('Salasana').fill(env('CANARY_PASSWORD'));
await fi.getByRole('button', { name: 'Kirjaudu sisään' }).click();
await fi.getByRole('heading', { name: 'Tämä oli kalasteluharjoitus' }).waitFor();
await shot(fi, '2-lesson-1280-fi', 1280);
await shot(fi, '2-lesson-375-fi', 375);

// 3. The clinician reports the drill mail (its link) and sees the time it took.
const clin = await staff(env('CLINICIAN'), 'clinician');
await clin.getByRole('link', { name: 'Report phishing' }).first().click();
await clin.getByLabel('The link or the e-mail').fill(`Please check this one: ${BASE}/p/${env('LINK_EN')}`);
await shot(clin, '3-report-1280-en', 1280);
await clin.getByRole('button', { name: 'Report phishing' }).click();
await clin.getByRole('heading', { name: 'Well spotted: that was a drill' }).waitFor();
expect(await clin.getByText('Time to report:').isVisible(), 'time to report shown');
await shot(clin, '4-reported-1280-en', 1280);
await clin.getByRole('link', { name: 'My drills' }).first().click();
expect(await clin.getByText('You reported it').isVisible(), 'own results');
await clin.locator('summary').first().click();
await shot(clin, '5-my-drills-1280-en', 1280);
await clin.goto(`${BASE}/lang?to=fi&back=/report`);
await shot(clin, '3-report-375-fi', 375);
await clin.goto(`${BASE}/me/phishing`);
await shot(clin, '5-my-drills-375-fi', 375);

// 4. The admin's tab: the reporting rate first.
const admin = await staff(env('ADMIN'), 'admin');
await admin.goto(`${BASE}/admin/phishing`);
const heads = await admin.locator('table.drills th').allTextContents();
expect(heads[1] === 'Reporting rate' && heads[2] === 'Sent', `reporting rate first: ${heads}`);
await shot(admin, '6-admin-1280-en', 1280);
await admin.goto(`${BASE}/lang?to=fi&back=/admin/phishing`);
await shot(admin, '6-admin-375-fi', 375);

await browser.close();
expect(problems.length === 0, `no console errors: ${problems.join('; ')}`);
console.log('all expectations met');
