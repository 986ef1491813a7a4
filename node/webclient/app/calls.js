// calls.js — 1:1 voice and video calls with the browser's own WebRTC.
//
// The daemon carries the call: its ID, ringing on the callee's devices,
// state, history, the verification code and every signal, inside the
// end-to-end session (calls/client.go). The browser makes the peer
// connection: getUserMedia for camera and microphone, getDisplayMedia for
// the screen, which replaces the camera on the video transceiver every
// call has, so sharing needs no renegotiation from this side. The peer's
// renegotiations (a headless node adding its screen) are answered here.

import { h, clear, $ } from './dom.js';
import { t } from './i18n.js';
import { icon } from './icons.js';
import { waitGathered, localMedia } from './rtc.js';

const ENDED = new Set(['ended', 'declined', 'busy', 'missed', 'failed']);

export function initCalls({ api, nameOf, toast, tabs }) {
  let cur = null; // the call on screen: {id, peer, dir, state, pc, local, camera, screen, cands, grantDue, info}


  function newPC() {
    const pc = new RTCPeerConnection({ iceServers: [] });
    pc.ontrack = (e) => {
      const v = $('#call-remote');
      if (!v) return;
      const stream = v.srcObject instanceof MediaStream ? v.srcObject : new MediaStream();
      if (!stream.getTracks().includes(e.track)) stream.addTrack(e.track);
      v.srcObject = stream;
      v.play().catch(() => {});
    };
    pc.onicecandidate = (e) => {
      if (!e.candidate || !cur) return;
      const cand = e.candidate.toJSON();
      if (cur.attached) signal({ type: 'candidate', candidate: cand });
      else cur.early.push(cand);
    };
    pc.onsignalingstatechange = () => {
      if (cur && cur.grantDue && pc.signalingState === 'stable') { cur.grantDue = false; signal({ type: 'grant' }); }
    };
    pc.onconnectionstatechange = () => {
      if (!cur || cur.pc !== pc) return;
      if (pc.connectionState === 'connected' && !cur.reported) {
        // The daemon ends a client call never reported connected.
        cur.reported = true;
        signal({ type: 'connected' });
      }
      if (pc.connectionState === 'failed') {
        toast(t('call_lost'));
        hangup();
        return;
      }
      render();
    };
    return pc;
  }

  let inflight = 0; // signals on their way to the daemon
  function signal(s) {
    if (!cur || !cur.attached) return;
    inflight++;
    api.post(`/v1/calls/${encodeURIComponent(cur.id)}/signal`, s)
      .catch((e) => { if (cur) console.warn('call signal', e.message); })
      .finally(() => { inflight--; });
  }


  function addTracks(pc, stream) {
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
    // Every call has a video transceiver both ways, so that a screen can
    // be shared (and the peer's camera received) without renegotiating.
    if (!stream.getVideoTracks().length && !pc.getTransceivers().some((tr) => tr.receiver.track.kind === 'video')) {
      pc.addTransceiver('video', { direction: 'sendrecv' });
    }
  }

  async function start(contact, video) {
    if (cur) { toast(t('call_busy')); return; }
    cur = { id: '', peer: contact, dir: 'outgoing', state: 'calling', early: [], cands: [], video };
    render();
    try {
      const me = cur;
      const pc = (cur.pc = newPC());
      const local = await localMedia(video, toast);
      if (cur !== me) { for (const tr of local.getTracks()) tr.stop(); return; } // hung up while asking for the camera
      cur.local = local;
      cur.camera = cur.local.getVideoTracks()[0] || null;
      addTracks(pc, cur.local);
      await pc.setLocalDescription(await pc.createOffer());
      await waitGathered(pc);
      const call = await api.post('/v1/calls', { contact, sdp: pc.localDescription.sdp, video_call: video });
      if (!cur) return; // hung up meanwhile
      cur.id = call.id;
      cur.info = call;
      cur.attached = true;
      tabs.own(call.id);
      for (const c of cur.early) if (!pc.localDescription.sdp.includes(c.candidate)) signal({ type: 'candidate', candidate: c });
      cur.early = [];
      render();
    } catch (e) {
      toast(t('call_failed', { error: e.message }));
      cleanup();
    }
  }

  async function answer(id) {
    if (!cur || cur.id !== id) return;
    try {
      const offer = await api.get(`/v1/calls/${encodeURIComponent(id)}/offer`);
      const me = cur;
      const pc = (cur.pc = newPC());
      tabs.own(id);
      await pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
      cur.remoteSet = true;
      for (const c of offer.candidates || []) await pc.addIceCandidate(c).catch(() => {});
      const local = await localMedia(offer.video, toast);
      if (cur !== me) { for (const tr of local.getTracks()) tr.stop(); pc.close(); return; } // the call ended meanwhile
      cur.local = local;
      cur.camera = cur.local.getVideoTracks()[0] || null;
      addTracks(pc, cur.local);
      await pc.setLocalDescription(await pc.createAnswer());
      await waitGathered(pc);
      cur.info = await api.post(`/v1/calls/${encodeURIComponent(id)}/answer`, { sdp: pc.localDescription.sdp });
      cur.state = cur.info.state;
      cur.attached = true;
      for (const c of cur.early) if (!pc.localDescription.sdp.includes(c.candidate)) signal({ type: 'candidate', candidate: c });
      cur.early = [];
      for (const c of cur.cands) await pc.addIceCandidate(c).catch(() => {});
      cur.cands = [];
      render();
    } catch (e) {
      toast(t('call_failed', { error: e.message }));
      api.post(`/v1/calls/${encodeURIComponent(id)}/hangup`, {}).catch(() => {});
      cleanup();
    }
  }

  async function hangup() {
    if (!cur) return;
    const { id, state, dir } = cur;
    cur.attached = false;
    if (id) {
      const action = state === 'ringing' && dir === 'incoming' ? 'decline' : 'hangup';
      await api.post(`/v1/calls/${encodeURIComponent(id)}/${encodeURIComponent(action)}`, {}).catch(() => {});
    }
    cleanup();
  }

  async function share() {
    if (!cur || !cur.pc) return;
    const sender = cur.pc.getTransceivers().find((tr) => tr.receiver.track.kind === 'video')?.sender;
    if (!sender) return;
    if (cur.screen) {
      cur.screen.stop();
      cur.screen = null;
      await sender.replaceTrack(cur.camera);
      render();
      return;
    }
    try {
      const s = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      cur.screen = s.getVideoTracks()[0];
      cur.screen.onended = () => { if (cur && cur.screen) share(); };
      await sender.replaceTrack(cur.screen);
      render();
    } catch (e) {
      toast(t('share_failed', { error: e.message }));
    }
  }

  function mute() {
    if (!cur || !cur.local) return;
    cur.muted = !cur.muted;
    for (const tr of cur.local.getAudioTracks()) tr.enabled = !cur.muted;
    render();
  }

  function cleanup() {
    if (!cur) return;
    if (cur.id) tabs.disown(cur.id);
    for (const tr of cur.local?.getTracks() || []) tr.stop();
    cur.screen?.stop();
    cur.pc?.close();
    cur = null;
    render();
  }

  async function onEvent(ev) {
    if (ev.type === 'call') {
      const c = ev.call;
      if (c.group) return;
      if (cur && cur.id === c.id) {
        if (cur.dir === 'incoming' && !cur.pc && c.state === 'accepted') {
          // Answered in another tab of this client: that tab runs it.
          cleanup();
          return;
        }
        cur.state = c.state;
        cur.info = c;
        if (ENDED.has(c.state)) {
          cur.attached = false; // nothing more goes to the daemon for it
          const shown = cur;
          render();
          setTimeout(() => { if (cur === shown) cleanup(); }, 1500);
          return;
        }
        render();
        return;
      }
      if (!cur && c.direction === 'incoming' && c.state === 'ringing') {
        cur = { id: c.id, peer: c.peer, dir: 'incoming', state: 'ringing', early: [], cands: [], video: c.video, info: c };
        render();
      }
      return;
    }
    if (ev.type === 'call_signal') {
      const s = ev.signal;
      if (!cur || s.call !== cur.id || !cur.pc) {
        if (cur && s.call === cur.id && s.type === 'candidate') cur.cands.push(s.candidate);
        return;
      }
      const pc = cur.pc;
      try {
        switch (s.type) {
          case 'answer':
            if (pc.signalingState === 'have-local-offer') {
              await pc.setRemoteDescription({ type: 'answer', sdp: s.sdp });
              cur.remoteSet = true;
              for (const c of cur.cands) await pc.addIceCandidate(c).catch(() => {});
              cur.cands = [];
            }
            break;
          case 'candidate':
            if (cur.remoteSet) await pc.addIceCandidate(s.candidate).catch(() => {});
            else cur.cands.push(s.candidate);
            break;
          case 'offer': // the peer renegotiates (adds or removes its screen)
            await pc.setRemoteDescription({ type: 'offer', sdp: s.sdp });
            await pc.setLocalDescription(await pc.createAnswer());
            signal({ type: 'answer', sdp: pc.localDescription.sdp });
            break;
          case 'renegotiate': // a polite peer asks to offer
            if (pc.signalingState === 'stable') signal({ type: 'grant' });
            else cur.grantDue = true;
            break;
          default:
            break;
        }
      } catch (e) {
        console.warn('call signal from peer', s.type, e.message);
      }
    }
  }

  function stateText(c) {
    if (c.state === 'accepted') {
      const ice = c.pc?.connectionState;
      return ice === 'connected' ? t('call_connected') : t('call_connecting');
    }
    return t('call_state_' + c.state);
  }

  function render() {
    let box = $('#call');
    if (!cur) { box?.remove(); return; }
    if (!box) {
      box = h('section', { id: 'call', class: 'call', role: 'dialog', 'aria-label': t('call') });
      document.body.append(box);
    }
    const keep = { remote: $('#call-remote')?.srcObject, };
    clear(box);
    const ringingIn = cur.dir === 'incoming' && cur.state === 'ringing';
    const code = cur.info?.verification;
    box.append(
      h('h2', {}, nameOf(cur.peer)),
      h('p', { class: 'call-state', role: 'status', 'data-state': cur.state }, stateText(cur)),
      code ? h('p', { class: 'verification', 'data-verification': code, 'aria-label': t('verification_code') + ': ' + code, title: t('verification_explain') }, code) : null,
      h('div', { class: 'call-videos' },
        h('video', { id: 'call-remote', autoplay: true, playsinline: true, 'aria-label': t('call_remote_video') }),
        h('video', { id: 'call-local', autoplay: true, playsinline: true, muted: true, 'aria-label': t('call_local_video') })),
      h('div', { class: 'call-buttons' },
        ringingIn ? h('button', { type: 'button', class: 'answer', onclick: () => answer(cur.id) }, t('answer')) : null,
        ringingIn ? h('button', { type: 'button', class: 'danger', onclick: hangup }, t('decline')) : null,
        !ringingIn && cur.state === 'accepted' ? h('button', { type: 'button', 'aria-pressed': cur.muted ? 'true' : 'false', onclick: mute }, cur.muted ? t('unmute') : t('mute')) : null,
        !ringingIn && cur.state === 'accepted' ? h('button', { type: 'button', 'aria-pressed': cur.screen ? 'true' : 'false', onclick: share }, cur.screen ? t('stop_sharing') : t('share_screen')) : null,
        !ringingIn && !ENDED.has(cur.state) ? h('button', { type: 'button', class: 'hangup danger', onclick: hangup }, icon('phone-off', 16), ' ', t('hang_up')) : null,
      ),
    );
    if (keep.remote) $('#call-remote').srcObject = keep.remote;
    const local = $('#call-local');
    if (cur.local) { local.srcObject = cur.local; local.muted = true; }
  }

  // stats sums the call's RTP packets in and out (the call window shows
  // them; the browser tests read them).
  async function stats() {
    if (!cur || !cur.pc) return { inbound: 0, outbound: 0, state: cur?.state || '' };
    let inbound = 0;
    let outbound = 0;
    let videoIn = 0; // inbound video streams that carry packets (a camera, a shared screen)
    (await cur.pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp') {
        inbound += r.packetsReceived || 0;
        if (r.kind === 'video' && r.packetsReceived > 0) videoIn++;
      }
      if (r.type === 'outbound-rtp') outbound += r.packetsSent || 0;
    });
    return { inbound, outbound, videoIn, inflight, signaling: cur.pc.signalingState, state: cur.state, connection: cur.pc.connectionState };
  }

  // restore ends the calls a previous load of the page ran: their media
  // died with it (a reload, a closed tab). A call ringing for this device
  // shows again.
  async function restore() {
    const list = await api.get('/v1/calls').catch(() => []);
    const live = (c) => c.client && ['calling', 'ringing', 'accepted'].includes(c.state);
    // Not those another open tab runs.
    const other = await tabs.elsewhere(list.filter(live).map((c) => c.id));
    for (const c of list) {
      if (live(c)) {
        if (!other.has(c.id)) await api.post(`/v1/calls/${encodeURIComponent(c.id)}/hangup`, {}).catch(() => {});
      } else if (!cur && c.direction === 'incoming' && c.state === 'ringing') {
        cur = { id: c.id, peer: c.peer, dir: 'incoming', state: 'ringing', early: [], cands: [], video: c.video, info: c };
        render();
      }
    }
  }

  return { start, onEvent, stats, restore };
}
