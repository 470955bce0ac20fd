// The web client: signing in, opening conversations, sending and changing
// messages, and what the server tells, wired to the page. Everything it
// says to the server goes through palaver.ts; rendering is view.ts.
import { Message, PalaverError, Target, User, keyOf, newClientMsgId, targetOf } from './palaver';
import { $, button, el } from './dom';
import {
  Conv, Pending, S, TOKEN_KEY, TYPING_RESEND_MS, TYPING_SHOW_MS, client, names, opened,
  summaries, summaryFor, typing,
  hooks,
} from './state';
import {
  findUser, renderAll, renderChat, renderContext, renderList, renderMembers, renderTyping,
  scrollToEnd,
} from './view';

hooks.changed = renderAll;

let lastTypingSent = 0;

let typingStop: number | undefined;

// ---- signing in -----------------------------------------------------------

function showSignIn(message = ''): void {
  client.forget();
  sessionStorage.removeItem(TOKEN_KEY);
  S.me = null;
  $('app').hidden = true;
  $('signin').hidden = false;
  $('banner').hidden = true;
  $('signin-error').textContent = message;
  $('username').focus();
}

async function signIn(register: boolean): Promise<void> {
  const username = $<HTMLInputElement>('username').value.trim();
  const password = $<HTMLInputElement>('password').value;
  try {
    const r = register ? await client.register(username, password) : await client.login(username, password);
    sessionStorage.setItem(TOKEN_KEY, r.token);
    await start(r.user);
  } catch (e) {
    $('signin-error').textContent = e instanceof Error ? e.message : String(e);
  }
}

async function start(user?: User): Promise<void> {
  S.me = user ?? (await client.me());
  names.set(S.me.id, S.me.username);
  $('signin').hidden = true;
  $('app').hidden = false;
  $('me').textContent = S.me.username;
  client.connect();
  await loadConversations();
}

// ---- conversations ------------------------------------------------------------

async function loadConversations(): Promise<void> {
  const list = await client.conversations();
  summaries.clear();
  for (const s of list) {
    const t: Target = { conversationType: s.conversation_type, receiverId: s.receiver_id };
    summaries.set(keyOf(t), s);
    if (s.username) names.set(s.receiver_id, s.username);
  }
  renderList();
}

// ---- opening a conversation ------------------------------------------------------

export async function open(t: Target): Promise<void> {
  const key = keyOf(t);
  let conv = opened.get(key);
  if (!conv) {
    conv = { target: t, key, messages: new Map(), pending: new Map(), hasMore: false, peerRead: 0, lastChange: 0 };
    opened.set(key, conv);
    const page = await client.history(t, { limit: 50 });
    for (const m of page.messages) conv.messages.set(m.seq, m);
    conv.hasMore = page.has_more;
    conv.lastChange = summaryFor(t).last_change;
  }
  S.current = conv;
  S.replyTo = S.editing = null;
  $('chat').hidden = false;
  $('app').classList.add('chat-open');
  $('members-panel').hidden = true;
  $('members-toggle').hidden = t.conversationType !== 'group';
  $('members-toggle').setAttribute('aria-expanded', 'false');
  if (t.conversationType === 'group') await loadGroup(conv);
  renderAll();
  scrollToEnd();
  markRead(conv);
  $('input').focus();
}

export async function loadGroup(conv: Conv): Promise<void> {
  try {
    conv.group = await client.group(conv.target.receiverId);
    summaryFor(conv.target).name = conv.group.name;
  } catch {
    conv.group = undefined; // left or deleted: its history stays readable
  }
}

function markRead(conv: Conv): void {
  const s = summaryFor(conv.target);
  const last = Math.max(0, ...conv.messages.keys());
  if (last > s.read_seq && document.visibilityState === 'visible' && client.connected) {
    s.read_seq = last;
    s.unread_count = 0;
    s.mention_count = 0;
    client.read(conv.target, last).catch(() => {});
    renderList();
  }
}

export async function loadEarlier(conv: Conv): Promise<void> {
  const first = Math.min(...conv.messages.keys());
  const list = $('messages');
  const before = list.scrollHeight - list.scrollTop;
  const page = await client.history(conv.target, { beforeSeq: first, limit: 50 });
  for (const m of page.messages) conv.messages.set(m.seq, m);
  conv.hasMore = page.has_more;
  renderChat();
  list.scrollTop = list.scrollHeight - before;
}

// ---- the conversation view ------------------------------------------------------------

export function startEdit(m: Message): void {
  S.editing = m;
  S.replyTo = null;
  const input = $<HTMLTextAreaElement>('input');
  input.value = m.content;
  renderContext();
  input.focus();
}

// ---- sending and changing ------------------------------------------------------------

async function submit(): Promise<void> {
  const conv = S.current;
  const input = $<HTMLTextAreaElement>('input');
  const content = input.value;
  if (!conv || !content.trim()) return;
  input.value = '';
  stopTyping(conv);
  if (S.editing) {
    const target = S.editing;
    S.editing = null;
    renderContext();
    try {
      const m = await client.edit(conv.target, target.seq, content);
      updateMessage(conv, m);
    } catch (e) {
      alertError(e);
    }
    return;
  }
  const p: Pending = {
    clientMsgId: newClientMsgId(), content, status: 'sending',
    replyToSeq: S.replyTo?.seq, mentions: mentionsIn(conv, content),
  };
  S.replyTo = null;
  conv.pending.set(p.clientMsgId, p);
  renderChat();
  scrollToEnd();
  await deliver(conv, p);
}

/** Sends (or re-sends, with the same clientMsgId) a pending message. */
export async function deliver(conv: Conv, p: Pending): Promise<void> {
  p.status = 'sending';
  p.error = undefined;
  if (S.current === conv) renderChat();
  try {
    const m = await client.send(conv.target, p.content, {
      clientMsgId: p.clientMsgId, replyToSeq: p.replyToSeq, mentions: p.mentions,
    });
    conv.pending.delete(p.clientMsgId);
    addMessage(m);
  } catch (e) {
    p.status = 'failed';
    p.error = e instanceof PalaverError && e.code !== 'unavailable' ? e.message : undefined;
    if (S.current === conv) renderChat();
  }
}

/** `@username` of a member in a group message names them. */
function mentionsIn(conv: Conv, content: string): number[] | undefined {
  if (!conv.group?.members) return undefined;
  const ids = conv.group.members
    .filter((mem) => mem.user_id !== S.me?.id && new RegExp(`@${escapeRe(names.get(mem.user_id) ?? '\u0000')}\\b`, 'i').test(content))
    .map((mem) => mem.user_id);
  return ids.length ? ids : undefined;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export async function react(conv: Conv, m: Message, emoji: string, on: boolean): Promise<void> {
  try {
    const r = await client.react(conv.target, m.seq, emoji, on);
    applyReaction(conv, r.seq, r.emoji, r.count, r.user_id === S.me?.id ? r.on : undefined, r.change_seq);
  } catch (e) {
    alertError(e);
  }
}

export async function remove(conv: Conv, m: Message): Promise<void> {
  if (!confirm('Delete this message for everyone?')) return;
  try {
    updateMessage(conv, await client.delete(conv.target, m.seq));
  } catch (e) {
    alertError(e);
  }
}

function alertError(e: unknown): void {
  $('typing').textContent = e instanceof Error ? e.message : String(e);
}

// ---- typing ------------------------------------------------------------------------

function typed(): void {
  const conv = S.current;
  if (!conv) return;
  const now = Date.now();
  if (now - lastTypingSent > TYPING_RESEND_MS) {
    lastTypingSent = now;
    client.typing(conv.target, true);
  }
  clearTimeout(typingStop);
  typingStop = window.setTimeout(() => stopTyping(conv), TYPING_RESEND_MS);
}

function stopTyping(conv: Conv): void {
  clearTimeout(typingStop);
  if (lastTypingSent) {
    lastTypingSent = 0;
    client.typing(conv.target, false);
  }
}

// ---- what the server tells -----------------------------------------------------------

function addMessage(m: Message): void {
  if (!S.me) return;
  const t = targetOf(m, S.me.id);
  const key = keyOf(t);
  // A conversation new to this client (a group someone added us to, a
  // first private message): the list is read again for its name.
  // So is a private one this client started, for the peer's presence.
  const unknown = !summaries.has(key)
    || (t.conversationType === 'private' && summaries.get(key)!.last_seq === 0);
  const s = summaryFor(t);
  const isNew = m.seq > s.last_seq;
  if (isNew) {
    s.last_seq = m.seq;
    s.last_message = m;
    if (m.sender_id === S.me.id) {
      s.read_seq = m.seq;
      s.unread_count = 0;
    } else {
      s.unread_count = Math.max(0, m.seq - s.read_seq);
      if (m.mentions?.includes(S.me.id)) s.mention_count += 1;
    }
  }
  typing.get(key)?.delete(m.sender_id);
  const conv = opened.get(key);
  if (conv) {
    conv.messages.set(m.seq, m);
    if (m.client_msg_id) conv.pending.delete(m.client_msg_id);
  }
  if (m.system) onSystem(m, t);
  if (conv && S.current === conv) markRead(conv);
  renderAll();
  if (unknown) void loadConversations().then(renderAll, () => {});
}

function onSystem(m: Message, t: Target): void {
  const s = m.system!;
  const conv = opened.get(keyOf(t));
  if (s.event === 'renamed' && s.name) summaryFor(t).name = s.name;
  const gone = s.event === 'group_deleted'
    || ((s.event === 'member_removed' || s.event === 'member_left') && s.user_id === S.me?.id);
  if (gone) {
    summaries.delete(keyOf(t));
    if (conv) conv.group = undefined;
  } else if (conv) {
    void loadGroup(conv).then(() => { renderAll(); if (!$('members-panel').hidden && S.current === conv) renderMembers(conv); });
  }
}

function updateMessage(conv: Conv, m: Message): void {
  const old = conv.messages.get(m.seq);
  // Live updates leave reactions out: keep what is known.
  conv.messages.set(m.seq, { ...m, reactions: m.deleted_at ? [] : m.reactions?.length ? m.reactions : old?.reactions });
  conv.lastChange = Math.max(conv.lastChange, m.change_seq ?? 0);
  const s = summaryFor(conv.target);
  if (s.last_message?.seq === m.seq) s.last_message = conv.messages.get(m.seq)!;
  renderAll();
}

function applyReaction(conv: Conv, seq: number, emoji: string, count: number, mine: boolean | undefined, changeSeq: number): void {
  const m = conv.messages.get(seq);
  if (!m) return;
  const list = [...(m.reactions ?? [])];
  const at = list.findIndex((r) => r.emoji === emoji);
  const me_ = mine ?? (at >= 0 ? list[at].me : false);
  if (count === 0) { if (at >= 0) list.splice(at, 1); } else if (at >= 0) list[at] = { emoji, count, me: me_ }; else list.push({ emoji, count, me: me_ });
  conv.messages.set(seq, { ...m, reactions: list });
  conv.lastChange = Math.max(conv.lastChange, changeSeq);
  if (S.current === conv) renderChat();
}

client.on('message', addMessage);

client.on('message_updated', (m) => {
  if (!S.me) return;
  const conv = opened.get(keyOf(targetOf(m, S.me.id)));
  if (conv) updateMessage(conv, m);
});

client.on('reaction', (r) => {
  const key = keyOf({ conversationType: r.conversation_type, receiverId: r.conversation_type === 'group' ? r.receiver_id : r.user_id === S.me?.id ? r.receiver_id : r.user_id });
  const conv = opened.get(key);
  if (conv) applyReaction(conv, r.seq, r.emoji, r.count, r.user_id === S.me?.id ? r.on : undefined, r.change_seq);
});

client.on('read', (r) => {
  if (!S.me) return;
  if (r.reader_id === S.me.id) {
    const s = summaries.get(keyOf({ conversationType: r.conversation_type, receiverId: r.receiver_id }));
    if (s && r.seq > s.read_seq) { s.read_seq = r.seq; s.unread_count = Math.max(0, s.last_seq - r.seq); s.mention_count = 0; renderList(); }
    return;
  }
  if (r.conversation_type === 'private') {
    const conv = opened.get(keyOf({ conversationType: 'private', receiverId: r.reader_id }));
    if (conv) { conv.peerRead = Math.max(conv.peerRead, r.seq); if (S.current === conv) renderChat(); }
  }
});

client.on('typing', (t) => {
  const key = keyOf({ conversationType: t.conversation_type, receiverId: t.conversation_type === 'group' ? t.receiver_id : t.sender_id });
  let who = typing.get(key);
  if (!who) typing.set(key, (who = new Map()));
  if (t.typing) who.set(t.sender_id, Date.now() + TYPING_SHOW_MS); else who.delete(t.sender_id);
  renderList();
  renderTyping();
  setTimeout(() => { renderList(); renderTyping(); }, TYPING_SHOW_MS + 50);
});

client.on('presence', (p) => {
  const s = summaries.get(keyOf({ conversationType: 'private', receiverId: p.user_id }));
  if (s) { s.online = p.online; s.last_seen = p.last_seen; renderAll(); }
});

client.on('offline', () => { $('banner').hidden = false; });

window.addEventListener('offline', () => { if (S.me) $('banner').hidden = false; });

client.on('online', () => { $('banner').hidden = true; void catchUp(); });

client.on('unauthorized', (reason?: string) => {
  if (!S.me) return;
  const why = reason?.replace(/^unauthorized: /, '');
  showSignIn(`Your session has ended${why ? ` (${why})` : ''}: please sign in again.`);
});

/** After a reconnect: the list again, and for every opened conversation
 * what was sent and changed meanwhile. Messages are keyed by seq, so
 * nothing shows twice. */
async function catchUp(): Promise<void> {
  if (!S.me) return;
  try {
    await loadConversations();
    for (const conv of opened.values()) {
      const last = Math.max(0, ...conv.messages.keys());
      for (const m of await client.catchUp(conv.target, last)) {
        conv.messages.set(m.seq, m);
        if (m.client_msg_id) conv.pending.delete(m.client_msg_id);
      }
      const s = summaries.get(conv.key);
      if (s && s.last_change > conv.lastChange) {
        for (const m of await client.changes(conv.target, conv.lastChange)) {
          if (conv.messages.has(m.seq)) conv.messages.set(m.seq, m);
        }
        conv.lastChange = s.last_change;
      }
      if (conv.target.conversationType === 'group') await loadGroup(conv);
      // Sends that failed while offline go again, with the same key.
      for (const p of conv.pending.values()) if (p.status === 'failed') void deliver(conv, p);
    }
    if (S.current) markRead(S.current);
    renderAll();
  } catch {
    // The next reconnect tries again.
  }
}

// ---- wiring ------------------------------------------------------------------------------

$('signin-form').addEventListener('submit', (e) => { e.preventDefault(); void signIn(false); });

$('register').addEventListener('click', () => void signIn(true));

function signedOut(): void {
  opened.clear();
  summaries.clear();
  S.current = null;
  $('chat').hidden = true;
  showSignIn();
}

// Signing out revokes the token on the server, so a copy of it is no use.
$('logout').addEventListener('click', () => { S.me = null; void client.logout().then(signedOut); });

$('logout-all').addEventListener('click', () => {
  if (!confirm('Sign out on every device?')) return;
  S.me = null;
  void client.logoutEverywhere().then(signedOut, (e) => alert(e instanceof Error ? e.message : String(e)));
});

$('back').addEventListener('click', () => { $('app').classList.remove('chat-open'); S.current = null; renderList(); });

$('members-toggle').addEventListener('click', () => {
  const panel = $('members-panel');
  panel.hidden = !panel.hidden;
  $('members-toggle').setAttribute('aria-expanded', String(!panel.hidden));
  if (!panel.hidden && S.current) renderMembers(S.current);
});

$('context-cancel').addEventListener('click', () => {
  if (S.editing) $<HTMLTextAreaElement>('input').value = '';
  S.replyTo = S.editing = null;
  renderContext();
});

$('composer').addEventListener('submit', (e) => { e.preventDefault(); void submit(); });

$('input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); void submit(); }
});

$('input').addEventListener('input', typed);

let searchTimer: number | undefined;

$('search').addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = window.setTimeout(async () => {
    const q = $<HTMLInputElement>('search').value.trim();
    const results = $('search-results');
    if (!q) { results.replaceChildren(); return; }
    const users = await client.searchUsers(q).catch(() => [] as User[]);
    results.replaceChildren(...users.filter((u) => u.id !== S.me?.id).map((u) => {
      names.set(u.id, u.username);
      return el('li', {}, button(u.username, () => {
        $<HTMLInputElement>('search').value = '';
        results.replaceChildren();
        const t: Target = { conversationType: 'private', receiverId: u.id };
        summaryFor(t).username = u.username;
        void open(t);
      }));
    }));
  }, 200);
});

$('new-group-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const err = $('group-error');
  err.textContent = '';
  try {
    const usernames = $<HTMLInputElement>('group-members').value.split(',').map((s) => s.trim()).filter(Boolean);
    const ids = [];
    for (const u of usernames) ids.push((await findUser(u)).id);
    const g = await client.createGroup($<HTMLInputElement>('group-name').value, ids);
    $<HTMLInputElement>('group-name').value = '';
    $<HTMLInputElement>('group-members').value = '';
    ($('new-group') as HTMLDetailsElement).open = false;
    const t: Target = { conversationType: 'group', receiverId: g.id };
    summaryFor(t).name = g.name;
    await open(t);
  } catch (error) {
    err.textContent = error instanceof Error ? error.message : String(error);
  }
});

document.addEventListener('visibilitychange', () => { if (S.current) markRead(S.current); });

if (client.token) {
  start().catch(() => showSignIn());
} else {
  showSignIn();
}
