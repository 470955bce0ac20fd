// palaver.ts: a small typed client for Palaver's wire contract
// (docs/PROTOCOL.md, v1.2) over the official socket.io-client. The web
// client's UI uses nothing else to talk to the server; copy it into your
// own client as it is.
import { io, Socket } from 'socket.io-client';

export type ConversationType = 'private' | 'group';
export type Role = 'owner' | 'admin' | 'member';

/** A conversation: the other user (private) or the group. */
export interface Target {
  conversationType: ConversationType;
  receiverId: number;
}

export interface User {
  id: number;
  username: string;
  created_at: string;
  online?: boolean;
  last_seen?: string | null;
}

export interface ReplyTo { seq: number; sender_id: number; excerpt: string | null }
export interface ReactionCount { emoji: string; count: number; me: boolean }
export interface SystemChange {
  event: 'member_added' | 'member_removed' | 'member_left' | 'renamed' | 'role_changed'
    | 'owner_changed' | 'group_deleted';
  actor_id: number;
  user_id?: number;
  name?: string;
  role?: Role;
}

export interface Message {
  id: number;
  conversation_type: ConversationType;
  sender_id: number;
  receiver_id: number;
  seq: number;
  content: string;
  client_msg_id: string | null;
  created_at: string;
  edited_at?: string | null;
  deleted_at?: string | null;
  reply_to?: ReplyTo | null;
  change_seq?: number;
  reactions?: ReactionCount[];
  mentions?: number[];
  kind?: 'system';
  system?: SystemChange;
}

export interface ConversationSummary {
  conversation_type: ConversationType;
  receiver_id: number;
  username: string | null;
  name: string | null;
  last_message: Message | null;
  last_seq: number;
  read_seq: number;
  unread_count: number;
  last_change: number;
  mention_count: number;
  online: boolean | null;
  last_seen: string | null;
}

export interface Member { user_id: number; role: Role; joined_at: string }
export interface Group {
  id: number;
  name: string;
  owner_id: number;
  created_at: string;
  members?: Member[];
}

export interface Reaction {
  conversation_type: ConversationType;
  receiver_id: number;
  seq: number;
  message_id: number;
  user_id: number;
  emoji: string;
  on: boolean;
  count: number;
  change_seq: number;
}
export interface ReadReceipt {
  conversation_type: ConversationType;
  reader_id: number;
  receiver_id: number;
  seq: number;
}
export interface Typing {
  conversation_type: ConversationType;
  sender_id: number;
  receiver_id: number;
  typing: boolean;
}
export interface Presence { user_id: number; online: boolean; last_seen: string | null }
export interface Page { messages: Message[]; has_more: boolean }

/** Server → client events and what they carry. */
export interface Events {
  message: (m: Message) => void;
  message_updated: (m: Message) => void;
  reaction: (r: Reaction) => void;
  read: (r: ReadReceipt) => void;
  typing: (t: Typing) => void;
  presence: (p: Presence) => void;
  /** The socket connected (again): time to catch up. */
  online: () => void;
  /** The socket lost its connection; it reconnects by itself. */
  offline: () => void;
  /** The server refused the token, or ended the session (logged out
   * elsewhere, password changed, account disabled): sign in again. */
  unauthorized: (reason?: string) => void;
}

/** An error answer, over HTTP or in an ack: `code` is the contract's. */
export class PalaverError extends Error {
  constructor(public code: string, message: string, public status?: number) {
    super(message);
  }
}

/** How long an ack is awaited before a send counts as failed. */
export const ACK_TIMEOUT_MS = 10_000;

/** The conversation a message belongs to, from the reader's side. */
export function targetOf(m: Message, me: number): Target {
  if (m.conversation_type === 'group') return { conversationType: 'group', receiverId: m.receiver_id };
  const other = m.sender_id === me ? m.receiver_id : m.sender_id;
  return { conversationType: 'private', receiverId: other };
}

export function keyOf(t: Target): string {
  return `${t.conversationType}:${t.receiverId}`;
}

/** A new client-side idempotency key for a send (reused by its retries). */
export function newClientMsgId(): string {
  return typeof crypto.randomUUID === 'function'
    ? crypto.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

type Handler = (...args: never[]) => void;

export class Palaver {
  private socket: Socket | null = null;
  private handlers = new Map<keyof Events, Set<Handler>>();

  constructor(public token: string | null = null, private base = '') {}

  // ---- accounts --------------------------------------------------------
  async register(username: string, password: string): Promise<{ user: User; token: string }> {
    const r = await this.api<{ user: User; token: string }>('POST', '/api/auth/register', { username, password });
    this.token = r.token;
    return r;
  }

  async login(username: string, password: string): Promise<{ user: User; token: string }> {
    const r = await this.api<{ user: User; token: string }>('POST', '/api/auth/login', { username, password });
    this.token = r.token;
    return r;
  }

  /** Logs this token out on the server (best effort), then forgets it. */
  async logout(): Promise<void> {
    if (this.token) {
      await this.api('POST', '/api/auth/logout').catch(() => undefined);
    }
    this.forget();
  }

  /** Logs out every session of this user, on every device, then forgets the token. */
  async logoutEverywhere(): Promise<void> {
    await this.api('POST', '/api/auth/logout-all');
    this.forget();
  }

  /** Forgets the token here, without telling the server. */
  forget(): void {
    this.disconnect();
    this.token = null;
  }

  me(): Promise<User> { return this.api('GET', '/api/me'); }
  user(id: number): Promise<User> { return this.api('GET', `/api/users/${id}`); }
  searchUsers(prefix: string, limit = 10): Promise<User[]> {
    return this.api('GET', `/api/users?q=${encodeURIComponent(prefix)}&limit=${limit}`);
  }

  // ---- conversations and history ---------------------------------------
  conversations(): Promise<ConversationSummary[]> { return this.api('GET', '/api/conversations'); }

  /** A page of history: after `afterSeq` (ascending), else before `beforeSeq` or the newest. */
  history(t: Target, page: { afterSeq?: number; beforeSeq?: number; limit?: number } = {}): Promise<Page> {
    const q = new URLSearchParams({ conversationType: t.conversationType, receiverId: String(t.receiverId) });
    if (page.afterSeq !== undefined) q.set('afterSeq', String(page.afterSeq));
    if (page.beforeSeq !== undefined) q.set('beforeSeq', String(page.beforeSeq));
    q.set('limit', String(page.limit ?? 50));
    return this.api('GET', `/api/messages?${q}`);
  }

  /** Everything after `afterSeq`, page by page: a reconnect's catch-up. */
  async catchUp(t: Target, afterSeq: number): Promise<Message[]> {
    const all: Message[] = [];
    for (let after = afterSeq; ;) {
      const page = await this.history(t, { afterSeq: after, limit: 200 });
      all.push(...page.messages);
      if (!page.has_more || page.messages.length === 0) return all;
      after = page.messages[page.messages.length - 1].seq;
    }
  }

  /** Messages edited, deleted or reacted to after change position `changedAfter`. */
  async changes(t: Target, changedAfter: number): Promise<Message[]> {
    const all: Message[] = [];
    for (let after = changedAfter; ;) {
      const q = new URLSearchParams({
        conversationType: t.conversationType, receiverId: String(t.receiverId),
        changedAfter: String(after), limit: '200',
      });
      const page = await this.api<Page>('GET', `/api/messages?${q}`);
      all.push(...page.messages);
      if (!page.has_more || page.messages.length === 0) return all;
      after = page.messages[page.messages.length - 1].change_seq ?? after;
    }
  }

  // ---- groups ------------------------------------------------------------
  groups(): Promise<Group[]> { return this.api('GET', '/api/groups'); }
  group(id: number): Promise<Group> { return this.api('GET', `/api/groups/${id}`); }
  createGroup(name: string, memberIds: number[]): Promise<Group> {
    return this.api('POST', '/api/groups', { name, memberIds });
  }
  addMember(group: number, userId: number, role: 'member' | 'admin' = 'member'): Promise<Member> {
    return this.api('POST', `/api/groups/${group}/members`, { userId, role });
  }
  /** Removes a member; your own id: leave. */
  removeMember(group: number, userId: number): Promise<void> {
    return this.api('DELETE', `/api/groups/${group}/members/${userId}`);
  }
  rename(group: number, name: string): Promise<Group> { return this.api('PATCH', `/api/groups/${group}`, { name }); }
  setRole(group: number, userId: number, role: 'admin' | 'member'): Promise<Member> {
    return this.api('PUT', `/api/groups/${group}/members/${userId}/role`, { role });
  }
  handOver(group: number, userId: number): Promise<Group> {
    return this.api('POST', `/api/groups/${group}/owner`, { userId });
  }
  deleteGroup(group: number): Promise<void> { return this.api('DELETE', `/api/groups/${group}`); }

  // ---- the socket ---------------------------------------------------------
  /** Connects (reconnecting by itself after a loss) and relays events. */
  connect(): void {
    if (this.socket) return;
    const socket = io(this.base || undefined, {
      auth: (cb) => cb({ token: this.token }),
      transports: ['websocket', 'polling'],
    });
    this.socket = socket;
    socket.on('connect', () => this.fire('online'));
    socket.on('disconnect', () => this.fire('offline'));
    socket.on('connect_error', (e: Error) => {
      if (/unauthorized|token/i.test(e.message)) {
        this.fire('unauthorized', e.message);
        socket.disconnect();
      }
    });
    // The server ends the socket of a revoked token (v1.3), saying why.
    socket.on('session_ended', (e: { message?: string }) => this.fire('unauthorized', e?.message));
    for (const name of ['message', 'message_updated', 'reaction', 'read', 'typing', 'presence'] as const) {
      socket.on(name, (data: unknown) => this.fire(name, data));
    }
  }

  disconnect(): void {
    this.socket?.disconnect();
    this.socket = null;
  }

  get connected(): boolean { return this.socket?.connected ?? false; }

  on<E extends keyof Events>(event: E, handler: Events[E]): () => void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(handler as Handler);
    return () => set!.delete(handler as Handler);
  }

  /** Sends a message; resolves with the stored message once committed. A
   * retry with the same `clientMsgId` never stores it twice. */
  send(t: Target, content: string, opts: { clientMsgId?: string; replyToSeq?: number; mentions?: number[] } = {}): Promise<Message> {
    return this.ask<{ message: Message }>('message', {
      ...t, content, clientMsgId: opts.clientMsgId ?? newClientMsgId(),
      ...(opts.replyToSeq ? { replyToSeq: opts.replyToSeq } : {}),
      ...(opts.mentions?.length ? { mentions: opts.mentions } : {}),
    }).then((a) => a.message);
  }

  edit(t: Target, seq: number, content: string): Promise<Message> {
    return this.ask<{ message: Message }>('edit', { ...t, seq, content }).then((a) => a.message);
  }

  delete(t: Target, seq: number): Promise<Message> {
    return this.ask<{ message: Message }>('delete', { ...t, seq }).then((a) => a.message);
  }

  react(t: Target, seq: number, emoji: string, on = true): Promise<Reaction> {
    return this.ask<{ reaction: Reaction }>('react', { ...t, seq, emoji, on }).then((a) => a.reaction);
  }

  read(t: Target, seq: number): Promise<number> {
    return this.ask<{ read_seq: number }>('read', { ...t, seq }).then((a) => a.read_seq);
  }

  typing(t: Target, typing: boolean): void {
    if (this.socket?.connected) this.socket.emit('typing', { ...t, typing }, () => {});
  }

  // ---- plumbing ------------------------------------------------------------
  private async ask<T>(event: string, payload: object): Promise<T> {
    if (!this.socket) throw new PalaverError('unavailable', 'not connected');
    let ack: { ok: boolean; error?: { code: string; message: string } } & T;
    try {
      ack = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
    } catch {
      throw new PalaverError('unavailable', 'no answer from the server');
    }
    if (!ack.ok) throw new PalaverError(ack.error?.code ?? 'internal', ack.error?.message ?? 'failed');
    return ack;
  }

  private fire(event: keyof Events, ...args: unknown[]): void {
    for (const h of this.handlers.get(event) ?? []) (h as (...a: unknown[]) => void)(...args);
  }

  async api<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(this.base + path, {
      method,
      headers: {
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : undefined;
    if (!res.ok) {
      if (res.status === 401) this.fire('unauthorized', data?.error?.message);
      throw new PalaverError(data?.error?.code ?? 'internal', data?.error?.message ?? res.statusText, res.status);
    }
    return data as T;
  }
}
