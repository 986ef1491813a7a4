// calls.test.mjs — calls in the web client: two browsers call each other,
// and a browser calls (and is called by) a headless node. Started by
// internal/e2e TestWebClientCalls with the environment of chat.test.mjs
// plus AUDIO and VIDEO (sample files for the headless node) and RECORD (its
// record directory). alice and bob use browsers, carol is headless.

import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const bin = process.env.PEERGRAM;
const homes = JSON.parse(process.env.HOMES);
const out = process.env.OUT;
mkdirSync(out, { recursive: true });
const T = 30_000;
const log = (...a) => console.log(new Date().toISOString().slice(11, 23), ...a);
const cli = (...args) => execFileSync(bin, args, { timeout: 30_000 }).toString();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const problems = [];
function watch(page, who) {
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`${who}: console error: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`${who}: page error: ${e.message}`));
  page.on('requestfailed', (r) => { if (!r.url().endsWith('/v1/events') && r.failure()?.errorText !== 'net::ERR_ABORTED') problems.push(`${who}: request failed: ${r.url()} ${r.failure()?.errorText}`); });
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`${who}: HTTP ${r.status()} for ${r.request().method()} ${r.url()} ${(r.request().postData() || '').slice(0, 200)}`); });
}
const noProblems = (step) => { if (problems.length) throw new Error(`${step}: ${problems.join('\n')}`); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
    '--auto-select-desktop-capture-source=Entire screen', '--auto-accept-this-tab-capture'],
});
const pages = {};
const stats = (page) => page.evaluate(() => window.peergramCallStats());

// growing waits until the page's call has received and sent packets, and
// received more a second later.
async function growing(page, who) {
  let first;
  const deadline = Date.now() + T;
  for (;;) {
    first = await stats(page);
    if (first.inbound > 0 && first.outbound > 0) break;
    if (Date.now() > deadline) throw new Error(`${who}: no RTP after ${T} ms: ${JSON.stringify(first)}`);
    await sleep(250);
  }
  await sleep(1000);
  const second = await stats(page);
  assert.ok(second.inbound > first.inbound, `${who}: inbound RTP grows: ${first.inbound} → ${second.inbound}`);
  log(who, 'inbound RTP', first.inbound, '→', second.inbound, 'packets; connection', second.connection);
  return second;
}

// settled waits until Carol's renegotiation (a share or unshare) is over
// at both ends: her call says so and the browser has nothing in flight.
// (Hanging up in the middle would make the browser's answer arrive for an
// ended call: a 409, which the test counts as a failed request.)
async function settled(page, id) {
  for (const until = Date.now() + T; ; await sleep(100)) {
    const c = calls('carol').find((x) => x.id === id);
    const st = await stats(page);
    if (!c.sharing && st.inflight === 0 && st.signaling === 'stable') {
      await sleep(300); // a renegotiation Carol starts after her unshare's answer
      const again = await stats(page);
      if (again.inflight === 0 && again.signaling === 'stable') return;
    }
    if (Date.now() > until) throw new Error(`the renegotiation did not settle: ${JSON.stringify(st)} ${JSON.stringify(c)}`);
  }
}

// screenArrives runs share and waits until the page's call receives one
// more video stream than before.
async function screenArrives(page, who, share) {
  const before = (await stats(page)).videoIn;
  share();
  for (const until = Date.now() + T; ; await sleep(250)) {
    const st = await stats(page);
    if (st.videoIn > before) { log(who, ': video streams in', before, '→', st.videoIn); return; }
    if (Date.now() > until) throw new Error(`${who}: no shared screen arrived (${JSON.stringify(st)})`);
  }
}

const callBox = (page) => page.getByRole('dialog', { name: 'Call' });
const callState = (page) => callBox(page).locator('[data-state]').getAttribute('data-state');

async function waitState(page, want) {
  const deadline = Date.now() + T;
  for (;;) {
    const st = await callState(page).catch(() => null);
    if (st === want) return;
    if (Date.now() > deadline) throw new Error(`call state ${st}, want ${want}`);
    await sleep(100);
  }
}

const calls = (who) => JSON.parse(cli('calls', '--home', homes[who], '--json'));

try {
  for (const who of ['alice', 'bob']) {
    const ctx = await browser.newContext({ locale: 'en-US', viewport: { width: 1200, height: 800 } });
    await ctx.grantPermissions(['camera', 'microphone']);
    const page = await ctx.newPage();
    watch(page, who);
    await page.goto(cli('open', '--print', '--home', homes[who]).trim());
    await page.getByRole('list', { name: 'Chats' }).waitFor({ timeout: T });
    pages[who] = page;
  }
  const { alice, bob } = pages;
  const chatItem = (page, name) => page.getByRole('list', { name: 'Chats' }).getByRole('listitem', { name, exact: true });

  // ---- browser ↔ browser: a video call ----
  await chatItem(alice, 'bob').click();
  await alice.getByRole('button', { name: 'Video call', exact: true }).click();
  await callBox(bob).getByRole('button', { name: 'Answer' }).click({ timeout: T });
  await waitState(alice, 'accepted');
  await waitState(bob, 'accepted');
  const codeA = await callBox(alice).locator('[data-verification]').getAttribute('data-verification');
  const codeB = await callBox(bob).locator('[data-verification]').getAttribute('data-verification');
  assert.ok(codeA && codeA === codeB, `the same verification code on both sides: ${codeA} / ${codeB}`);
  log('browser↔browser verification', codeA);
  await growing(alice, 'alice');
  await growing(bob, 'bob');
  // A second tab of Bob's client loads: it does not end the call the
  // first tab runs.
  const second = await bob.context().newPage();
  watch(second, 'bob (second tab)');
  await second.goto(new URL('/', bob.url()).href);
  await second.getByRole('list', { name: 'Chats' }).waitFor({ timeout: T });
  await sleep(1500);
  assert.equal(calls('bob')[0].state, 'accepted', 'a second tab ended the call the first one runs');
  await second.close();
  await alice.screenshot({ path: join(out, 'call-browser-browser.png') });
  // Screen sharing: the screen replaces the camera on the call's video
  // transceiver; Bob keeps receiving video, then the camera again.
  await callBox(alice).getByRole('button', { name: 'Share screen' }).click();
  await callBox(alice).getByRole('button', { name: 'Stop sharing' }).waitFor({ timeout: T });
  await growing(bob, 'bob (alice shares her screen)');
  await callBox(alice).getByRole('button', { name: 'Stop sharing' }).click();
  await callBox(alice).getByRole('button', { name: 'Share screen' }).waitFor({ timeout: T });
  await callBox(alice).getByRole('button', { name: 'Hang up' }).click();
  await callBox(bob).waitFor({ state: 'detached', timeout: T });
  await callBox(alice).waitFor({ state: 'detached', timeout: T });
  // The call is in both chats' history.
  for (const page of [alice, bob]) {
    if (page === bob) await chatItem(bob, 'alice').click();
    await page.getByRole('list', { name: 'Messages' }).getByRole('listitem').filter({ hasText: /video call/i }).first().waitFor({ timeout: T });
  }
  const bobsCall = calls('bob')[0];
  assert.equal(bobsCall.state, 'ended', `bob's daemon: ${JSON.stringify(bobsCall)}`);
  assert.ok(bobsCall.client, 'the call ran in the browser');
  noProblems('browser↔browser');

  // ---- browser → headless node ----
  await chatItem(alice, 'carol').click();
  await alice.getByRole('button', { name: 'Call', exact: true }).click();
  let id = '';
  const deadline = Date.now() + T;
  while (!id) {
    const ringing = calls('carol').find((c) => c.state === 'ringing' && c.direction === 'incoming');
    if (ringing) id = ringing.id;
    else if (Date.now() > deadline) throw new Error('carol never rang');
    else await sleep(200);
  }
  cli('call', 'answer', '--home', homes.carol, id, '--audio', process.env.AUDIO, '--video', process.env.VIDEO, '--record', process.env.RECORD);
  await waitState(alice, 'accepted');
  await growing(alice, 'alice (with carol)');
  let carolCall;
  for (const until = Date.now() + T; ; await sleep(250)) {
    carolCall = calls('carol').find((c) => c.id === id);
    const got = carolCall.tracks.filter((t) => t.direction === 'received').reduce((n, t) => n + t.packets, 0);
    if (got > 20) break;
    if (Date.now() > until) throw new Error(`carol received no RTP: ${JSON.stringify(carolCall)}`);
  }
  const codeAlice = await callBox(alice).locator('[data-verification]').getAttribute('data-verification');
  assert.equal(codeAlice, carolCall.verification, 'the browser and the headless node show the same code');
  // Carol (the callee, headless) shares a screen: she asks to
  // renegotiate, Alice's browser grants, Carol offers, the browser answers;
  // a second video stream arrives at Alice.
  await screenArrives(alice, 'alice (carol, callee, shares)', () => cli('call', 'share', '--home', homes.carol, id, process.env.SCREEN));
  cli('call', 'unshare', '--home', homes.carol, id);
  await settled(alice, id);
  log('browser→headless: carol receives', JSON.stringify(carolCall.tracks.map((t) => [t.name, t.direction, t.packets])));
  cli('call', 'hangup', '--home', homes.carol, id);
  await callBox(alice).waitFor({ state: 'detached', timeout: T });
  noProblems('browser→headless');

  // ---- headless node → browser ----
  const started = cli('call', 'start', '--home', homes.carol, 'alice', '--audio', process.env.AUDIO, '--video', process.env.VIDEO);
  id = started.split('\n')[0].trim();
  await callBox(alice).getByRole('button', { name: 'Answer' }).click({ timeout: T });
  await waitState(alice, 'accepted');
  await growing(alice, 'alice (called by carol)');
  // Carol (the caller) shares a screen: she offers, the browser answers.
  await screenArrives(alice, 'alice (carol, caller, shares)', () => cli('call', 'share', '--home', homes.carol, id, process.env.SCREEN));
  for (const until = Date.now() + T; ; await sleep(250)) {
    const c = calls('carol').find((x) => x.id === id);
    const got = c.tracks.filter((t) => t.direction === 'received').reduce((n, t) => n + t.packets, 0);
    if (c.state === 'accepted' && got > 20) break;
    if (Date.now() > until) throw new Error(`carol (caller) received no RTP: ${JSON.stringify(c)}`);
  }
  await callBox(alice).getByRole('button', { name: 'Hang up' }).click();
  for (const until = Date.now() + T; ; await sleep(200)) {
    const c = calls('carol').find((x) => x.id === id);
    if (c.state === 'ended') break;
    if (Date.now() > until) throw new Error(`carol's call did not end: ${c.state}`);
  }
  noProblems('headless→browser');
  log('PASS');
} catch (e) {
  for (const [who, page] of Object.entries(pages)) {
    await page.screenshot({ path: join(out, `failed-call-${who}.png`) }).catch(() => {});
    const html = await page.evaluate(() => document.querySelector('#call')?.outerHTML || 'no call box').catch((x) => x.message);
    console.log(`--- ${who}: ${html}`);
  }
  if (problems.length) console.log('problems:\n' + problems.join('\n'));
  throw e;
} finally {
  await browser.close();
}
