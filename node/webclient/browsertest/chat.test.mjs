// chat.test.mjs — the web client in a real browser (Debian's chromium,
// driven by playwright-core) against real daemons and a relay. Started by
// internal/e2e TestWebClientChat, which builds the binaries, starts the
// relay and three daemons (alice, bob, carol) and passes them in the
// environment:
//
//   PEERGRAM      path of the peergram binary
//   HOMES         JSON {"alice": DIR, "bob": DIR, "carol": DIR}
//   PHOTO         a photo file to send
//   OUT           directory for screenshots and figures.json
//   CHROMIUM      the browser (default /usr/bin/chromium)
//
// It exits non-zero on the first failed check, on any console error and on
// any failed request of the client's pages.

import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const bin = process.env.PEERGRAM;
const homes = JSON.parse(process.env.HOMES);
const out = process.env.OUT;
mkdirSync(out, { recursive: true });
const T = 30_000; // a step's bound
const M = process.env.MARKER || ''; // in every text: the relay's files must never show it

const log = (...a) => console.log(new Date().toISOString().slice(11, 23), ...a);
const loginURL = (who) => execFileSync(bin, ['open', '--print', '--home', homes[who]]).toString().trim();

const problems = [];
function watch(page, who) {
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`${who}: console error: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`${who}: page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    // The event stream is cut when a page reloads or closes: not a failure.
    // The event stream is cut, and requests in flight are aborted, when
    // a page reloads or closes: not failures.
    if (r.url().endsWith('/v1/events') || r.failure()?.errorText === 'net::ERR_ABORTED') return;
    problems.push(`${who}: request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`);
  });
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`${who}: HTTP ${r.status()} for ${r.request().method()} ${r.url()} ${(r.request().postData() || '').slice(0, 200)}`); });
}
function noProblems(step) {
  if (problems.length) throw new Error(`${step}: ${problems.join('\n')}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream'],
});
const figures = {};
const pages = {};
try {
  // ---- login: one-time links, a session that survives a reload ----
  for (const who of ['alice', 'bob', 'carol']) {
    const ctx = await browser.newContext({ locale: 'en-US', viewport: { width: 1200, height: 800 } });
    if (who === 'carol') {
      // Carol turned desktop notifications on; the page's Notification
      // is recorded (a headless browser shows none).
      await ctx.grantPermissions(['notifications']);
      await ctx.addInitScript(() => {
        localStorage.setItem('peergram.notifications', 'true');
        window.__notes = [];
        const Real = window.Notification;
        function Recorded(title, opts) {
          window.__notes.push({ title, body: opts && opts.body });
          try { return new Real(title, opts); } catch { return {}; }
        }
        Recorded.permission = 'granted';
        Recorded.requestPermission = async () => 'granted';
        window.Notification = Recorded;
      });
    }
    const page = await ctx.newPage();
    watch(page, who);
    const url = loginURL(who);
    let bytes = 0;
    const count = (r) => r.body().then((b) => { bytes += b.length; }, () => {});
    page.on('response', count);
    const t0 = Date.now();
    const resp = await page.goto(url);
    assert.equal(new URL(page.url()).pathname, '/', `${who}: the login link redirects to /`);
    assert.ok(resp.ok(), `${who}: the client loads`);
    await page.getByRole('list', { name: 'Chats' }).waitFor({ timeout: T });
    if (who === 'alice') {
      figures.first_load_ms = Date.now() - t0;
      await page.waitForLoadState('networkidle').catch(() => {});
      figures.first_load_bytes = bytes;
    }
    page.off('response', count);
    pages[who] = page;
    if (who === 'alice') {
      // The same link, again, in a fresh browser: refused.
      const other = await browser.newContext();
      const p2 = await other.newPage();
      const r2 = await p2.goto(url);
      assert.equal(r2.status(), 403, 'a second use of a login link is refused');
      const cookies = await other.cookies();
      assert.equal(cookies.length, 0, 'a spent link sets no cookie');
      await other.close();
      const [c] = await ctx.cookies();
      assert.ok(c && c.httpOnly && c.sameSite === 'Strict', `session cookie is HttpOnly and SameSite=Strict: ${JSON.stringify(c)}`);
    }
  }
  const { alice, bob, carol } = pages;
  log('logged in; first load', figures.first_load_bytes, 'bytes in', figures.first_load_ms, 'ms');
  noProblems('login');

  const chatItem = (page, name) => page.getByRole('list', { name: 'Chats' }).getByRole('listitem', { name, exact: true });
  const messages = (page) => page.getByRole('list', { name: 'Messages' });
  const message = (page, text) => messages(page).getByRole('listitem').filter({ hasText: text });
  const sendText = async (page, text) => {
    await page.getByRole('textbox', { name: 'Message' }).fill(text);
    await page.getByRole('button', { name: 'Send' }).click();
  };

  // ---- 1:1 chat both ways, ticks sent → delivered → read ----
  await chatItem(alice, 'bob').click();
  const hello = `hello bob ${M} ${Date.now()}`;
  // Record every status the message shows, in order.
  await alice.evaluate((text) => {
    window.__statuses = [];
    new MutationObserver(() => {
      for (const li of document.querySelectorAll('[aria-label="Messages"] li')) {
        if (!li.textContent.includes(text)) continue;
        const s = li.querySelector('[data-status]')?.dataset.status;
        if (s && window.__statuses[window.__statuses.length - 1] !== s) window.__statuses.push(s);
      }
    }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-status'] });
  }, hello);
  // Bob's daemon is paused (SIGSTOP) while Alice sends: her daemon hands
  // the message to the relay (sent) and it is delivered once Bob's
  // daemon runs again — on loopback "sent" would otherwise last too short
  // a moment to be seen.
  const pids = JSON.parse(process.env.PIDS);
  process.kill(pids.bob, 'SIGSTOP');
  try {
    await sendText(alice, hello);
    await message(alice, hello).waitFor({ timeout: T });
    await message(alice, hello).locator('[data-status="sent"]').waitFor({ timeout: T });
    log('alice sees sent');
  } finally {
    process.kill(pids.bob, 'SIGCONT');
  }
  await message(alice, hello).locator('[data-status="delivered"]').waitFor({ timeout: T });
  log('alice sees delivered');
  // Bob sees the chat with one unread message, opens it: read.
  await chatItem(bob, 'alice').waitFor({ timeout: T });
  await chatItem(bob, 'alice').getByText(hello).waitFor({ timeout: T });
  await chatItem(bob, 'alice').click();
  await message(bob, hello).waitFor({ timeout: T });
  await message(alice, hello).locator('[data-status="read"]').waitFor({ timeout: T });
  const seen = await alice.evaluate(() => window.__statuses);
  log('statuses alice saw', seen.join(' → '));
  const at = (s) => seen.indexOf(s);
  assert.ok(at('delivered') >= 0 && at('read') > at('delivered'), `ticks in order: ${seen}`);
  assert.ok(at('sent') >= 0 && at('sent') < at('delivered'), `sent before delivered: ${seen}`);
  assert.ok(!seen.includes('failed'), `no failure: ${seen}`);

  const back = `hi alice ${M} ${Date.now()}`;
  await sendText(bob, back);
  await message(alice, back).waitFor({ timeout: T });
  await message(bob, back).locator('[data-status="read"]').waitFor({ timeout: T }); // alice has the chat open
  noProblems('chat');

  // ---- a photo: picker on one side, thumbnail on the other ----
  await alice.getByLabel('Attach').setInputFiles(process.env.PHOTO);
  const photoName = process.env.PHOTO.split('/').pop();
  await messages(alice).getByRole('img', { name: photoName }).waitFor({ timeout: T });
  const thumb = messages(bob).getByRole('img', { name: photoName });
  await thumb.waitFor({ timeout: T });
  const size = await thumb.evaluate((img) => [img.naturalWidth, img.complete]);
  assert.ok(size[1] && size[0] > 0, `bob's thumbnail is a decoded image: ${size}`);
  log('bob sees the photo thumbnail', size[0], 'px wide');
  // A file dropped on the chat is sent too.
  const dropped = await alice.evaluateHandle((m) => {
    const dt = new DataTransfer();
    dt.items.add(new File([`dropped notes ${m}`], 'notes.txt', { type: 'text/plain' }));
    return dt;
  }, M);
  await alice.dispatchEvent('#chat', 'drop', { dataTransfer: dropped });
  await message(bob, 'notes.txt').waitFor({ timeout: T });
  log('bob sees the dropped file');
  // Bob saves it: the browser gets its bytes (fetched to his daemon first).
  const [saved] = await Promise.all([
    bob.waitForEvent('download', { timeout: T }),
    message(bob, 'notes.txt').getByRole('button', { name: 'Save', exact: true }).click(),
  ]);
  assert.equal(saved.suggestedFilename(), 'notes.txt');
  assert.equal(readFileSync(await saved.path(), 'utf8'), `dropped notes ${M}`, 'the saved file holds what was dropped');
  log('bob saved the file');
  noProblems('photo');

  // ---- a group with a third user ----
  const title = `Weekend ${M} ${Date.now()}`;
  await alice.getByRole('button', { name: 'New group' }).click();
  const dlg = alice.getByRole('dialog', { name: 'New group' });
  await dlg.getByLabel('Title').fill(title);
  await dlg.getByLabel('bob').check();
  await dlg.getByLabel('carol').check();
  await dlg.getByRole('button', { name: 'Create' }).click();
  await chatItem(alice, title).waitFor({ timeout: T });
  const post = `who is in? ${M} ${Date.now()}`;
  await sendText(alice, post);
  await message(alice, post).waitFor({ timeout: T });
  // Carol has no chat open: a desktop notification names the group.
  await carol.waitForFunction((post) => window.__notes.some((n) => n.body === post), post, { timeout: T });
  const note = (await carol.evaluate(() => window.__notes)).find((n) => n.body === post);
  assert.equal(note.title, title, 'the notification names the group');
  log('carol got a desktop notification');
  for (const [who, page] of [['bob', bob], ['carol', carol]]) {
    await chatItem(page, title).waitFor({ timeout: T });
    await chatItem(page, title).click();
    await message(page, post).waitFor({ timeout: T });
    log(who, 'sees the group post');
  }
  const answer = `me! ${M} ${Date.now()}`;
  await sendText(carol, answer);
  const carolsPost = message(alice, answer);
  await carolsPost.waitFor({ timeout: T });
  assert.match(await carolsPost.textContent(), /carol/, 'the sender is named in a group');
  await message(bob, answer).waitFor({ timeout: T });
  // Alice (the owner) pins her post; it shows pinned at Bob, live.
  await message(alice, post).getByRole('button', { name: 'Pin', exact: true }).click();
  await bob.getByRole('note').filter({ hasText: post }).waitFor({ timeout: T });
  log('bob sees the pin');
  // Alice gives the group a description; Bob reads it in the group's info.
  const about = `Plans for Saturday ${M}`;
  await alice.getByRole('button', { name: 'Info', exact: true }).click();
  const info = alice.getByRole('dialog', { name: title });
  await info.getByLabel('Description').fill(about);
  await info.getByRole('button', { name: 'Save' }).click();
  await alice.getByRole('dialog', { name: title }).locator('p.group-description', { hasText: about }).waitFor({ timeout: T });
  await alice.keyboard.press('Escape');
  for (let deadline = Date.now() + T; ; ) {
    await bob.getByRole('button', { name: 'Info', exact: true }).click();
    const bobInfo = bob.getByRole('dialog', { name: title });
    await bobInfo.waitFor({ timeout: T });
    const seen = await bobInfo.locator('p.group-description', { hasText: about }).count();
    await bob.keyboard.press('Escape');
    if (seen) break;
    if (Date.now() > deadline) throw new Error('bob never saw the group description');
    await bob.waitForTimeout(500);
  }
  log('bob sees the description');
  // Alice sets the group's photo; Bob's node fetches it, and his info
  // dialog shows it.
  await alice.getByRole('button', { name: 'Info', exact: true }).click();
  const info2 = alice.getByRole('dialog', { name: title });
  await info2.getByLabel('Group photo').setInputFiles(process.env.PHOTO);
  await info2.getByRole('button', { name: 'Set photo' }).click();
  const shown = () => { const i = document.querySelector('img.group-photo'); return i && !i.hidden && i.complete && i.naturalWidth > 0; };
  await alice.waitForFunction(shown, null, { timeout: T });
  await alice.keyboard.press('Escape');
  for (let deadline = Date.now() + T; ; ) {
    await bob.getByRole('button', { name: 'Info', exact: true }).click();
    await bob.getByRole('dialog', { name: title }).waitFor({ timeout: T });
    const seen = await bob.waitForFunction(shown, null, { timeout: 2000 }).then(() => true, () => false);
    await bob.keyboard.press('Escape');
    if (seen) break;
    if (Date.now() > deadline) throw new Error('bob never saw the group photo');
    await bob.waitForTimeout(500);
  }
  log('bob sees the group photo');
  // Bob forwards Carol's answer to Alice: her chat with him shows it as
  // a forward from the group, apart from the text.
  await message(bob, answer).getByRole('button', { name: 'Forward', exact: true }).click();
  const fwd = bob.getByRole('dialog', { name: 'Forward' });
  await fwd.getByLabel('Forward to').selectOption({ label: 'alice' });
  await fwd.getByRole('button', { name: 'Forward', exact: true }).click();
  await chatItem(alice, 'bob').click();
  const forwarded = message(alice, answer);
  await forwarded.waitFor({ timeout: T });
  await forwarded.locator('p.forwarded', { hasText: `Forwarded from ${title}` }).waitFor({ timeout: T });
  log('alice sees the forward from the group');
  await chatItem(alice, title).click();
  noProblems('group');

  // ---- contacts: own link and its QR code ----
  await alice.getByRole('button', { name: 'Contacts', exact: true }).click();
  const qr = alice.getByRole('dialog', { name: 'Contacts' }).getByRole('img', { name: 'QR code of your link' });
  await qr.waitFor({ timeout: T });
  await alice.waitForFunction(() => { const i = document.querySelector('img.qr'); return i && i.complete && i.naturalWidth > 100; }, null, { timeout: T });
  await alice.screenshot({ path: join(out, 'contacts-light.png') });
  await alice.keyboard.press('Escape');

  // ---- reload keeps the session ----
  await alice.reload();
  await chatItem(alice, title).waitFor({ timeout: T });
  await chatItem(alice, 'bob').click();
  await messages(alice).getByRole('img', { name: photoName }).waitFor({ timeout: T });
  await message(alice, back).waitFor({ timeout: T });
  noProblems('reload');

  // ---- pinned chats are the daemon's: another browser sees them ----
  await alice.getByRole('button', { name: 'Pin chat', exact: true }).click();
  const pinMark = (page) => chatItem(page, 'bob').getByLabel('Pinned', { exact: true });
  await pinMark(alice).waitFor({ timeout: T });
  const laptop = await browser.newContext({ locale: 'en-US', viewport: { width: 1200, height: 800 } });
  const alice2 = await laptop.newPage();
  watch(alice2, 'alice (second browser)');
  await alice2.goto(loginURL('alice'));
  await pinMark(alice2).waitFor({ timeout: T });
  // Unpinned there: the first browser follows at once (a prefs event).
  await chatItem(alice2, 'bob').click();
  await alice2.getByRole('button', { name: 'Unpin chat', exact: true }).click();
  await pinMark(alice).waitFor({ state: 'detached', timeout: T });
  await laptop.close();
  noProblems('shared pins');

  // ---- another origin is refused ----
  const evil = createServer((req, res) => {
    res.setHeader('Content-Type', 'text/html');
    res.end('<!doctype html><title>evil</title><p>evil</p>');
  });
  await new Promise((r) => evil.listen(0, '127.0.0.1', r));
  const api = new URL(alice.url()).origin;
  const evilPage = await alice.context().newPage(); // the same browser profile: alice's cookie is there
  await evilPage.goto(`http://127.0.0.1:${evil.address().port}/`);
  const attempts = await evilPage.evaluate(async (api) => {
    const out = {};
    for (const [name, init] of [
      ['read contacts', { credentials: 'include' }],
      ['csrf token', { credentials: 'include', path: '/v1/web/session' }],
      ['send', { method: 'POST', credentials: 'include', headers: { 'Content-Type': 'text/plain' }, body: '{"contact":"bob","text":"forged"}', path: '/v1/messages' }],
    ]) {
      try {
        const r = await fetch(api + (init.path || '/v1/contacts'), init);
        out[name] = `status ${r.status}: ${(await r.text()).slice(0, 80)}`;
      } catch (e) { out[name] = 'blocked: ' + e.message; }
    }
    try {
      const r = await fetch(api + '/v1/messages', { method: 'POST', mode: 'no-cors', credentials: 'include', headers: { 'Content-Type': 'text/plain' }, body: '{"contact":"bob","text":"forged no-cors"}' });
      out['no-cors send'] = 'opaque ' + r.type;
    } catch (e) { out['no-cors send'] = 'blocked: ' + e.message; }
    return out;
  }, api);
  log('another origin:', JSON.stringify(attempts));
  for (const [k, v] of Object.entries(attempts)) {
    assert.ok(!/^status 2/.test(v), `another origin got an answer (${k}): ${v}`);
  }
  await evilPage.close();
  evil.close();
  // Nothing forged reached bob.
  await bob.waitForTimeout(500);
  assert.equal(await message(bob, 'forged').count(), 0, 'a forged message reached bob');
  noProblems('origin');

  // ---- accessibility: names, contrast, keyboard ----
  const unnamed = await alice.evaluate(() => [...document.querySelectorAll('button, input, select, textarea, [role=listitem]')]
    .filter((el) => !(el.getAttribute('aria-label') || el.textContent.trim() || el.title || (el.labels && el.labels.length)))
    .map((el) => el.outerHTML.slice(0, 80)));
  assert.deepEqual(unnamed, [], 'every control has an accessible name');
  for (const theme of ['light', 'dark']) {
    const ratios = await alice.evaluate((theme) => {
      document.documentElement.dataset.theme = theme;
      const v = (n) => getComputedStyle(document.documentElement).getPropertyValue(n).trim();
      const lum = (hex) => {
        const c = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255).map((x) => (x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4));
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
      };
      const ratio = (a, b) => { const [x, y] = [lum(v(a)), lum(v(b))].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
      return {
        'fg/bg': ratio('--fg', '--bg'), 'muted/bg': ratio('--muted', '--bg'), 'muted/panel': ratio('--muted', '--panel'),
        'fg/out': ratio('--fg', '--out'), 'muted/out': ratio('--muted', '--out'), 'muted/in': ratio('--muted', '--in'),
        'accent-fg/accent': ratio('--accent-fg', '--accent'), 'accent/bg': ratio('--accent', '--bg'), 'accent/in': ratio('--accent', '--in'),
        'danger/bg': ratio('--danger', '--bg'), 'read/out': ratio('--read', '--out'),
      };
    }, theme);
    for (const [pair, r] of Object.entries(ratios)) assert.ok(r >= 4.5, `${theme}: contrast ${pair} is ${r.toFixed(2)}, under 4.5 (WCAG AA)`);
    log(theme, 'contrast min', Math.min(...Object.values(ratios)).toFixed(2));
  }
  // Keyboard only: Tab from the search field reaches the chat list,
  // Enter opens a chat and puts the cursor in the composer, Enter sends.
  await alice.getByRole('searchbox', { name: 'Search' }).focus();
  for (let i = 0; i < 10; i++) {
    await alice.keyboard.press('Tab');
    if (await alice.evaluate(() => document.activeElement?.closest('li')?.getAttribute('aria-label')) === 'bob') break;
  }
  await alice.keyboard.press('Enter');
  assert.equal(await alice.evaluate(() => document.activeElement?.getAttribute('aria-label')), 'Message', 'opening a chat focuses the composer');
  const kb = 'by keyboard ' + Date.now();
  await alice.keyboard.type(kb);
  await alice.keyboard.press('Enter');
  await message(alice, kb).waitFor({ timeout: T });
  await chatItem(bob, 'alice').getByText(kb).waitFor({ timeout: T });

  // ---- screenshots: both themes and a right-to-left language ----
  for (const theme of ['light', 'dark']) {
    await alice.evaluate((theme) => { localStorage.setItem('peergram.theme', JSON.stringify(theme)); }, theme);
    await alice.reload();
    await chatItem(alice, 'bob').click();
    await message(alice, kb).waitFor({ timeout: T });
    await alice.screenshot({ path: join(out, `chat-${theme}.png`) });
    await alice.getByRole('button', { name: 'Settings' }).click();
    await alice.screenshot({ path: join(out, `settings-${theme}.png`) });
    await alice.keyboard.press('Escape');
  }
  await alice.getByRole('button', { name: 'Settings' }).click();
  await alice.getByLabel('Language').selectOption('ar');
  await alice.getByRole('list', { name: 'المحادثات' }).waitFor({ timeout: T });
  assert.equal(await alice.evaluate(() => document.documentElement.dir), 'rtl', 'Arabic lays out right to left');
  await alice.keyboard.press('Escape');
  await alice.screenshot({ path: join(out, 'chat-ar-rtl.png') });
  // Back to English for whoever uses the profile next.
  await alice.evaluate(() => localStorage.setItem('peergram.lang', JSON.stringify('en')));
  noProblems('screens');

  // ---- invitations: a group from someone who is not a contact ----
  // Alice removes Bob from her contacts; the groups he adds her to are
  // invitations, shown live, declined (the chat goes) or accepted.
  await alice.reload();
  await chatItem(alice, 'bob').waitFor({ timeout: T });
  execFileSync(bin, ['contacts', 'remove', '--home', homes.alice, 'bob']);
  for (const accept of [false, true]) {
    const inv = `Invitation ${accept ? 'accepted' : 'declined'} ${M} ${Date.now()}`;
    const gid = execFileSync(bin, ['group', 'create', '--home', homes.bob, inv]).toString().split('\n')[0].trim();
    execFileSync(bin, ['group', 'add', '--home', homes.bob, gid, 'alice']);
    await chatItem(alice, inv).waitFor({ timeout: T });
    await chatItem(alice, inv).click();
    await alice.getByText('Someone who is not your contact added you to this group').waitFor({ timeout: T });
    assert.equal(await alice.getByRole('textbox', { name: 'Message' }).count(), 0, 'no composer for an invitation');
    await alice.getByRole('button', { name: accept ? 'Accept' : 'Decline', exact: true }).click();
    if (accept) {
      await alice.getByRole('textbox', { name: 'Message' }).waitFor({ timeout: T });
      const info = JSON.parse(execFileSync(bin, ['group', 'info', '--home', homes.alice, gid, '--json']).toString());
      assert.equal(info.members.length, 2, 'joined: Bob and Alice');
    } else {
      await chatItem(alice, inv).waitFor({ state: 'detached', timeout: T });
      const list = execFileSync(bin, ['group', 'list', '--home', homes.alice]).toString();
      assert.ok(!list.includes(inv), 'a declined invitation is not listed');
    }
    log('alice', accept ? 'accepted' : 'declined', 'an invitation');
  }
  noProblems('invitations');

  writeFileSync(join(out, 'figures.json'), JSON.stringify(figures, null, 1));
  log('PASS', JSON.stringify(figures));
} catch (e) {
  // What each page showed, for the failure's reader.
  for (const [who, page] of Object.entries(pages)) {
    await page.screenshot({ path: join(out, `failed-${who}.png`) }).catch(() => {});
    const html = await page.evaluate(() => (document.querySelector('#conn')?.outerHTML || '') + (document.querySelector('#chatnav')?.outerHTML || '').slice(0, 1500) + document.querySelector('#chat')?.outerHTML.slice(0, 1500)).catch((e) => 'evaluate failed: ' + e.message);
    console.log(`--- ${who} at failure:\n${html}`);
  }
  if (problems.length) console.log('problems:\n' + problems.join('\n'));
  throw e;
} finally {
  await browser.close();
}
