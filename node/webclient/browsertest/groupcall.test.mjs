// groupcall.test.mjs — a group call in the web client: Carol (headless)
// runs a call in a group of three; Alice and Bob join it from Chromium
// (fake microphone) through their daemons' bridges. Each hears the other
// two; Carol's daemon opens every frame the browsers sent (sealed by their
// daemons, so the SFU forwarded only SFrame ciphertext); muting and leaving
// from the page reach Carol's roster. Started by internal/e2e
// TestWebClientGroupCall with the environment of calls.test.mjs plus
// GROUP (the group's ID) and TITLE (its title).

import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const bin = process.env.PEERGRAM;
const homes = JSON.parse(process.env.HOMES);
const out = process.env.OUT;
const group = process.env.GROUP;
const title = process.env.TITLE;
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

// No --allow-loopback-in-peer-connection: the bridge offers loopback
// candidates only, and a browser as users run it must reach them.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    '--autoplay-policy=no-user-gesture-required',
    '--auto-select-desktop-capture-source=Entire screen', '--auto-accept-this-tab-capture'],
});
const pages = {};
const stats = (page) => page.evaluate(() => window.peergramGroupCallStats());
const status = (who) => JSON.parse(cli('group', 'call', 'status', '--home', homes[who], group, '--json'));
const account = (who) => cli('id', '--home', homes[who]).split('\n')[0].trim();
const panel = (page) => page.getByRole('region', { name: 'Group call' });

// until polls f until it returns a truthy value.
async function until(what, f) {
  const deadline = Date.now() + T;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(250);
  }
}

try {
  const ids = { alice: account('alice'), bob: account('bob'), carol: account('carol') };
  for (const who of ['alice', 'bob']) {
    const ctx = await browser.newContext({ locale: 'en-US', viewport: { width: 1200, height: 800 } });
    await ctx.grantPermissions(['microphone', 'camera']);
    const page = await ctx.newPage();
    watch(page, who);
    await page.goto(cli('open', '--print', '--home', homes[who]).trim());
    await page.getByRole('list', { name: 'Chats' }).waitFor({ timeout: T });
    pages[who] = page;
  }
  const chatItem = (page, name) => page.getByRole('list', { name: 'Chats' }).getByRole('listitem', { name, exact: true });

  // Both join the call Carol runs: the chat head says one runs.
  for (const who of ['alice', 'bob']) {
    const page = pages[who];
    await chatItem(page, title).click();
    await page.getByRole('button', { name: 'Join group call', exact: true }).click({ timeout: T });
    await panel(page).getByRole('button', { name: 'Leave call' }).waitFor({ timeout: T });
  }
  // Device IDs from Carol's roster, by account.
  const devices = await until('three participants at carol', () => {
    const g = status('carol');
    if (g.participants.length !== 3) return null;
    return Object.fromEntries(g.participants.map((p) => [Object.keys(ids).find((k) => ids[k] === p.account), p.device]));
  });
  log('devices', JSON.stringify(devices));

  // Each browser hears the other two, through its daemon's bridge.
  for (const who of ['alice', 'bob']) {
    const others = ['alice', 'bob', 'carol'].filter((x) => x !== who);
    const first = await until(`${who} hears ${others}`, async () => {
      const st = await stats(pages[who]);
      return others.every((o) => (st.devices[devices[o]] || 0) > 50) && st.outbound > 50 ? st : null;
    });
    await sleep(1000);
    const second = await stats(pages[who]);
    for (const o of others) {
      assert.ok(second.devices[devices[o]] > first.devices[devices[o]], `${who}: audio from ${o} keeps coming: ${first.devices[devices[o]]} → ${second.devices[devices[o]]}`);
    }
    log(who, 'receives', JSON.stringify(second.devices), 'sends', second.outbound, 'packets');
    const names = await panel(pages[who]).getByRole('list', { name: 'Participants' }).getByRole('listitem').count();
    assert.equal(names, 3, `${who}'s page lists the three participants`);
  }
  // Carol sends video too (a headless node, from a file): her daemon
  // sealed each frame, Alice's opened it, and Alice's browser decodes it.
  const decoded = await until('alice decodes carol\'s video', async () => {
    const st = await stats(pages.alice);
    return (st.videoFrames[devices.carol] || 0) > 10 ? st.videoFrames[devices.carol] : 0;
  });
  log('alice decoded', decoded, 'frames of carol\'s video');
  // Carol's daemon opened the frames the browsers sent: their daemons
  // sealed them (SFrame) before the SFU.
  const carolGot = await until('carol opens both browsers\' audio', () => {
    const g = status('carol');
    const from = (who) => g.tracks.filter((t) => t.direction === 'received' && t.device === devices[who] && t.kind === 'audio');
    const ok = ['alice', 'bob'].every((who) => from(who).reduce((n, t) => n + t.frames, 0) > 50);
    return ok ? g : null;
  });
  for (const tr of carolGot.tracks.filter((t) => t.direction === 'received')) {
    assert.equal(tr.undecryptable || 0, 0, `carol: every frame from ${tr.device} opened: ${JSON.stringify(tr)}`);
  }
  await pages.alice.screenshot({ path: join(out, 'group-call.png') });

  // Alice shares her screen (she joined with her microphone only): her
  // daemon seals the frames, Carol's opens them.
  await panel(pages.alice).getByRole('button', { name: 'Share screen', exact: true }).click();
  await panel(pages.alice).getByRole('button', { name: 'Stop sharing', exact: true }).waitFor({ timeout: T });
  const shared = await until('carol opens alice\'s screen', () => {
    const g = status('carol');
    const v = g.tracks.find((t) => t.direction === 'received' && t.device === devices.alice && t.kind === 'video');
    return v && v.frames > 10 ? v : null;
  });
  assert.equal(shared.undecryptable || 0, 0, `every frame of alice's screen opened at carol: ${JSON.stringify(shared)}`);
  log('carol opened', shared.frames, 'frames of alice\'s screen');
  await panel(pages.alice).getByRole('button', { name: 'Stop sharing', exact: true }).click();
  await panel(pages.alice).getByRole('button', { name: 'Share screen', exact: true }).waitFor({ timeout: T });

  // A second tab of Bob's client loads: it must not end the call the
  // first tab runs (tabs ask each other before ending a call whose media
  // died with an earlier load).
  const second = await pages.bob.context().newPage();
  watch(second, 'bob (second tab)');
  await second.goto(new URL('/', pages.bob.url()).href);
  await second.getByRole('list', { name: 'Chats' }).waitFor({ timeout: T });
  await sleep(1500);
  assert.equal(status('carol').participants.length, 3, 'a second tab left the call the first one runs');
  await second.close();

  // Alice mutes from the page: Carol's roster says so.
  await panel(pages.alice).getByRole('button', { name: 'Mute', exact: true }).click();
  await panel(pages.alice).getByRole('button', { name: 'Unmute', exact: true }).waitFor({ timeout: T });
  await until('carol sees alice muted', () => status('carol').participants.find((p) => p.device === devices.alice)?.muted);

  // Alice leaves: Carol's roster drops her; Bob's page stops getting her
  // audio and keeps getting Carol's.
  await panel(pages.alice).getByRole('button', { name: 'Leave call' }).click();
  await panel(pages.alice).waitFor({ state: 'detached', timeout: T });
  await until('carol\'s roster drops alice', () => status('carol').participants.length === 2);
  await sleep(1000);
  const b1 = await stats(pages.bob);
  await sleep(1500);
  const b2 = await stats(pages.bob);
  assert.ok((b2.devices[devices.alice] || 0) <= (b1.devices[devices.alice] || 0) + 5, `bob stops getting alice: ${b1.devices[devices.alice]} → ${b2.devices[devices.alice]}`);
  assert.ok(b2.devices[devices.carol] > b1.devices[devices.carol], 'bob still hears carol');
  const aliceCall = JSON.parse(cli('group', 'call', 'status', '--home', homes.alice, group, '--json'));
  assert.notEqual(aliceCall.state, 'joined', `alice's daemon left the call: ${aliceCall.state}`);

  // A reload ends the call the page's previous load was in (its media
  // died with it).
  await pages.bob.reload();
  await pages.bob.getByRole('list', { name: 'Chats' }).waitFor({ timeout: T });
  await until('carol\'s roster drops bob after his reload', () => status('carol').participants.length === 1);
  noProblems('group call');
  log('PASS');
} catch (e) {
  for (const [who, page] of Object.entries(pages)) {
    await page.screenshot({ path: join(out, `failed-groupcall-${who}.png`) }).catch(() => {});
    const html = await page.evaluate(() => document.querySelector('#group-call')?.outerHTML || 'no group call panel').catch((x) => x.message);
    console.log(`--- ${who}: ${html}`);
  }
  if (problems.length) console.log('problems:\n' + problems.join('\n'));
  throw e;
} finally {
  await browser.close();
}
