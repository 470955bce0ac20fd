// DOM helpers: every element is built here, content only ever as text.

export const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

export function button(label: string, onClick: () => void, attrs: Record<string, string> = {}): HTMLButtonElement {
  const b = el('button', { type: 'button', ...attrs }, label);
  b.addEventListener('click', onClick);
  return b;
}

/** Text with links made clickable: only http(s) URLs, as text nodes and
 * anchors built by the DOM, so nothing in the content is ever markup. */
export function linkified(text: string): Node[] {
  const out: Node[] = [];
  const re = /https?:\/\/[^\s<>"']+/g;
  let at = 0;
  for (const match of text.matchAll(re)) {
    out.push(document.createTextNode(text.slice(at, match.index)));
    const a = el('a', { href: match[0], rel: 'noopener noreferrer nofollow', target: '_blank' }, match[0]);
    out.push(a);
    at = (match.index ?? 0) + match[0].length;
  }
  out.push(document.createTextNode(text.slice(at)));
  return out;
}
