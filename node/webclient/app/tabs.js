// tabs.js — which of this browser's tabs runs a call. A page that loads
// ends the calls an earlier load ran (their media died with it), but not
// those another open tab of the same client runs: tabs of one origin ask
// each other on a BroadcastChannel before a call is ended.

const ASK_MS = 300;

export function initTabs() {
  const mine = new Set(); // call IDs whose media runs in this tab
  const ch = typeof BroadcastChannel === 'function' ? new BroadcastChannel('peergram-calls') : null;
  if (ch) {
    ch.onmessage = (e) => {
      const q = e.data && e.data.ask;
      if (Array.isArray(q)) {
        const have = q.filter((id) => mine.has(id));
        if (have.length) ch.postMessage({ have });
      }
    };
  }

  // elsewhere returns the IDs of ids that another tab says it runs.
  function elsewhere(ids) {
    if (!ch || !ids.length) return Promise.resolve(new Set());
    return new Promise((resolve) => {
      const got = new Set();
      const listen = (e) => { for (const id of (e.data && e.data.have) || []) if (ids.includes(id)) got.add(id); };
      ch.addEventListener('message', listen);
      ch.postMessage({ ask: ids });
      setTimeout(() => { ch.removeEventListener('message', listen); resolve(got); }, ASK_MS);
    });
  }

  return { own: (id) => mine.add(id), disown: (id) => mine.delete(id), elsewhere };
}
