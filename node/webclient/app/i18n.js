// i18n.js — every string the client shows comes from a message catalogue
// (locales/LANG.json). The language is the one chosen in settings, else the
// browser's first supported one, else English. Arabic lays out right to left.

export const LANGUAGES = { en: 'English', de: 'Deutsch', ar: 'العربية' };
const RTL = new Set(['ar']);

let messages = {};
let fallback = {};
let current = 'en';

export function pickLanguage(stored, browser) {
  if (stored && LANGUAGES[stored]) return stored;
  for (const l of browser || []) {
    const base = String(l).toLowerCase().split('-')[0];
    if (LANGUAGES[base]) return base;
  }
  return 'en';
}

async function load(lang) {
  const r = await fetch(`/locales/${lang}.json`);
  if (!r.ok) throw new Error(`catalogue ${lang}: HTTP ${r.status}`);
  return r.json();
}

export async function setLanguage(lang) {
  if (!fallback.app_name) fallback = await load('en');
  messages = lang === 'en' ? fallback : await load(lang);
  current = lang;
  document.documentElement.lang = lang;
  document.documentElement.dir = RTL.has(lang) ? 'rtl' : 'ltr';
}

export function language() { return current; }

// t looks a key up and fills {name} placeholders.
export function t(key, vars) {
  let s = messages[key] ?? fallback[key] ?? key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  return s;
}

// plural picks key_one or key_other.
export function tn(key, n, vars) {
  return t(n === 1 ? `${key}_one` : `${key}_other`, { n, ...vars });
}
