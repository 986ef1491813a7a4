// render.bench.mjs — how long the web client takes to show a chat: a
// fresh browser opens a login URL, waits for the chat list (load_ms), opens
// the chat named CHAT and waits until its newest message (text NEWEST) is
// on screen (open_ms). Run by cmd/peergram-bench W1; prints one JSON line.
//
//   URL      a login link (peergram open --print)
//   CHAT     the chat's name in the list
//   NEWEST   text of the chat's newest message
//   CHROMIUM the browser (default /usr/bin/chromium)

import { chromium } from 'playwright-core';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const page = await (await browser.newContext({ locale: 'en-US', viewport: { width: 1200, height: 800 } })).newPage();
  let bytes = 0;
  page.on('response', (r) => r.body().then((b) => { bytes += b.length; }, () => {}));
  const t0 = performance.now();
  await page.goto(process.env.URL);
  await page.getByRole('list', { name: 'Chats' }).getByRole('listitem', { name: process.env.CHAT, exact: true }).waitFor({ timeout: 60_000 });
  const t1 = performance.now();
  await page.getByRole('list', { name: 'Chats' }).getByRole('listitem', { name: process.env.CHAT, exact: true }).click();
  await page.getByRole('list', { name: 'Messages' }).getByRole('listitem').filter({ hasText: process.env.NEWEST }).waitFor({ timeout: 60_000 });
  const t2 = performance.now();
  const rendered = await page.getByRole('list', { name: 'Messages' }).getByRole('listitem').count();
  console.log(JSON.stringify({ load_ms: t1 - t0, open_ms: t2 - t1, rendered, bytes }));
} finally {
  await browser.close();
}
