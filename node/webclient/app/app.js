// app.js — the Peergram web client: chat list, chat view, composer,
// contacts, groups and settings, kept live by the daemon's event stream.
//
// State lives in one object (state); render functions rebuild the part of
// the page they own from it. Everything a peer sends is put in the page as
// text (dom.js), never as HTML.

import { API, APIError } from './api.js';
import { h, clear, $ } from './dom.js';
import { t, tn, setLanguage, pickLanguage, language, LANGUAGES } from './i18n.js';
import { icon } from './icons.js';
import { initCalls } from './calls.js';
import { initGroupCalls } from './groupcalls.js';
import { initTabs } from './tabs.js';

const api = new API();
const tabs = initTabs();
const calls = initCalls({ api, nameOf: (account) => chatName(chatOf('c:' + account)), toast: (m) => toast(m), tabs });
// The call's RTP packet counts, for the browser tests.
window.peergramCallStats = () => calls.stats();
const groupCalls = initGroupCalls({
  api,
  groupName: (id) => chatName(chatOf('g:' + id)),
  callOf: (id) => state.groups.get(id)?.call_id || '',
  accountName: (account) => (account === state.me?.account_id ? t('you') : chatName(chatOf('c:' + account))),
  toast: (m) => toast(m),
  tabs,
});
window.peergramGroupCallStats = () => groupCalls.stats();
const PAGE = 50; // messages rendered per scroll step

const prefs = {
  get(k, d) { try { return JSON.parse(localStorage.getItem('peergram.' + k)) ?? d; } catch { return d; } },
  set(k, v) { localStorage.setItem('peergram.' + k, JSON.stringify(v)); },
};

// shared holds what every browser of this daemon shares — pinned and
// archived chats, how far each group was read — kept by the daemon (GET
// and PUT /v1/web/prefs; a "prefs" event when another browser changes
// them). prefs above is this browser's own: theme, language, notifications.
const shared = {
  data: {},
  timer: 0,
  dirty: false,
  get(k, d) { return this.data[k] ?? d; },
  set(k, v) {
    this.data[k] = v;
    this.dirty = true;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.save(), 300);
  },
  async save() {
    this.dirty = false;
    await api.call('PUT', '/v1/web/prefs', this.data).catch((e) => console.warn('preferences not kept:', e.message));
  },
  async load() {
    const d = await api.get('/v1/web/prefs').catch(() => null);
    if (d && !this.dirty) this.data = d;
    // Once: what this browser kept itself before the daemon kept it.
    if (!this.data.pinned && !this.data.archived && (prefs.get('pinned', null) || prefs.get('archived', null))) {
      this.set('pinned', prefs.get('pinned', []));
      this.set('archived', prefs.get('archived', []));
    }
  },
};

const state = {
  me: null,
  contacts: new Map(), // account ID → contact
  groups: new Map(), // group ID → group
  chats: new Map(), // key ("c:ACCOUNT" | "g:GROUP") → chat
  current: null, // key of the open chat
  shown: PAGE, // messages of the open chat rendered
  query: '',
  showArchived: false,
  replyTo: null, // group message being answered
  online: false,
};

// ---------- chats ----------

function chatOf(key) {
  let c = state.chats.get(key);
  if (!c) {
    const [kind, id] = [key.slice(0, 1), key.slice(2)];
    c = { key, id, kind: kind === 'c' ? 'direct' : 'group', messages: null, files: new Map(), unread: 0, last: null };
    state.chats.set(key, c);
  }
  return c;
}

function chatName(c) {
  if (c.kind === 'direct') {
    const ct = state.contacts.get(c.id);
    return (ct && (ct.name || ct.display_name)) || c.fromName || short(c.id);
  }
  const g = state.groups.get(c.id);
  return (g && g.title) || short(c.id);
}

const short = (id) => (id.length > 12 ? id.slice(0, 6) + '…' + id.slice(-4) : id);

function lastOf(c) {
  const ms = c.messages;
  return ms && ms.length ? ms[ms.length - 1] : c.last;
}

function sortedChats() {
  const pinned = new Set(shared.get('pinned', []));
  const archived = new Set(shared.get('archived', []));
  const q = state.query.toLowerCase();
  const list = [...state.chats.values()].filter((c) => {
    if (!q) return true;
    if (chatName(c).toLowerCase().includes(q)) return true;
    return (c.messages || []).some((m) => (m.text || '').toLowerCase().includes(q));
  });
  const at = (c) => { const m = lastOf(c); return m ? Date.parse(m.sent_at) : 0; };
  list.sort((a, b) => (pinned.has(b.key) - pinned.has(a.key)) || at(b) - at(a));
  return {
    active: list.filter((c) => !archived.has(c.key) || q),
    archived: q ? [] : list.filter((c) => archived.has(c.key)),
    pinned,
  };
}

function unreadOf(c) {
  if (c.kind === 'direct') return (c.messages || []).filter((m) => !m.outgoing && m.status === 'received').length;
  const seen = shared.get('seen.' + c.id, '') || prefs.get('seen.' + c.id, '');
  return (c.messages || []).filter((m) => !m.outgoing && m.sent_at > seen).length;
}

// A chat loads its newest FETCH messages, and FETCH more each time the
// view scrolls past what is loaded. Loading never marks anything read:
// markSeen does, for the chat on screen.
const FETCH = 200;

function messagesPath(c) {
  return c.kind === 'direct'
    ? `/v1/chats/${encodeURIComponent(c.id)}/messages?mark_read=false&limit=${FETCH}`
    : `/v1/groups/${encodeURIComponent(c.id)}/messages?limit=${FETCH}`;
}

async function loadChat(c) {
  if (c.kind === 'group' && state.groups.get(c.id)?.role === 'invited') {
    // Nothing to read before the invitation is accepted.
    c.messages = []; c.complete = true;
    return;
  }
  c.messages = await api.get(messagesPath(c));
  c.complete = c.messages.length < FETCH;
  if (c.messages.some((m) => m.file)) await loadFiles(c);
}

async function loadOlder(c) {
  if (c.complete || c.loadingOlder || !c.messages || !c.messages.length) return false;
  c.loadingOlder = true;
  try {
    const older = await api.get(`${messagesPath(c)}&before=${encodeURIComponent(c.messages[0].id)}`);
    c.complete = older.length < FETCH;
    const have = new Set(c.messages.map((m) => m.id));
    c.messages = older.filter((m) => !have.has(m.id)).concat(c.messages);
    if (older.some((m) => m.file)) await loadFiles(c);
    return older.length > 0;
  } finally {
    c.loadingOlder = false;
  }
}

async function loadFiles(c) {
  const files = await api.get(`/v1/chats/${encodeURIComponent(c.id)}/files`);
  for (const f of files) c.files.set(f.id, f);
}

async function loadAll() {
  const [me, contacts, requests, groups] = await Promise.all([
    api.get('/v1/identity'), api.get('/v1/contacts'), api.get('/v1/requests'), api.get('/v1/groups'),
  ]);
  state.me = me;
  state.contacts = new Map(contacts.map((c) => [c.account_id, c]));
  for (const r of requests) chatOf('c:' + r.account_id).request = r;
  state.groups = new Map(groups.map((g) => [g.group_id, g]));
  for (const c of contacts) chatOf('c:' + c.account_id);
  for (const g of groups) chatOf('g:' + g.group_id);
  await Promise.all([...state.chats.values()].map((c) => loadChat(c).catch((e) => { c.error = e.message; })));
}

// ---------- rendering: layout ----------

function renderApp() {
  const root = clear($('#root'));
  root.removeAttribute('aria-busy');
  root.append(
    h('div', { class: 'layout' },
      h('aside', { class: 'sidebar', 'aria-label': t('sidebar') },
        h('header', { class: 'bar' },
          h('h1', { class: 'brand' }, t('app_name')),
          h('span', { id: 'conn', class: 'conn', role: 'status' }),
          h('button', { type: 'button', class: 'icon', 'aria-label': t('contacts'), title: t('contacts'), onclick: openContacts }, icon('contacts')),
          h('button', { type: 'button', class: 'icon', 'aria-label': t('new_group'), title: t('new_group'), onclick: openNewGroup }, icon('plus')),
          h('button', { type: 'button', class: 'icon', 'aria-label': t('settings'), title: t('settings'), onclick: openSettings }, icon('settings')),
        ),
        h('input', { type: 'search', id: 'search', class: 'search', placeholder: t('search'), 'aria-label': t('search'), value: state.query,
          oninput: (e) => { state.query = e.target.value; renderChatList(); } }),
        h('nav', { id: 'chatnav' }),
      ),
      h('main', { id: 'chat', class: 'chat' }),
    ),
    h('div', { id: 'toasts', class: 'toasts', role: 'status', 'aria-live': 'polite' }),
  );
  renderConn();
  renderChatList();
  renderChat();
}

function renderConn() {
  const el = $('#conn');
  if (!el) return;
  el.textContent = state.online ? '' : t('connecting');
  el.dataset.online = state.online ? 'true' : 'false';
}

function renderChatList() {
  const nav = $('#chatnav');
  if (!nav) return;
  clear(nav);
  const { active, archived, pinned } = sortedChats();
  const item = (c) => {
    const last = lastOf(c);
    const unread = unreadOf(c);
    const name = chatName(c);
    return h('li', { 'aria-label': name, class: 'chat-item' + (c.key === state.current ? ' current' : ''), dataset: { key: c.key } },
      h('button', { type: 'button', 'aria-current': c.key === state.current ? 'true' : false, onclick: () => openChat(c.key) },
        h('span', { class: 'avatar', 'aria-hidden': 'true' }, initials(name)),
        h('span', { class: 'chat-main' },
          h('span', { class: 'chat-top' },
            h('span', { class: 'chat-name' }, c.kind === 'group' ? icon(state.groups.get(c.id)?.channel ? 'channel' : 'group', 16) : null, h('bdi', {}, name)),
            pinned.has(c.key) ? h('span', { class: 'pin', title: t('pinned'), 'aria-label': t('pinned') }, icon('pin', 14)) : null,
            h('span', { class: 'chat-time' }, last ? fmtTime(last.sent_at) : ''),
          ),
          h('span', { class: 'chat-bottom' },
            h('span', { class: 'chat-last' }, last && last.file ? icon(last.file.kind === 'photo' ? 'photo' : 'attach', 14) : null, last && last.poll ? icon('poll', 14) : null, last ? previewOf(last) : c.request ? t('request') : t('no_messages')),
            unread ? h('span', { class: 'badge', 'aria-label': tn('unread', unread) }, String(unread)) : null,
          ),
        ),
      ),
    );
  };
  nav.append(h('ul', { role: 'list', 'aria-label': t('chats'), class: 'chats' }, active.map(item)));
  if (!active.length) nav.append(h('p', { class: 'empty' }, state.query ? t('no_results') : t('no_chats')));
  if (archived.length) {
    nav.append(h('button', { type: 'button', class: 'link', 'aria-expanded': state.showArchived ? 'true' : 'false',
      onclick: () => { state.showArchived = !state.showArchived; renderChatList(); } }, tn('archived_chats', archived.length)));
    if (state.showArchived) nav.append(h('ul', { role: 'list', 'aria-label': t('archived'), class: 'chats' }, archived.map(item)));
  }
  const total = [...state.chats.values()].reduce((n, c) => n + unreadOf(c), 0);
  document.title = total ? `(${total}) ${t('app_name')}` : t('app_name');
}

const initials = (name) => name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => [...w][0]).join('').toUpperCase() || '?';

function previewOf(m) {
  if (m.file) return m.text || m.file.name;
  return m.text;
}

function fmtTime(iso) {
  const d = new Date(iso);
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  return new Intl.DateTimeFormat(language(), sameDay ? { hour: '2-digit', minute: '2-digit' } : { day: 'numeric', month: 'short' }).format(d);
}

// ---------- rendering: chat view ----------

async function openChat(key) {
  state.current = key;
  state.shown = PAGE;
  state.replyTo = null;
  const c = chatOf(key);
  if (!c.messages) await loadChat(c).catch((e) => toast(e.message));
  renderChatList();
  renderChat();
  markSeen(c);
  $('#composer-text')?.focus();
}

function renderChat() {
  const main = $('#chat');
  if (!main) return;
  clear(main);
  const c = state.current && state.chats.get(state.current);
  if (!c) {
    main.append(h('div', { class: 'placeholder' }, h('p', {}, t('pick_chat'))));
    return;
  }
  const g = c.kind === 'group' ? state.groups.get(c.id) : null;
  // An invitation shows its title and the choice, nothing else.
  const invited = g && g.role === 'invited';
  const pinned = new Set(shared.get('pinned', []));
  const archived = new Set(shared.get('archived', []));
  const toggle = (k, set) => { set.has(c.key) ? set.delete(c.key) : set.add(c.key); shared.set(k, [...set]); renderChatList(); renderChat(); };
  main.append(
    h('header', { class: 'bar chat-head' },
      h('div', { class: 'chat-title' },
        h('h2', {}, h('bdi', {}, chatName(c))),
        h('p', { class: 'sub' }, g ? (g.channel ? tn('subscribers', g.subscribers || g.members.length) : tn('members', g.members.length)) : c.request ? t('request') : ''),
      ),
      g && !invited ? h('button', { type: 'button', onclick: () => openGroupInfo(c.id) }, t('group_info')) : null,
      g && !invited && (!g.channel || g.role === 'owner' || g.role === 'admin' || g.call_id) ? h('button', { type: 'button', class: 'icon', 'aria-label': g.call_id ? t('join_group_call') : t('start_group_call'), title: g.call_id ? t('join_group_call') : t('start_group_call'), 'data-call': g.call_id ? 'active' : 'none', onclick: () => groupCalls.open(c.id, false) }, icon('phone')) : null,
      g && !invited && (!g.channel || g.role === 'owner' || g.role === 'admin' || g.call_id) ? h('button', { type: 'button', class: 'icon', 'aria-label': t('group_video_call'), title: t('group_video_call'), onclick: () => groupCalls.open(c.id, true) }, icon('video')) : null,
      !g && !c.request ? h('button', { type: 'button', class: 'icon', 'aria-label': t('call'), title: t('call'), onclick: () => calls.start(c.id, false) }, icon('phone')) : null,
      !g && !c.request ? h('button', { type: 'button', class: 'icon', 'aria-label': t('video_call'), title: t('video_call'), onclick: () => calls.start(c.id, true) }, icon('video')) : null,
      h('button', { type: 'button', 'aria-pressed': pinned.has(c.key) ? 'true' : 'false', onclick: () => toggle('pinned', pinned) }, pinned.has(c.key) ? t('unpin_chat') : t('pin_chat')),
      h('button', { type: 'button', 'aria-pressed': archived.has(c.key) ? 'true' : 'false', onclick: () => toggle('archived', archived) }, archived.has(c.key) ? t('unarchive_chat') : t('archive_chat')),
    ),
  );
  if (invited) {
    main.append(h('div', { class: 'request' },
      h('p', {}, t('invitation_explain')),
      h('button', { type: 'button', onclick: () => answerInvitation(c, true) }, t('accept')),
      h('button', { type: 'button', onclick: () => answerInvitation(c, false) }, t('decline')),
    ));
  }
  if (c.request) {
    main.append(h('div', { class: 'request' },
      h('p', {}, t('request_explain', { name: chatName(c) })),
      h('button', { type: 'button', onclick: () => acceptRequest(c) }, t('accept')),
      h('button', { type: 'button', onclick: () => ignoreRequest(c) }, t('ignore')),
    ));
  }
  if (g && g.pinned && g.pinned.length) {
    const pm = (c.messages || []).find((m) => m.id === g.pinned[g.pinned.length - 1]);
    if (pm) main.append(h('div', { class: 'pinned-bar', role: 'note' }, icon('pin', 14), ' ', previewOf(pm)));
  }
  const list = h('ul', { role: 'list', 'aria-label': t('messages'), id: 'messages', class: 'messages' });
  const scroller = h('div', { class: 'scroller', id: 'scroller', onscroll: onScroll }, list);
  main.append(scroller);
  renderMessages(c, list);
  if (!invited) main.append(composer(c, g));
  scroller.scrollTop = scroller.scrollHeight;
  main.ondragover = (e) => { e.preventDefault(); main.classList.add('drop'); };
  main.ondragleave = () => main.classList.remove('drop');
  main.ondrop = (e) => { e.preventDefault(); main.classList.remove('drop'); sendFiles(c, e.dataTransfer.files); };
}

async function onScroll(e) {
  const el = e.target;
  const c = state.chats.get(state.current);
  if (!c || el.scrollTop > 40) return;
  if (state.shown >= (c.messages || []).length && !(await loadOlder(c).catch(() => false))) return;
  if (c.key !== state.current) return;
  const before = el.scrollHeight;
  state.shown += PAGE;
  renderMessages(c, $('#messages'));
  el.scrollTop = el.scrollHeight - before;
}

function renderMessages(c, list) {
  clear(list);
  const ms = c.messages || [];
  if (!ms.length) list.append(h('li', { class: 'empty' }, t('no_messages')));
  for (const m of ms.slice(-state.shown)) list.append(messageItem(c, m));
}

const STATUS_ICON = { sent: '✓', delivered: '✓✓', read: '✓✓' };
const statusMark = (s) => (s === 'pending' ? icon('pending', 12) : s === 'failed' ? icon('failed', 12) : STATUS_ICON[s] || '');

// A group message's sender: a contact's alias, or "~ name" for the name
// another member gives itself (as messengers mark unsaved numbers).
const groupSender = (m) => (m.from_name ? (m.from_contact || m.outgoing ? m.from_name : '~ ' + m.from_name) : short(m.from));

function messageItem(c, m) {
  const g = c.kind === 'group';
  const status = m.status || (m.outgoing ? 'sent' : 'received');
  const reply = g && m.reply_to ? (c.messages || []).find((x) => x.id === m.reply_to) : null;
  return h('li', { class: 'msg ' + (m.outgoing ? 'out' : 'in') + (m.call ? ' call' : ''), dataset: { id: m.id } },
    g && !m.outgoing ? h('span', { class: 'sender' }, h('bdi', {}, groupSender(m))) : null,
    reply ? h('blockquote', { class: 'reply' }, h('span', { class: 'sender' }, groupSender(reply)), ' ', previewOf(reply)) : null,
    m.forwarded ? h('p', { class: 'forwarded', title: t('forwarded_claim') }, t('forwarded_from', { name: m.forwarded.from })) : null,
    m.file ? fileBlock(c, m) : null,
    m.poll ? pollBlock(c, m) : null,
    m.text && !m.poll ? h('p', { class: 'text', dir: 'auto' }, m.text) : null,
    h('span', { class: 'meta' },
      h('time', { datetime: m.sent_at }, fmtTime(m.sent_at)),
      ' ',
      h('span', { class: 'status', 'data-status': status, title: t('status_' + status), 'aria-label': t('status_' + status) },
        m.outgoing ? statusMark(status) : ''),
    ),
    g && !c.readOnly ? h('button', { type: 'button', class: 'link small', onclick: () => { state.replyTo = m; renderComposerReply(); $('#composer-text')?.focus(); } }, t('reply')) : null,
    g && canPin(c) ? h('button', { type: 'button', class: 'link small', onclick: () => pin(c, m) }, isPinned(c, m) ? t('unpin') : t('pin')) : null,
    g && (m.text || m.poll) ? h('button', { type: 'button', class: 'link small', onclick: () => openForward(c, m) }, t('forward')) : null,
  );
}

// openForward asks where to forward a group message: a contact or
// another group this account is in.
function openForward(c, m) {
  const err = h('p', { class: 'error', role: 'alert' });
  const groups = [...state.groups.values()].filter((g) => ['member', 'admin', 'owner'].includes(g.role) && !(g.channel && g.role === 'member'));
  const pick = h('select', { id: 'forward-to' },
    [...state.contacts.values()].map((ct) => h('option', { value: ct.account_id }, ct.name || ct.display_name || short(ct.account_id))),
    groups.map((g) => h('option', { value: g.group_id }, g.title)));
  const d = dialog(t('forward'),
    h('form', { class: 'stack', onsubmit: async (e) => {
      e.preventDefault();
      err.textContent = '';
      try {
        await api.post(`/v1/groups/${encodeURIComponent(c.id)}/messages/${encodeURIComponent(m.id)}/forward`, { to: pick.value });
        d.close();
        toast(t('forwarded'));
      } catch (e2) { err.textContent = e2.message; }
    } },
    h('label', { for: 'forward-to' }, t('forward_to')), pick, err,
    h('button', { type: 'submit' }, t('forward'))));
}

const groupOf = (c) => state.groups.get(c.id);
const canPin = (c) => ['owner', 'admin'].includes(groupOf(c)?.role);
const isPinned = (c, m) => (groupOf(c)?.pinned || []).includes(m.id);

async function pin(c, m) {
  try {
    const g = isPinned(c, m)
      ? await api.del(`/v1/groups/${encodeURIComponent(c.id)}/pins/${encodeURIComponent(m.id)}`)
      : await api.post(`/v1/groups/${encodeURIComponent(c.id)}/pins`, { message: m.id });
    if (g) state.groups.set(g.group_id, g);
    else await refreshGroups();
    renderChat();
  } catch (e) { toast(e.message); }
}

function fileBlock(c, m) {
  const f = c.files.get(m.id);
  const thumb = f && f.thumb ? h('img', { class: 'thumb', src: 'data:image/jpeg;base64,' + f.thumb, alt: m.file.name, width: f.width || null, height: f.height || null }) : null;
  const state_ = f ? f.state : m.outgoing ? 'uploading' : 'available';
  const progress = f && f.size && f.done < f.size && (state_ === 'uploading' || state_ === 'downloading')
    ? h('progress', { max: String(f.size), value: String(f.done), 'aria-label': t('progress', { name: m.file.name }) }) : null;
  return h('div', { class: 'file' },
    thumb,
    h('span', { class: 'file-name' }, m.file.kind === 'photo' ? null : icon('attach', 14), h('bdi', {}, m.file.name), ' · ', fmtSize(m.file.size)),
    progress,
    !m.outgoing && state_ !== 'failed' && state_ !== 'deleted' ? h('button', { type: 'button', class: 'link small', onclick: () => save(c, m) }, t('save')) : null,
  );
}

const fmtSize = (n) => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KB` : n < 1 << 30 ? `${(n / (1 << 20)).toFixed(1)} MB` : `${(n / (1 << 30)).toFixed(2)} GB`);

function pollBlock(c, m) {
  const p = m.poll;
  const total = (p.options || []).reduce((a, o) => a + (o.votes || 0), 0);
  return h('fieldset', { class: 'poll' },
    h('legend', {}, icon('poll', 14), ' ', p.question || m.text, p.closed ? ' · ' + t('poll_closed') : ''),
    (p.options || []).map((o, i) => h('div', { class: 'poll-opt' },
      h('button', { type: 'button', disabled: p.closed || false, 'aria-pressed': (p.my_votes || []).includes(i) ? 'true' : 'false',
        onclick: () => vote(c, m, i) }, o.text),
      h('span', { class: 'sub' }, ' ', tn('votes', o.votes || 0)),
      total ? h('meter', { min: '0', max: String(total), value: String(o.votes || 0), 'aria-label': o.text }) : null,
    )),
  );
}

async function vote(c, m, i) {
  try {
    const p = await api.post(`/v1/groups/${encodeURIComponent(c.id)}/polls/${encodeURIComponent(m.id)}/votes`, { options: [i] });
    m.poll = p;
    renderChat();
  } catch (e) { toast(e.message); }
}

// save hands a received file to the browser (fetching it to the daemon
// first if need be) as a download.
async function save(c, m) {
  try {
    const url = await api.blobURL(`/v1/files/${encodeURIComponent(m.id)}/content`);
    const a = h('a', { href: url, download: m.file.name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    await loadFiles(c).catch(() => {});
    if (c.key === state.current) renderMessages(c, $('#messages'));
  } catch (e) { toast(e.message); }
}


// ---------- composer ----------

function composer(c, g) {
  const readOnly = g && g.channel && g.role !== 'owner' && g.role !== 'admin';
  c.readOnly = readOnly;
  if (readOnly) return h('div', { class: 'composer readonly' }, h('p', {}, t('channel_readonly')));
  const text = h('textarea', { id: 'composer-text', rows: '1', 'aria-label': t('message'), placeholder: t('message_placeholder'), dir: 'auto',
    onkeydown: (e) => { if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); } } });
  const file = h('input', { type: 'file', id: 'attach', class: 'visually-hidden', multiple: true,
    onchange: (e) => { sendFiles(c, e.target.files); e.target.value = ''; } });
  const form = h('form', { class: 'composer', onsubmit: (e) => { e.preventDefault(); send(c, text); } },
    h('div', { id: 'reply-bar' }),
    h('label', { for: 'attach', class: 'icon attach', title: t('attach') }, icon('attach'), h('span', { class: 'visually-hidden' }, t('attach'))),
    file,
    emojiPicker(text),
    text,
    h('button', { type: 'submit', class: 'send' }, t('send')),
    h('div', { id: 'uploads', class: 'uploads' }),
  );
  setTimeout(renderComposerReply);
  return form;
}

const EMOJI = ['😀', '😂', '😍', '👍', '🙏', '🎉', '❤️', '🔥', '😢', '😮', '🤔', '👋'];

function emojiPicker(text) {
  const panel = h('div', { class: 'emoji-panel', hidden: true, role: 'group', 'aria-label': t('emoji') },
    EMOJI.map((e) => h('button', { type: 'button', class: 'icon', 'aria-label': e, onclick: () => {
      const at = text.selectionStart ?? text.value.length;
      text.value = text.value.slice(0, at) + e + text.value.slice(text.selectionEnd ?? at);
      panel.hidden = true;
      text.focus();
    } }, e)));
  return h('span', { class: 'emoji' },
    h('button', { type: 'button', class: 'icon', 'aria-label': t('emoji'), 'aria-expanded': 'false', onclick: (e) => {
      panel.hidden = !panel.hidden;
      e.currentTarget.setAttribute('aria-expanded', String(!panel.hidden));
    } }, icon('emoji')),
    panel);
}

function renderComposerReply() {
  const bar = $('#reply-bar');
  if (!bar) return;
  clear(bar);
  const m = state.replyTo;
  if (m) bar.append(h('div', { class: 'reply-bar' }, t('replying_to', { name: m.from_name || short(m.from) }), ': ', previewOf(m),
    h('button', { type: 'button', class: 'link small', onclick: () => { state.replyTo = null; renderComposerReply(); } }, t('cancel'))));
}

async function send(c, textEl) {
  const text = textEl.value.trim();
  if (!text) return;
  textEl.value = '';
  try {
    if (c.kind === 'direct') {
      const m = await api.post('/v1/messages', { contact: c.id, text });
      upsert(c, m);
    } else {
      const body = { text };
      if (state.replyTo) body.reply_to = state.replyTo.id;
      state.replyTo = null;
      const m = await api.post(`/v1/groups/${encodeURIComponent(c.id)}/messages`, body);
      upsert(c, m);
    }
    renderAfterChange(c);
  } catch (e) {
    textEl.value = text;
    toast(e.message);
  }
}

async function sendFiles(c, files) {
  for (const f of files) {
    const row = h('div', { class: 'upload' }, f.name, ' ', h('progress', { max: '1', value: '0', 'aria-label': t('progress', { name: f.name }) }));
    $('#uploads')?.append(row);
    try {
      const m = await api.upload(c.id, f, { onProgress: (n, total) => { const p = row.querySelector('progress'); p.max = total; p.value = n; } });
      await loadFiles(c).catch(() => {});
      upsert(c, m);
      renderAfterChange(c);
    } catch (e) {
      toast(t('upload_failed', { name: f.name, error: e.message }));
    } finally {
      row.remove();
    }
  }
}

// ---------- live updates ----------

// A message's status only moves forward: an answer or event that reports
// an older state (the send's own answer, arriving after the delivery
// receipt's event) does not take a tick back.
const RANK = { pending: 0, sent: 1, delivered: 2, read: 3, failed: 4, received: 0, seen: 1 };

function upsert(c, m) {
  if (!c.messages) c.messages = [];
  const i = c.messages.findIndex((x) => x.id === m.id);
  if (i >= 0) {
    const old = c.messages[i];
    // Status events may carry less than the message (no file details):
    // what they omit is kept.
    m = { ...old, ...m };
    if ((RANK[old.status] ?? 0) > (RANK[m.status] ?? 0)) m.status = old.status;
    c.messages[i] = m;
    return false;
  }
  c.messages.push(m);
  c.messages.sort((a, b) => (a.sent_at < b.sent_at ? -1 : a.sent_at > b.sent_at ? 1 : (a.seq || 0) - (b.seq || 0)));
  return true;
}

function renderAfterChange(c) {
  renderChatList();
  if (c.key !== state.current) return;
  const sc = $('#scroller');
  const atBottom = sc && sc.scrollHeight - sc.scrollTop - sc.clientHeight < 80;
  renderMessages(c, $('#messages'));
  if (sc && atBottom) sc.scrollTop = sc.scrollHeight;
  markSeen(c);
}

async function onEvent(ev) {
  switch (ev.type) {
    case 'group_call':
    case 'group_call_offer': {
      groupCalls.onEvent(ev);
      const gc = ev.group_call;
      if (ev.type === 'group_call' && gc && state.groups.has(gc.group)) {
        // The chat head offers to join a call that runs in the group.
        const g = state.groups.get(gc.group);
        const running = gc.state === 'active' || gc.state === 'joined';
        if (!!g.call_id !== running) {
          g.call_id = running ? gc.id : '';
          if (state.current === 'g:' + gc.group) renderChat();
        }
      }
      break;
    }
    case 'call':
    case 'call_signal':
      await calls.onEvent(ev);
      if (ev.type === 'call' && ev.call && ev.call.ended_at) {
        // The call's entry in the chat's history (kept by the daemon).
        const c = state.chats.get('c:' + ev.call.peer);
        if (c && c.messages) { await loadChat(c).catch(() => {}); renderAfterChange(c); }
      }
      break;
    case 'message':
    case 'status': {
      const m = ev.message;
      const c = chatOf('c:' + m.chat);
      if (!c.messages) await loadChat(c).catch(() => {});
      if (!m.outgoing && !state.contacts.has(m.chat) && !c.request) c.request = { account_id: m.chat };
      if (!c.fromName && m.from_name) c.fromName = m.from_name;
      const isNew = upsert(c, m);
      if (m.file && !c.files.has(m.id)) await loadFiles(c).catch(() => {});
      if (isNew && !m.outgoing) notify(c, m);
      renderAfterChange(c);
      break;
    }
    case 'group_message': {
      const m = ev.group_message;
      if (!state.groups.has(m.group)) await refreshGroups();
      const c = chatOf('g:' + m.group);
      if (!c.messages) await loadChat(c).catch(() => {});
      const isNew = upsert(c, m);
      if (m.file && !c.files.has(m.id)) await loadFiles(c).catch(() => {});
      if (isNew && !m.outgoing) notify(c, m);
      renderAfterChange(c);
      break;
    }
    case 'group': {
      // A group's state changed (members, pins, title; joined or left).
      let g = null;
      try { g = await api.get(`/v1/groups/${encodeURIComponent(ev.group_id)}`); } catch (e) { if (!(e instanceof APIError) || e.status !== 404) throw e; }
      if (!g) break;
      state.groups.set(g.group_id, g);
      const c = chatOf('g:' + g.group_id);
      if (!c.messages) await loadChat(c).catch(() => {});
      renderChatList();
      if (c.key === state.current) renderChat();
      break;
    }
    case 'group_gone': {
      // An invitation declined (here or in another browser).
      state.groups.delete(ev.group_id);
      state.chats.delete('g:' + ev.group_id);
      if (state.current === 'g:' + ev.group_id) { state.current = null; renderChat(); }
      renderChatList();
      break;
    }
    case 'prefs':
      // Another browser pinned, archived or read something.
      await shared.load();
      renderChatList();
      break;
    case 'group_poll': {
      const m = ev.group_message;
      if (m) { const c = chatOf('g:' + m.group); upsert(c, m); renderAfterChange(c); }
      break;
    }
    case 'file': {
      const f = ev.file;
      for (const c of state.chats.values()) {
        if (c.messages && c.messages.some((m) => m.id === f.id)) {
          c.files.set(f.id, { ...(c.files.get(f.id) || {}), ...f, thumb: f.thumb || c.files.get(f.id)?.thumb });
          if (c.key === state.current) renderMessages(c, $('#messages'));
        }
      }
      break;
    }
    default:
      break;
  }
}

async function refreshGroups() {
  const groups = await api.get('/v1/groups');
  state.groups = new Map(groups.map((g) => [g.group_id, g]));
  for (const g of groups) chatOf('g:' + g.group_id);
}

function markSeen(c) {
  if (c.key !== state.current || document.hidden || !c.messages) return;
  if (c.kind === 'direct') {
    const ids = c.messages.filter((m) => !m.outgoing && m.status === 'received').map((m) => m.id);
    if (!ids.length) return;
    for (const m of c.messages) if (ids.includes(m.id)) m.status = 'seen';
    api.post(`/v1/chats/${encodeURIComponent(c.id)}/read`, { ids }).catch((e) => toast(e.message));
  } else {
    const last = c.messages[c.messages.length - 1];
    if (last && shared.get('seen.' + c.id, '') !== last.sent_at) shared.set('seen.' + c.id, last.sent_at);
  }
  renderChatList();
}

document.addEventListener('visibilitychange', () => {
  const c = state.current && state.chats.get(state.current);
  if (c) markSeen(c);
});

function notify(c, m) {
  if (!document.hidden && c.key === state.current) return;
  if (!prefs.get('notifications', false) || typeof Notification === 'undefined' || Notification.permission !== 'granted') return;
  const n = new Notification(chatName(c), { body: previewOf(m), tag: c.key });
  n.onclick = () => { window.focus(); openChat(c.key); };
}

// ---------- contacts ----------

async function acceptRequest(c) {
  try {
    const ct = await api.post(`/v1/requests/${encodeURIComponent(c.id)}/accept`, {});
    state.contacts.set(ct.account_id, ct);
    delete c.request;
    renderChatList(); renderChat();
  } catch (e) { toast(e.message); }
}

// answerInvitation joins a group this account was invited to, or
// declines the invitation (its chat goes).
async function answerInvitation(c, accept) {
  try {
    const path = `/v1/groups/${encodeURIComponent(c.id)}/${accept ? 'join' : 'decline'}`;
    if (accept) {
      const g = await api.post(path, {});
      state.groups.set(g.group_id, g);
      c.messages = null;
      await loadChat(c).catch(() => {});
    } else {
      await api.post(path, {});
      state.groups.delete(c.id);
      state.chats.delete(c.key);
      state.current = null;
    }
    renderChatList(); renderChat();
  } catch (e) { toast(e.message); }
}

async function ignoreRequest(c) {
  try {
    await api.post(`/v1/requests/${encodeURIComponent(c.id)}/ignore`, {});
    state.chats.delete(c.key);
    state.current = null;
    renderChatList(); renderChat();
  } catch (e) { toast(e.message); }
}

function dialog(title, ...body) {
  const d = h('dialog', { 'aria-label': title, class: 'dialog', onclose: () => d.remove() },
    h('header', { class: 'bar' }, h('h2', {}, title),
      h('button', { type: 'button', class: 'icon', 'aria-label': t('close'), onclick: () => d.close() }, '✕')),
    ...body);
  document.body.append(d);
  d.showModal();
  return d;
}

function openContacts() {
  const list = h('ul', { role: 'list', 'aria-label': t('contacts'), class: 'plain' });
  const renderList = () => {
    clear(list);
    for (const ct of state.contacts.values()) {
      const name = ct.name || ct.display_name || short(ct.account_id);
      list.append(h('li', { 'aria-label': name },
        h('span', { class: 'avatar', 'aria-hidden': 'true' }, initials(name)), ' ', name, ' ',
        h('span', { class: 'sub' }, short(ct.account_id)),
        h('button', { type: 'button', class: 'link small', onclick: async () => {
          const nn = prompt(t('rename_prompt'), ct.name || '');
          if (nn === null) return;
          try { const x = await api.post(`/v1/contacts/${encodeURIComponent(ct.account_id)}/rename`, { name: nn }); state.contacts.set(x.account_id, x); renderList(); renderChatList(); } catch (e) { toast(e.message); }
        } }, t('rename')),
        h('button', { type: 'button', class: 'link small danger', onclick: async () => {
          if (!confirm(t('remove_confirm', { name }))) return;
          try { await api.del(`/v1/contacts/${encodeURIComponent(ct.account_id)}`); state.contacts.delete(ct.account_id); renderList(); renderChatList(); } catch (e) { toast(e.message); }
        } }, t('remove')),
      ));
    }
  };
  renderList();
  const id = h('input', { id: 'add-id', required: true, autocomplete: 'off' });
  const name = h('input', { id: 'add-name', autocomplete: 'off' });
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'stack', onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = '';
    try {
      const v = id.value.trim();
      if (v.startsWith('peergram://join/') || v.startsWith('@')) {
        // An invite link or a public channel's name: join the group.
        const g = await api.post('/v1/join', { link: v });
        state.groups.set(g.group_id, g);
        const c = chatOf('g:' + g.group_id);
        await loadChat(c).catch(() => {});
        id.value = '';
        renderChatList();
        toast(t('joined', { title: g.title }));
        return;
      }
      const ct = await api.post('/v1/contacts', { account_id: v, name: name.value.trim() });
      state.contacts.set(ct.account_id, ct);
      const c = chatOf('c:' + ct.account_id);
      delete c.request;
      await loadChat(c).catch(() => {});
      id.value = ''; name.value = '';
      renderList(); renderChatList();
    } catch (e2) { err.textContent = e2.message; }
  } },
  h('label', { for: 'add-id' }, t('account_or_link')), id,
  h('label', { for: 'add-name' }, t('alias_optional')), name,
  err,
  h('button', { type: 'submit' }, t('add_contact')));
  const qr = h('img', { class: 'qr', alt: t('qr_alt'), width: '160', height: '160' });
  api.blobURL('/v1/identity/qr.png').then((u) => { qr.src = u; }, () => qr.remove());
  dialog(t('contacts'),
    h('section', { class: 'stack' },
      h('h3', {}, t('your_link')),
      h('p', { class: 'mono', id: 'my-link' }, state.me.link),
      qr,
      h('button', { type: 'button', onclick: () => navigator.clipboard?.writeText(state.me.link).then(() => toast(t('copied')), () => {}) }, t('copy_link'))),
    h('section', { class: 'stack' }, h('h3', {}, t('add_contact')), form),
    h('section', { class: 'stack' }, h('h3', {}, t('your_contacts')), list),
  );
}

// ---------- groups ----------

function openNewGroup() {
  const title = h('input', { id: 'group-title', required: true, autocomplete: 'off' });
  const channel = h('input', { type: 'checkbox', id: 'group-channel' });
  const members = [...state.contacts.values()].map((ct) => {
    const name = ct.name || ct.display_name || short(ct.account_id);
    return { ct, box: h('input', { type: 'checkbox', id: 'm-' + ct.account_id, value: ct.account_id }), name };
  });
  const err = h('p', { class: 'error', role: 'alert' });
  const d = dialog(t('new_group'), h('form', { class: 'stack', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const g = await api.post(channel.checked ? '/v1/channels' : '/v1/groups', { title: title.value.trim() });
      const picked = members.filter((m) => m.box.checked).map((m) => m.ct.account_id);
      const g2 = picked.length ? await api.post(`/v1/groups/${encodeURIComponent(g.group_id)}/members`, { members: picked }) : g;
      state.groups.set(g2.group_id, g2);
      const c = chatOf('g:' + g2.group_id);
      c.messages = [];
      d.close();
      openChat(c.key);
    } catch (e2) { err.textContent = e2.message; }
  } },
  h('label', { for: 'group-title' }, t('group_title')), title,
  h('div', { class: 'row' }, channel, h('label', { for: 'group-channel' }, t('is_channel'))),
  h('fieldset', {}, h('legend', {}, t('add_members')),
    members.length ? members.map((m) => h('div', { class: 'row' }, m.box, h('label', { for: m.box.id }, m.name))) : h('p', { class: 'sub' }, t('no_contacts'))),
  err,
  h('button', { type: 'submit' }, t('create'))));
}

async function openGroupInfo(id) {
  let g;
  try { g = await api.get(`/v1/groups/${encodeURIComponent(id)}`); } catch (e) { toast(e.message); return; }
  state.groups.set(id, g);
  const admin = g.role === 'owner' || g.role === 'admin';
  const err = h('p', { class: 'error', role: 'alert' });
  const act = (fn) => async () => { err.textContent = ''; try { await fn(); d.close(); openGroupInfo(id); renderChat(); } catch (e) { err.textContent = e.message; } };
  const memberItems = g.members.map((m) => {
    const ct = state.contacts.get(m.account_id);
    const name = m.account_id === state.me.account_id ? t('you') : (m.name || ct?.name || ct?.display_name || short(m.account_id));
    return h('li', { 'aria-label': name }, name, ' ', h('span', { class: 'sub' }, t('role_' + m.role)),
      admin && m.role !== 'owner' && m.account_id !== state.me.account_id ? [
        h('button', { type: 'button', class: 'link small', onclick: act(() => api.call('PUT', `/v1/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(m.account_id)}/role`, { role: m.role === 'admin' ? 'member' : 'admin' })) },
          m.role === 'admin' ? t('demote') : t('promote')),
        h('button', { type: 'button', class: 'link small danger', onclick: act(() => api.del(`/v1/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(m.account_id)}`)) }, t('remove')),
      ] : null);
  });
  const addable = [...state.contacts.values()].filter((ct) => !g.members.some((m) => m.account_id === ct.account_id));
  const pick = h('select', { id: 'add-member' }, addable.map((ct) => h('option', { value: ct.account_id }, ct.name || ct.display_name || short(ct.account_id))));
  const invite = h('p', { class: 'mono', id: 'invite-link' });
  const q = h('input', { id: 'poll-q' });
  const opts = h('textarea', { id: 'poll-opts', rows: '3' });
  const newTitle = h('input', { id: 'info-title', value: g.title, required: true, maxlength: '128', autocomplete: 'off' });
  const newDescr = h('textarea', { id: 'info-descr', rows: '3', maxlength: '700' }, g.description || '');
  const photo = h('img', { class: 'group-photo', id: 'group-photo', alt: t('group_photo'), hidden: true });
  if (g.photo) {
    api.blobURL(`/v1/groups/${encodeURIComponent(id)}/photo`).then((u) => { photo.src = u; photo.hidden = false; }).catch(() => {});
  }
  const photoFile = h('input', { type: 'file', id: 'photo-file', accept: 'image/*' });
  const d = dialog(g.title,
    photo,
    h('p', { class: 'sub' }, g.channel ? t('channel') : t('group'), ' · ', t('role_' + g.role)),
    g.description ? h('p', { class: 'group-description' }, g.description) : null,
    admin ? h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); if (photoFile.files[0]) act(() => api.putBytes(`/v1/groups/${encodeURIComponent(id)}/photo`, photoFile.files[0]))(); } },
      h('label', { for: 'photo-file' }, t('group_photo')), photoFile,
      h('button', { type: 'submit' }, t('set_photo')),
      g.photo ? h('button', { type: 'button', class: 'link danger', onclick: act(() => api.del(`/v1/groups/${encodeURIComponent(id)}/photo`)) }, t('remove_photo')) : null) : null,
    admin ? h('form', { class: 'stack', onsubmit: (e) => { e.preventDefault(); act(() => api.post(`/v1/groups/${encodeURIComponent(id)}/info`, { title: newTitle.value.trim(), description: newDescr.value.trim() }))(); } },
      h('h3', {}, t('edit_group_info')), h('label', { for: 'info-title' }, t('group_title')), newTitle,
      h('label', { for: 'info-descr' }, t('group_description')), newDescr,
      h('button', { type: 'submit' }, t('save'))) : null,
    h('section', { class: 'stack' }, h('h3', {}, tn('members', g.members.length)), h('ul', { role: 'list', 'aria-label': t('group_members'), class: 'plain' }, memberItems)),
    admin && addable.length ? h('section', { class: 'row' }, h('label', { for: 'add-member' }, t('add_member')), pick,
      h('button', { type: 'button', onclick: act(() => api.post(`/v1/groups/${encodeURIComponent(id)}/members`, { members: [pick.value] })) }, t('add'))) : null,
    admin ? h('section', { class: 'stack' }, h('h3', {}, t('invite_link')), invite,
      h('button', { type: 'button', onclick: async () => { try { const inv = await api.post(`/v1/groups/${encodeURIComponent(id)}/invites`, {}); invite.textContent = inv.link; } catch (e) { err.textContent = e.message; } } }, t('create_invite'))) : null,
    !g.channel || admin ? h('form', { class: 'stack', onsubmit: (e) => { e.preventDefault(); act(() => api.post(`/v1/groups/${encodeURIComponent(id)}/polls`, { question: q.value.trim(), options: opts.value.split('\n').map((s) => s.trim()).filter(Boolean) }))(); } },
      h('h3', {}, t('new_poll')), h('label', { for: 'poll-q' }, t('poll_question')), q, h('label', { for: 'poll-opts' }, t('poll_options')), opts,
      h('button', { type: 'submit' }, t('create_poll'))) : null,
    err,
    g.role !== 'owner' ? h('button', { type: 'button', class: 'danger', onclick: act(() => api.post(`/v1/groups/${encodeURIComponent(id)}/leave`, {})) }, t('leave_group')) : null,
  );
}

// ---------- settings ----------

function applyTheme(theme) {
  const dark = theme === 'dark' || (theme === 'system' && matchMedia('(prefers-color-scheme: dark)').matches);
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
}

function openSettings() {
  const theme = h('select', { id: 'set-theme', onchange: (e) => { prefs.set('theme', e.target.value); applyTheme(e.target.value); } },
    ['system', 'light', 'dark'].map((v) => h('option', { value: v, selected: prefs.get('theme', 'system') === v }, t('theme_' + v))));
  const lang = h('select', { id: 'set-lang', onchange: async (e) => {
    prefs.set('lang', e.target.value);
    await setLanguage(e.target.value);
    d.close();
    renderApp();
    openSettings();
  } }, Object.entries(LANGUAGES).map(([k, v]) => h('option', { value: k, selected: language() === k }, v)));
  const notif = h('input', { type: 'checkbox', id: 'set-notif', checked: prefs.get('notifications', false), onchange: async (e) => {
    if (e.target.checked && typeof Notification !== 'undefined' && Notification.permission !== 'granted') {
      const p = await Notification.requestPermission();
      if (p !== 'granted') { e.target.checked = false; toast(t('notifications_denied')); }
    }
    prefs.set('notifications', e.target.checked);
  } });
  const d = dialog(t('settings'),
    h('section', { class: 'stack' }, h('h3', {}, t('profile')),
      h('p', {}, t('display_name'), ': ', h('strong', {}, state.me.name)),
      h('p', { class: 'sub' }, t('account_id'), ': ', h('span', { class: 'mono' }, state.me.account_id))),
    h('section', { class: 'stack' },
      h('label', { for: 'set-theme' }, t('theme')), theme,
      h('label', { for: 'set-lang' }, t('language')), lang,
      h('div', { class: 'row' }, notif, h('label', { for: 'set-notif' }, t('desktop_notifications')))),
    h('button', { type: 'button', class: 'danger', onclick: async () => { await api.post('/v1/web/logout').catch(() => {}); localStorage.removeItem('peergram.csrf'); location.reload(); } }, t('log_out')),
  );
}

// ---------- misc ----------

function toast(msg) {
  const el = $('#toasts');
  if (!el) return;
  const item = h('div', { class: 'toast' }, msg);
  el.append(item);
  setTimeout(() => item.remove(), 6000);
}

function renderLoggedOut() {
  const root = clear($('#root'));
  root.removeAttribute('aria-busy');
  root.append(h('main', { class: 'login' },
    h('h1', {}, t('app_name')),
    h('p', {}, t('logged_out')),
    h('pre', {}, 'peergram open --home DIR')));
}

async function main() {
  applyTheme(prefs.get('theme', 'system'));
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => applyTheme(prefs.get('theme', 'system')));
  await setLanguage(pickLanguage(prefs.get('lang', ''), navigator.languages));
  if (!(await api.login())) { renderLoggedOut(); return; }
  const ctl = new AbortController();
  // Subscribe first, so that nothing that happens while the chats load is
  // missed; events that arrive before the first render only update state.
  let ready = false;
  const queue = [];
  api.events((ev) => (ready ? onEvent(ev) : queue.push(ev)), ctl.signal, (online, loggedOut) => {
    state.online = online;
    renderConn();
    if (loggedOut) renderLoggedOut();
  });
  await Promise.all([loadAll(), shared.load()]);
  renderApp();
  await calls.restore();
  await groupCalls.restore();
  ready = true;
  for (const ev of queue) await onEvent(ev);
  window.addEventListener('pagehide', () => ctl.abort());
}

main().catch((e) => {
  const root = clear($('#root'));
  root.append(h('p', { class: 'error', role: 'alert' }, e instanceof APIError ? e.message : String(e)));
});
