// Note templates, a signed SOAP note with its addendum and co-sign state, and
// the admin's templates page in headless Chromium, desktop and 375 px wide,
// English and Finnish. Run by crates/cli/tests/it/templates.rs with:
//   BASE_URL, CLINICIAN_COOKIE, ADMIN_COOKIE, PATIENT, NOTE, SCREENSHOTS
// The sessions come signed in (cookies); nothing here runs script on the pages.
import { chromium } from 'playwright-core';
import fs from 'node:fs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing ${k}`);
  return v;
};
const BASE = env('BASE_URL');
const SHOTS = env('SCREENSHOTS');
fs.mkdirSync(SHOTS, { recursive: true });
const host = new URL(BASE).hostname;
function expect(ok, what) {
  if (!ok) throw new Error(`expectation failed: ${what}`);
}
function cookies(header, lang) {
  const list = header.split(';').map((c) => c.trim()).filter(Boolean).map((c) => {
    const i = c.indexOf('=');
    return { name: c.slice(0, i), value: c.slice(i + 1), domain: host, path: '/' };
  });
  list.push({ name: 'confidant_lang', value: lang, domain: host, path: '/' });
  return list;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const pages = [
  ['soap-form', env('CLINICIAN_COOKIE'), `/patients/${env('PATIENT')}?template=soap`, 'textarea[name="section.plan"]'],
  ['soap-signed', env('CLINICIAN_COOKIE'), `/notes/${env('NOTE')}`, 'aside.addendum'],
  ['admin-templates', env('ADMIN_COOKIE'), '/admin/templates', 'textarea#sections'],
];
for (const lang of ['en', 'fi']) {
  for (const [width, label] of [[1280, 'desktop'], [375, 'mobile']]) {
    for (const [name, cookie, path, must] of pages) {
      const context = await browser.newContext({ viewport: { width, height: 900 } });
      await context.addCookies(cookies(cookie, lang));
      const page = await context.newPage();
      const errors = [];
      page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
      const r = await page.goto(`${BASE}${path}`);
      expect(r.status() === 200, `${name} ${lang} ${label}: status ${r.status()}`);
      expect(await page.locator(must).count() > 0, `${name} ${lang} ${label}: ${must} shown`);
      await page.screenshot({ path: `${SHOTS}/${name}-${lang}-${label}.png`, fullPage: true });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      const wide = await page.evaluate(() => [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
        .map((e) => `${e.tagName}.${e.className}#${e.id}`).slice(0, 8).join(' '));
      expect(overflow <= 0, `${name} ${lang} ${label}: ${overflow}px wider than the screen: ${wide}`);
      expect(errors.length === 0, `${name} ${lang} ${label}: console errors (CSP?): ${errors.join('; ')}`);
      await context.close();
    }
  }
}
await browser.close();
console.log('templates: all pages checked');
