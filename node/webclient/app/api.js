// api.js — the page's only way to the daemon: its local API, with the
// browser session (HttpOnly cookie, set by the login link) and the
// session's CSRF token in a header on every call.

const CSRF_HEADER = 'X-Peergram-Csrf';

export class APIError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

export class API {
  constructor() { this.csrf = ''; }

  // login takes the session's CSRF token from the login redirect's
  // fragment (#csrf=…) into this origin's storage and clears it from the
  // address bar; later loads and other tabs read it from there. false
  // means no session (the user must run `peergram open`).
  async login() {
    const frag = new URLSearchParams(location.hash.slice(1));
    if (frag.get('csrf')) {
      localStorage.setItem('peergram.csrf', frag.get('csrf'));
      history.replaceState(null, '', location.pathname + location.search);
    }
    this.csrf = localStorage.getItem('peergram.csrf') || '';
    if (!this.csrf) return false;
    const r = await fetch('/v1/identity', { headers: { [CSRF_HEADER]: this.csrf }, credentials: 'same-origin' });
    if (r.status === 401) { localStorage.removeItem('peergram.csrf'); return false; }
    if (!r.ok) throw new APIError(r.status, await r.json().catch(() => null));
    return true;
  }

  async call(method, path, body) {
    const headers = { [CSRF_HEADER]: this.csrf };
    const init = { method, headers, credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    if (r.status === 204) return null;
    const data = await r.json().catch(() => null);
    if (!r.ok) throw new APIError(r.status, data);
    return data;
  }

  get(path) { return this.call('GET', path); }

  // blob fetches a binary answer (an image) as an object URL.
  async blobURL(path) {
    const r = await fetch(path, { headers: { [CSRF_HEADER]: this.csrf }, credentials: 'same-origin' });
    if (!r.ok) throw new APIError(r.status, await r.json().catch(() => null));
    return URL.createObjectURL(await r.blob());
  }
  // putBytes sends a file's bytes as the body (a group's photo).
  async putBytes(path, blob) {
    const r = await fetch(path, { method: 'PUT', body: blob, credentials: 'same-origin',
      headers: { [CSRF_HEADER]: this.csrf, 'Content-Type': 'application/octet-stream' } });
    const data = await r.json().catch(() => null);
    if (!r.ok) throw new APIError(r.status, data);
    return data;
  }
  post(path, body) { return this.call('POST', path, body === undefined ? {} : body); }
  del(path) { return this.call('DELETE', path); }

  // upload sends a file's bytes to a chat; onProgress(sent, total) while
  // the browser hands them over. XMLHttpRequest, because fetch reports no
  // upload progress.
  upload(chat, file, { caption = '', onProgress } = {}) {
    return new Promise((resolve, reject) => {
      const q = new URLSearchParams({ name: file.name || 'file' });
      if (caption) q.set('caption', caption);
      const xhr = new XMLHttpRequest();
      xhr.open('POST', `/v1/chats/${encodeURIComponent(chat)}/upload?${q}`);
      xhr.setRequestHeader(CSRF_HEADER, this.csrf);
      xhr.setRequestHeader('Content-Type', 'application/octet-stream');
      if (onProgress) xhr.upload.onprogress = (e) => onProgress(e.loaded, e.total);
      xhr.onload = () => {
        let data = null;
        try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        if (xhr.status === 201) resolve(data); else reject(new APIError(xhr.status, data));
      };
      xhr.onerror = () => reject(new APIError(0, { error: 'network error' }));
      xhr.send(file);
    });
  }

  // events reads the Server-Sent Events stream with fetch (EventSource
  // cannot send the CSRF header) and calls onEvent per event until
  // signal aborts. It reconnects after a lost connection.
  async events(onEvent, signal, onState) {
    while (!signal.aborted) {
      try {
        const r = await fetch('/v1/events', { headers: { [CSRF_HEADER]: this.csrf }, credentials: 'same-origin', signal });
        if (!r.ok) throw new APIError(r.status, null);
        onState && onState(true);
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            for (const line of block.split('\n')) {
              if (line.startsWith('data: ')) {
                try { onEvent(JSON.parse(line.slice(6))); } catch (e) { console.warn('event', e); }
              }
            }
          }
        }
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof APIError && e.status === 401) { onState && onState(false, true); return; }
      }
      onState && onState(false);
      await new Promise((res) => setTimeout(res, 1000));
    }
  }
}
