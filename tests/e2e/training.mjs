// Staff security training in headless Chromium: the banner on a patient page,
// the training list, a module taken (all wrong first: not passed, feedback per
// question; then right: passed), the banner gone; the admin's coverage and
// printable evidence; every page at 1280 and 375 px, English and Finnish.
// Run by crates/cli/tests/it/training.rs with:
//   BASE_URL, CLINICIAN_COOKIE, RECEPTION_COOKIE, ADMIN_COOKIE, PATIENT,
//   MODULE (the key left to do), CORRECT (its right choices, "1,0,2,…"), SCREENSHOTS
// The sessions come signed in (cookies); no page runs script of its own.
import fs from 'node:fs';
import { env, expect, launch } from './lib.mjs';

const BASE = env('BASE_URL');
const SHOTS = env('SCREENSHOTS');
const MODULE = env('MODULE');
const CORRECT = env('CORRECT').split(',').map(Number);
fs.mkdirSync(SHOTS, { recursive: true });
const host = new URL(BASE).hostname;
function cookies(header, lang) {
  const list = header.split(';').map((c) => c.trim()).filter(Boolean).map((c) => {
    const i = c.indexOf('=');
    return { name: c.slice(0, i), value: c.slice(i + 1), domain: host, path: '/' };
  });
  list.push({ name: 'confidant_lang', value: lang, domain: host, path: '/' });
  return list;
}

const browser = await launch();
async function open(cookie, lang, width) {
  const context = await browser.newContext({ viewport: { width, height: 900 } });
  await context.addCookies(cookies(cookie, lang));
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  return { context, page, errors };
}
async function check(page, errors, name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow <= 0, `${name}: ${overflow}px wider than the screen`);
  expect(errors.length === 0, `${name}: console errors (CSP?): ${errors.join('; ')}`);
}
async function answer(page, right) {
  const n = CORRECT.length;
  for (let i = 0; i < n; i++) {
    const choices = await page.locator(`input[name="q${i}"]`).count();
    const v = right ? CORRECT[i] : (CORRECT[i] + 1) % choices;
    await page.locator(`input[name="q${i}"][value="${v}"]`).check();
  }
  await page.locator('form[action^="/training/"] button[type="submit"]').click();
  await page.waitForLoadState();
}

// Every page, both languages, both widths (before anyone completes anything).
const pages = [
  ['patient-banner', env('CLINICIAN_COOKIE'), `/patients/${env('PATIENT')}`, 'div.banner.training a[href="/training"]'],
  ['list', env('CLINICIAN_COOKIE'), '/training', 'table.training'],
  ['module', env('CLINICIAN_COOKIE'), `/training/${MODULE}`, 'fieldset.item input[type="radio"]'],
  ['coverage', env('ADMIN_COOKIE'), '/admin/training', 'table.coverage'],
  ['evidence', env('ADMIN_COOKIE'), '/admin/training/evidence', 'table.coverage'],
];
for (const lang of ['en', 'fi']) {
  for (const [width, label] of [[1280, 'desktop'], [375, 'mobile']]) {
    for (const [name, cookie, path, must] of pages) {
      const { context, page, errors } = await open(cookie, lang, width);
      const r = await page.goto(`${BASE}${path}`);
      expect(r.status() === 200, `${name} ${lang} ${label}: status ${r.status()}`);
      expect(await page.locator(must).count() > 0, `${name} ${lang} ${label}: ${must} shown`);
      await check(page, errors, `training-${name}-${lang}-${label}`);
      await context.close();
    }
  }
}

// The walk-through: a clinician in English on a desktop, reception in Finnish on a phone.
for (const [who, cookie, lang, width, label] of [
  ['clinician', env('CLINICIAN_COOKIE'), 'en', 1280, 'desktop'],
  ['reception', env('RECEPTION_COOKIE'), 'fi', 375, 'mobile'],
]) {
  const { context, page, errors } = await open(cookie, lang, width);
  await page.goto(`${BASE}/patients`);
  expect(await page.locator('div.banner.training').count() === 1, `${who}: the banner is shown`);
  await page.locator('div.banner.training a[href="/training"]').click();
  await page.locator(`a[href="/training/${MODULE}"]`).click();
  await page.waitForLoadState();
  await answer(page, false);
  expect(await page.locator('p.notice').count() === 1, `${who}: not passed`);
  expect(await page.locator('article.feedback.wrong').count() === CORRECT.length, `${who}: feedback per question`);
  await check(page, errors, `training-failed-${lang}-${label}`);
  await page.locator(`main a[href="/training/${MODULE}"]`).click();
  await page.waitForLoadState();
  await answer(page, true);
  expect(await page.locator('p.ok').count() === 1, `${who}: passed`);
  expect(await page.locator('article.feedback.correct').count() === CORRECT.length, `${who}: every answer right`);
  await check(page, errors, `training-passed-${lang}-${label}`);
  if (who === 'clinician') {
    await page.goto(`${BASE}/patients`);
    expect(await page.locator('div.banner.training').count() === 0, 'the banner is gone once everything is done');
    await check(page, errors, `training-banner-gone-${lang}-${label}`);
  }
  await context.close();
}
await browser.close();
console.log('training: all expectations met');
