// groupcalls.js — group voice and video chats from the browser.
//
// The browser does not talk to the relay's SFU and never holds the call's
// keys: it has one peer connection, to its own daemon (the "bridge",
// calls/bridge.go). The daemon seals what the browser sends with SFrame
// before the SFU sees it, and opens what the other participants send;
// each participant's audio and video come down the bridge as a stream
// whose ID is that participant's device. Only the daemon offers on the
// bridge (at the join, and whenever a participant comes or goes); the
// page answers, one offer at a time.

import { h, clear, $ } from './dom.js';
import { t } from './i18n.js';
import { icon } from './icons.js';
import { waitGathered, localMedia } from './rtc.js';

const GONE = new Set(['left', 'failed']);

export function initGroupCalls({ api, groupName, accountName, callOf, toast, tabs }) {
  let cur = null; // {group, id, pc, local, muted, info, video, queue, reported, streams: Map(device → MediaStream)}

  const path = (group, what) => `/v1/groups/${encodeURIComponent(group)}/call${what ? '/' + what : ''}`;


  function signal(s) {
    if (!cur) return Promise.resolve();
    return api.post(path(cur.group, 'signal'), s).catch((e) => { if (cur) console.warn('group call signal', s.type, e.message); });
  }

  function newPC() {
    const pc = new RTCPeerConnection({ iceServers: [] });
    pc.ontrack = (e) => {
      if (!cur || cur.pc !== pc) return;
      const device = e.streams[0]?.id;
      if (!device) return;
      let s = cur.streams.get(device);
      if (!s) { s = new MediaStream(); cur.streams.set(device, s); }
      if (!s.getTracks().includes(e.track)) s.addTrack(e.track);
      e.track.onended = () => { s.removeTrack(e.track); render(); };
      render();
    };
    pc.onicecandidate = (e) => {
      if (e.candidate && cur && cur.pc === pc && cur.answered) signal({ type: 'candidate', candidate: e.candidate.toJSON() });
    };
    pc.onconnectionstatechange = () => {
      if (!cur || cur.pc !== pc) return;
      if (pc.connectionState === 'connected' && !cur.reported) {
        // The daemon ends a bridge never reported connected.
        cur.reported = true;
        signal({ type: 'connected' });
      }
      if (pc.connectionState === 'failed') {
        toast(t('group_call_lost'));
        leave();
        return;
      }
      render();
    };
    return pc;
  }

  // answer answers one of the daemon's offers; offers are answered in
  // the order they come (cur.queue).
  async function answer(offer) {
    const pc = cur.pc;
    await pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
    if (!cur.attached) {
      // The first offer: the microphone and the camera go on the daemon's
      // receiving transceivers, the first of each kind. The video one
      // sends even without a camera, so that a screen can be shared
      // later by replacing its track (only the daemon offers).
      cur.attached = true;
      for (const kind of ['audio', 'video']) {
        const tr = pc.getTransceivers().find((x) => x.receiver.track.kind === kind && x.mid !== null);
        if (!tr) continue;
        const track = cur.local.getTracks().find((x) => x.kind === kind);
        if (track) await tr.sender.replaceTrack(track);
        tr.direction = 'sendonly';
        if (kind === 'video') cur.videoSender = tr.sender;
      }
    }
    await pc.setLocalDescription(await pc.createAnswer());
    await waitGathered(pc);
    cur.answered = true;
    await api.post(path(cur.group, 'signal'), { type: 'answer', sdp: pc.localDescription.sdp, version: offer.version });
    cur.tracks = offer.tracks || [];
  }

  function enqueue(offer) {
    const me = cur;
    me.queue = me.queue.then(() => (cur === me ? answer(offer) : null)).catch((e) => {
      if (cur === me) console.warn('group call offer', offer.version, e.message);
    });
    return me.queue;
  }


  // open joins the group's call (or starts one when none runs), with the
  // camera when video is set.
  async function open(group, video) {
    if (cur) { toast(t('call_busy')); return; }
    cur = { group, id: '', video, muted: false, streams: new Map(), queue: Promise.resolve(), info: null, tracks: [] };
    render();
    const me = cur;
    try {
      const local = await localMedia(video, toast);
      if (cur !== me) { for (const tr of local.getTracks()) tr.stop(); return; }
      cur.local = local;
      const body = { client: true, video_call: true }; // a video track even without a camera: a screen may be shared
      // Join the call the group runs (as this node knows), else start one;
      // a call that ended meanwhile is started anew.
      let info = null;
      if (callOf(group)) {
        try { info = await api.post(path(group, 'join'), body); } catch (e) { if (e.status !== 404) throw e; }
      }
      if (!info) info = await api.post(path(group, 'start'), body);
      if (cur !== me) return;
      cur.id = info.id;
      cur.info = info;
      tabs.own(info.id);
      cur.pc = newPC();
      const offer = await api.get(path(group, 'offer'));
      await enqueue(offer);
      render();
    } catch (e) {
      if (cur === me) {
        toast(t('group_call_failed', { error: e.message }));
        if (me.id) api.post(path(group, 'leave'), {}).catch(() => {});
        cleanup();
      }
    }
  }

  async function leave() {
    if (!cur) return;
    const me = cur;
    const { group, id } = me;
    me.leaving = true;
    // Leave first: the daemon ends a call whose bridge the client closes.
    if (id) await api.post(path(group, 'leave'), {}).catch(() => {});
    if (cur === me) cleanup();
  }

  async function mute() {
    if (!cur || !cur.id) return;
    const muted = !cur.muted;
    try {
      cur.info = await api.post(path(cur.group, 'mute'), { muted });
      cur.muted = muted;
      for (const tr of cur.local?.getAudioTracks() || []) tr.enabled = !muted;
    } catch (e) {
      toast(e.message);
    }
    render();
  }

  // share shares the screen in place of the camera (or stops).
  async function share() {
    if (!cur || !cur.videoSender) return;
    const camera = cur.local?.getVideoTracks()[0] || null;
    if (cur.screen) {
      cur.screen.stop();
      cur.screen = null;
      await cur.videoSender.replaceTrack(camera);
      render();
      return;
    }
    try {
      const s = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      cur.screen = s.getVideoTracks()[0];
      cur.screen.onended = () => { if (cur && cur.screen) share(); };
      await cur.videoSender.replaceTrack(cur.screen);
      render();
    } catch (e) {
      toast(t('share_failed', { error: e.message }));
    }
  }

  function cleanup() {
    if (!cur) return;
    if (cur.id) tabs.disown(cur.id);
    cur.screen?.stop();
    for (const tr of cur.local?.getTracks() || []) tr.stop();
    cur.pc?.close();
    cur = null;
    render();
  }

  function onEvent(ev) {
    if (!cur) return;
    if (ev.type === 'group_call_offer') {
      const o = ev.bridge_offer;
      if (o && o.call === cur.id && cur.pc) enqueue(o);
      return;
    }
    if (ev.type === 'group_call') {
      const g = ev.group_call;
      if (!g || g.id !== cur.id || g.state === 'active') return;
      cur.info = g;
      if (GONE.has(g.state)) {
        if (g.state === 'failed') toast(t('group_call_failed', { error: g.reason || '' }));
        cleanup();
        return;
      }
      render();
    }
  }

  function render() {
    let box = $('#group-call');
    if (!cur) { box?.remove(); return; }
    if (!box) {
      box = h('section', { id: 'group-call', class: 'call group-call', role: 'region', 'aria-label': t('group_call') });
      document.body.append(box);
    }
    // Keep the media elements that play: re-rendering must not cut them.
    const players = new Map([...box.querySelectorAll('[data-device]')].map((el) => [el.dataset.device + el.tagName, el]));
    clear(box);
    const parts = cur.info?.participants || [];
    const state = cur.pc?.connectionState === 'connected' ? t('call_connected') : t('call_connecting');
    const media = h('div', { class: 'call-videos' });
    for (const [device, stream] of cur.streams) {
      const kind = stream.getVideoTracks().length ? 'VIDEO' : 'AUDIO';
      let el = players.get(device + kind);
      if (!el) {
        el = h(kind.toLowerCase(), { autoplay: true, playsinline: true, 'data-device': device, 'aria-label': t('group_call_media_of', { name: nameOf(device, parts) }) });
        el.srcObject = stream;
      }
      media.append(el);
      el.play?.().catch(() => {});
    }
    box.append(
      h('h2', {}, groupName(cur.group)),
      h('p', { class: 'call-state', role: 'status', 'data-state': cur.info?.state || 'joining' }, cur.id ? state : t('call_connecting')),
      h('ul', { role: 'list', 'aria-label': t('participants'), class: 'plain participants' },
        parts.map((p) => {
          const name = nameOf(p.device, parts);
          return h('li', { 'aria-label': name, 'data-device': p.device, 'data-speaking': p.speaking ? 'true' : 'false' },
            name, p.muted ? [' ', h('span', { class: 'sub' }, t('muted'))] : null, p.speaking ? [' ', h('span', { class: 'sub' }, t('speaking'))] : null);
        })),
      media,
      h('div', { class: 'call-buttons' },
        cur.id ? h('button', { type: 'button', 'aria-pressed': cur.muted ? 'true' : 'false', onclick: mute }, cur.muted ? t('unmute') : t('mute')) : null,
        cur.videoSender ? h('button', { type: 'button', 'aria-pressed': cur.screen ? 'true' : 'false', onclick: share }, cur.screen ? t('stop_sharing') : t('share_screen')) : null,
        h('button', { type: 'button', class: 'hangup danger', onclick: leave }, icon('phone-off', 16), ' ', t('leave_call')),
      ),
    );
  }

  function nameOf(device, parts) {
    const p = parts.find((x) => x.device === device);
    if (!p) return device.slice(0, 8);
    return accountName(p.account);
  }

  // stats: the bridge's RTP in and out, and per participant device the
  // packets received (the browser tests read them).
  async function stats() {
    if (!cur || !cur.pc) return { inbound: 0, outbound: 0, devices: {}, connection: '', joined: false };
    let inbound = 0;
    let outbound = 0;
    const devices = {};
    const videoFrames = {}; // per device: video frames the browser decoded
    for (const tr of cur.pc.getTransceivers()) {
      const device = [...cur.streams].find(([, s]) => s.getTracks().includes(tr.receiver.track))?.[0];
      (await tr.receiver.getStats()).forEach((r) => {
        if (r.type !== 'inbound-rtp') return;
        inbound += r.packetsReceived || 0;
        if (!device) return;
        devices[device] = (devices[device] || 0) + (r.packetsReceived || 0);
        if (r.kind === 'video') videoFrames[device] = (videoFrames[device] || 0) + (r.framesDecoded || 0);
      });
    }
    (await cur.pc.getStats()).forEach((r) => { if (r.type === 'outbound-rtp') outbound += r.packetsSent || 0; });
    return { inbound, outbound, devices, videoFrames, connection: cur.pc.connectionState, joined: cur.info?.state === 'joined', id: cur.id, muted: cur.muted, sharing: !!cur.screen };
  }

  // restore leaves the group calls a previous load of the page took part
  // in: their media died with it.
  async function restore() {
    const list = await api.get('/v1/group-calls').catch(() => []);
    const live = list.filter((g) => g.client && g.state === 'joined');
    const other = await tabs.elsewhere(live.map((g) => g.id)); // not those another open tab is in
    for (const g of live) {
      if (!other.has(g.id)) await api.post(path(g.group, 'leave'), {}).catch(() => {});
    }
  }

  const active = () => cur?.group || null;

  return { open, leave, onEvent, stats, restore, active };
}
