// Rendering: the conversation list, the conversation, the members panel.
import { ConversationSummary, Message, Target, User, keyOf } from './palaver';
import { $, button, el, linkified } from './dom';
import {
  Conv, Pending, REACTION, S, SAME_GROUP_MS, client, describe, myRole, nameOf, names,
  summaries, summaryFor, titleOf, typingIn,
} from './state';
import { deliver, loadEarlier, loadGroup, open, react, remove, startEdit } from './app';

export function renderAll(): void {
  renderList();
  renderChat();
}

export function renderList(): void {
  const ul = $('conversations');
  const rows = [...summaries.entries()].sort(([, a], [, b]) => (b.last_message?.id ?? 0) - (a.last_message?.id ?? 0));
  ul.replaceChildren(...rows.map(([key, s]) => {
    const t: Target = { conversationType: s.conversation_type, receiverId: s.receiver_id };
    const name = el('span', { class: 'name' });
    if (s.conversation_type === 'private') {
      name.append(el('span', { class: `dot${s.online ? ' on' : ''}`, 'aria-label': s.online ? 'online' : 'offline' }));
    }
    name.append(titleOf(s, t));
    const badges = el('span');
    if (s.mention_count > 0) badges.append(el('span', { class: 'badge mention', 'aria-label': `${s.mention_count} mentions` }, '@'));
    if (s.unread_count > 0) badges.append(el('span', { class: 'badge', 'aria-label': `${s.unread_count} unread` }, String(s.unread_count)));
    const who = typingIn(key);
    const last = who.length
      ? el('span', { class: 'typing' }, 'typing…')
      : el('span', { class: 'last' }, preview(s.last_message));
    const b = el('button', { type: 'button', class: 'conv', 'data-key': key }, name, badges, last);
    if (S.current?.key === key) b.setAttribute('aria-current', 'true');
    b.addEventListener('click', () => void open(t));
    return el('li', {}, b);
  }));
}

export function preview(m: Message | null): string {
  if (!m) return '';
  if (m.system) return describe(m.system);
  if (m.deleted_at) return 'message deleted';
  const who = m.conversation_type === 'group' || m.sender_id === S.me?.id ? `${nameOf(m.sender_id)}: ` : '';
  return who + m.content;
}

export function renderChat(): void {
  const conv = S.current;
  if (!conv) return;
  const s = summaryFor(conv.target);
  $('chat-title').textContent = titleOf(s, conv.target);
  $('chat-status').textContent = statusLine(conv, s);
  const items: HTMLElement[] = [];
  if (conv.hasMore) items.push(el('li', { class: 'more' }, button('Load earlier messages', () => void loadEarlier(conv))));
  const sorted = [...conv.messages.values()].sort((a, b) => a.seq - b.seq);
  let prev: Message | null = null;
  let lastMineSeen: HTMLElement | null = null;
  for (const m of sorted) {
    const day = new Date(m.created_at).toDateString();
    if (!prev || new Date(prev.created_at).toDateString() !== day) {
      items.push(el('li', { class: 'day' }, dayLabel(m.created_at)));
      prev = null;
    }
    if (m.system) {
      items.push(el('li', { class: 'system', 'data-seq': String(m.seq) }, describe(m.system)));
      prev = null;
      continue;
    }
    const mine = m.sender_id === S.me?.id;
    if (!prev || prev.sender_id !== m.sender_id || Date.parse(m.created_at) - Date.parse(prev.created_at) > SAME_GROUP_MS) {
      if (!mine && conv.target.conversationType === 'group') items.push(el('li', { class: 'sender' }, nameOf(m.sender_id)));
    }
    const li = messageItem(conv, m, mine);
    items.push(li);
    if (mine && conv.target.conversationType === 'private' && m.seq <= conv.peerRead) lastMineSeen = li;
    prev = m;
  }
  if (lastMineSeen) {
    const at = items.indexOf(lastMineSeen);
    items.splice(at + 1, 0, el('li', { class: 'seen' }, 'Seen'));
  }
  for (const p of conv.pending.values()) items.push(pendingItem(conv, p));
  const list = $('messages');
  const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...items);
  if (atEnd) scrollToEnd();
  renderTyping();
  renderContext();
}

export function statusLine(conv: Conv, s: ConversationSummary): string {
  if (conv.target.conversationType === 'group') {
    if (!conv.group) return 'you are no longer a member';
    return `${conv.group.members?.length ?? 0} members`;
  }
  if (s.online) return 'online';
  if (s.last_seen) return `last seen ${new Date(s.last_seen).toLocaleString()}`;
  return '';
}

export function dayLabel(at: string): string {
  const d = new Date(at);
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return 'Today';
  return d.toLocaleDateString(undefined, { weekday: 'long', month: 'long', day: 'numeric' });
}

export function messageItem(conv: Conv, m: Message, mine: boolean): HTMLLIElement {
  const li = el('li', { class: `msg${mine ? ' mine' : ''}`, 'data-seq': String(m.seq) });
  if (m.reply_to) {
    const excerpt = m.reply_to.excerpt ?? 'message deleted';
    li.append(el('div', { class: 'quote' }, `↪ ${nameOf(m.reply_to.sender_id)}: ${excerpt}`));
  }
  if (m.deleted_at) {
    li.append(el('div', { class: 'text deleted' }, 'message deleted'));
  } else {
    li.append(el('div', { class: 'text' }, ...linkified(m.content)));
  }
  const time = new Date(m.created_at).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  const meta = el('div', { class: 'meta' }, el('time', { datetime: m.created_at }, time));
  if (m.edited_at && !m.deleted_at) meta.append('edited');
  if (mine) meta.append(el('span', { class: 'status' }, 'sent'));
  li.append(meta);
  if (m.reactions?.length) {
    li.append(el('div', { class: 'reactions' }, ...m.reactions.map((r) =>
      button(`${r.emoji} ${r.count}`, () => void react(conv, m, r.emoji, !r.me), {
        'aria-pressed': String(r.me), 'aria-label': `${r.emoji} ${r.count}, ${r.me ? 'remove yours' : 'add yours'}`,
      }))));
  }
  if (!m.deleted_at && conv.group !== undefined || (!m.deleted_at && conv.target.conversationType === 'private')) {
    const actions = el('div', { class: 'actions' });
    actions.append(button('Reply', () => { S.replyTo = m; S.editing = null; renderContext(); $('input').focus(); }));
    const mineReacted = m.reactions?.find((r) => r.emoji === REACTION)?.me ?? false;
    actions.append(button(REACTION, () => void react(conv, m, REACTION, !mineReacted), { 'aria-label': 'React with thumbs up' }));
    if (mine) {
      actions.append(button('Edit', () => startEdit(m)));
      actions.append(button('Delete', () => void remove(conv, m)));
    } else if (conv.group && myRole(conv) !== 'member') {
      actions.append(button('Delete', () => void remove(conv, m)));
    }
    li.append(actions);
  }
  return li;
}

export function pendingItem(conv: Conv, p: Pending): HTMLLIElement {
  const li = el('li', { class: 'msg mine pending', 'data-client-msg-id': p.clientMsgId });
  li.append(el('div', { class: 'text' }, ...linkified(p.content)));
  const meta = el('div', { class: 'meta' });
  if (p.status === 'sending') {
    meta.append(el('span', { class: 'status' }, 'sending…'));
  } else {
    meta.append(el('span', { class: 'status failed', role: 'alert' }, `failed${p.error ? `: ${p.error}` : ''}`));
    meta.append(button('Retry', () => void deliver(conv, p)));
  }
  li.append(meta);
  return li;
}

export function scrollToEnd(): void {
  const list = $('messages');
  list.scrollTop = list.scrollHeight;
}

export function renderContext(): void {
  const box = $('composer-context');
  if (S.editing) {
    box.hidden = false;
    $('context-text').textContent = 'Editing your message';
  } else if (S.replyTo) {
    box.hidden = false;
    $('context-text').textContent = `Replying to ${nameOf(S.replyTo.sender_id)}: ${S.replyTo.content.slice(0, 80)}`;
  } else {
    box.hidden = true;
  }
}

export function renderTyping(): void {
  if (!S.current) return;
  const who = typingIn(S.current.key);
  $('typing').textContent = who.length
    ? `${who.map(nameOf).join(', ')} ${who.length === 1 ? 'is' : 'are'} typing…`
    : '';
}

export function renderMembers(conv: Conv): void {
  const panel = $('members-panel');
  const g = conv.group;
  if (!g) { panel.replaceChildren(el('p', {}, 'You are no longer a member of this group.')); return; }
  const role = myRole(conv);
  const act = (f: () => Promise<unknown>) => async () => {
    try { await f(); await loadGroup(conv); renderAll(); renderMembers(conv); } catch (e) { error.textContent = e instanceof Error ? e.message : String(e); }
  };
  const error = el('p', { role: 'alert' });
  const rows = (g.members ?? []).map((m) => {
    const li = el('li', {}, `${nameOf(m.user_id)} (${m.role})`);
    if (m.user_id === S.me?.id) return li;
    if (role === 'owner') {
      li.append(m.role === 'admin'
        ? button('Make member', act(() => client.setRole(g.id, m.user_id, 'member')))
        : button('Make admin', act(() => client.setRole(g.id, m.user_id, 'admin'))));
      li.append(button('Make owner', act(() => client.handOver(g.id, m.user_id))));
    }
    if (role === 'owner' || (role === 'admin' && m.role === 'member')) {
      li.append(button('Remove', act(() => client.removeMember(g.id, m.user_id)), { 'aria-label': `Remove ${nameOf(m.user_id)}` }));
    }
    return li;
  });
  const children: Node[] = [el('ul', { 'aria-label': 'Members' }, ...rows)];
  if (role === 'owner' || role === 'admin') {
    const add = el('input', { id: 'add-member', placeholder: 'username', 'aria-label': 'Username to add' });
    children.push(el('div', { class: 'inline' }, add, button('Add member', act(async () => {
      const user = await findUser(add.value);
      await client.addMember(g.id, user.id);
    }))));
    const rename = el('input', { id: 'rename', value: g.name, 'aria-label': 'Group name' });
    children.push(el('div', { class: 'inline' }, rename, button('Rename', act(() => client.rename(g.id, rename.value)))));
  }
  children.push(el('div', { class: 'inline' },
    button('Leave group', act(() => client.removeMember(g.id, S.me!.id))),
    ...(role === 'owner' ? [button('Delete group', act(async () => { if (confirm('Delete this group for everyone?')) await client.deleteGroup(g.id); }))] : [])));
  children.push(error);
  panel.replaceChildren(...children);
}

export async function findUser(username: string): Promise<User> {
  const wanted = username.trim().toLowerCase();
  if (!wanted) throw new Error('type a username');
  const found = (await client.searchUsers(wanted, 20)).find((u) => u.username.toLowerCase() === wanted);
  if (!found) throw new Error(`no user named ${username.trim()}`);
  names.set(found.id, found.username);
  return found;
}
