// What the client holds: the connection, the user, the conversations, and
// how names and system messages read.
import {
  ConversationSummary, Group, Message, Palaver, Role, SystemChange, Target, User, keyOf,
} from './palaver';

/** Where the token is kept: this tab's session storage. A reload keeps the
 * user signed in; closing the tab (or signing out) forgets the token, so a
 * seven-day token does not outlive the session on a shared computer. */
export const TOKEN_KEY = 'palaver.token';

/** Typing: say it again this often while typing, stop after this long idle
 * (README: resend every 3 s, show for at most 6 s after the last one). */
export const TYPING_RESEND_MS = 3000;

export const TYPING_SHOW_MS = 6000;

/** Messages from one sender closer than this share a sender heading. */
export const SAME_GROUP_MS = 5 * 60_000;

export const REACTION = '👍';

export interface Pending {
  clientMsgId: string;
  content: string;
  replyToSeq?: number;
  mentions?: number[];
  status: 'sending' | 'failed';
  error?: string;
}

/** An opened conversation: what the client holds of it. */
export interface Conv {
  target: Target;
  key: string;
  messages: Map<number, Message>;
  pending: Map<string, Pending>;
  hasMore: boolean;
  /** The peer's read position, as `read` events told it (private). */
  peerRead: number;
  lastChange: number;
  group?: Group;
}

export const client = new Palaver(sessionStorage.getItem(TOKEN_KEY));

export const names = new Map<number, string>();

export const asked = new Set<number>();

export const summaries = new Map<string, ConversationSummary>();

export const opened = new Map<string, Conv>();

/** Who is typing where: conversation key → user → until (ms). */
export const typing = new Map<string, Map<number, number>>();

/** The signed-in user, the conversation on screen, and what the composer
 * is doing (answering a message, or editing one). */
export const S: {
  me: User | null;
  current: Conv | null;
  replyTo: Message | null;
  editing: Message | null;
} = { me: null, current: null, replyTo: null, editing: null };

/** Called when something learned in the background (a user's name) should
 * show: the app sets it to its full render. */
export const hooks = { changed: (): void => {} };

export function nameOf(id: number): string {
  if (S.me && id === S.me.id) return 'You';
  const known = names.get(id);
  if (known) return known;
  if (!asked.has(id)) {
    asked.add(id);
    client.user(id).then((u) => { names.set(u.id, u.username); hooks.changed(); }).catch(() => {});
  }
  return `user ${id}`;
}

export function describe(s: SystemChange): string {
  const actor = nameOf(s.actor_id);
  const user = s.user_id !== undefined ? nameOf(s.user_id) : '';
  switch (s.event) {
    case 'member_added': return `${actor} added ${user}${s.role === 'admin' ? ' as an admin' : ''}`;
    case 'member_removed': return `${actor} removed ${user}`;
    case 'member_left': return `${actor} left`;
    case 'renamed': return `${actor} renamed the group to “${s.name ?? ''}”`;
    case 'role_changed': return `${actor} made ${user} ${s.role === 'admin' ? 'an admin' : 'a member'}`;
    case 'owner_changed': return `${actor} made ${user} the owner`;
    case 'group_deleted': return `${actor} deleted the group`;
  }
}

export function titleOf(s: ConversationSummary | undefined, t: Target): string {
  if (t.conversationType === 'group') return s?.name ?? `group ${t.receiverId}`;
  return s?.username ?? nameOf(t.receiverId);
}

export function summaryFor(t: Target): ConversationSummary {
  const key = keyOf(t);
  let s = summaries.get(key);
  if (!s) {
    s = {
      conversation_type: t.conversationType, receiver_id: t.receiverId,
      username: t.conversationType === 'private' ? names.get(t.receiverId) ?? null : null,
      name: null, last_message: null, last_seq: 0, read_seq: 0, unread_count: 0,
      last_change: 0, mention_count: 0, online: null, last_seen: null,
    };
    summaries.set(key, s);
  }
  return s;
}

export function myRole(conv: Conv): Role | undefined {
  return conv.group?.members?.find((m) => m.user_id === S.me?.id)?.role;
}

export function typingIn(key: string): number[] {
  const now = Date.now();
  return [...(typing.get(key) ?? new Map()).entries()].filter(([, until]) => until > now).map(([u]) => u);
}
