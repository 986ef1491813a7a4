// rtc.js — what the call modules (calls.js, groupcalls.js) share about
// the browser's WebRTC.

import { t } from './i18n.js';

// GATHER_MS is how long an offer or answer waits for ICE candidates to
// carry them.
const GATHER_MS = 1000;

// waitGathered resolves once pc has gathered its candidates, or after
// GATHER_MS.
export function waitGathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === 'complete') { pc.removeEventListener('icegatheringstatechange', done); resolve(); } };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, GATHER_MS);
  });
}

// localMedia asks for the microphone (and the camera when video is set);
// without a camera the call goes on with the microphone, and toast says
// so.
export async function localMedia(video, toast) {
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video });
  } catch (e) {
    if (!video) throw e;
    toast(t('call_no_camera'));
    return navigator.mediaDevices.getUserMedia({ audio: true, video: false });
  }
}
