// End-to-end test with the official Socket.IO JavaScript client.
// Needs a running server: PALAVER_URL=http://127.0.0.1:PORT node --test
// (the Rust test `js_client` starts one on a fresh database and runs this).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';

const URL = process.env.PALAVER_URL;
if (!URL) throw new Error('set PALAVER_URL');
const suffix = Math.random().toString(36).slice(2, 8);
const sockets = [];

async function api(method, path, token, body) {
  const res = await fetch(URL + path, {
    method,
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function register(name) {
  const { status, body } = await api('POST', '/api/auth/register', null, {
    username: `${name}_${suffix}`, password: 'correct horse',
  });
  assert.equal(status, 201, JSON.stringify(body));
  return body; // {user, token}
}

function connect(token, opts = {}) {
  const socket = io(URL, { auth: token ? { token } : undefined, reconnection: false, ...opts });
  sockets.push(socket);
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => reject(err));
  });
}

function nextMessage(socket) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no message within 5 s')), 5000);
    socket.once('message', (m) => { clearTimeout(timer); resolve(m); });
  });
}

let alice, bob, carol;
before(async () => {
  [alice, bob, carol] = await Promise.all([register('alice'), register('bob'), register('carol')]);
});
after(() => sockets.forEach((s) => s.close()));

test('a connection without a token is refused with unauthorized', async () => {
  await assert.rejects(connect(null), (err) => err.message.startsWith('unauthorized'));
  await assert.rejects(connect('not-a-token'), (err) => err.message.startsWith('unauthorized'));
});

test('a private message is acked after commit and delivered live (websocket and polling)', async () => {
  const a = await connect(alice.token);
  const bWs = await connect(bob.token, { transports: ['websocket'] });
  const bPoll = await connect(bob.token, { transports: ['polling'] });
  const gotWs = nextMessage(bWs);
  const gotPoll = nextMessage(bPoll);
  // The original clients' payload, senderId included.
  const ack = await a.timeout(5000).emitWithAck('message', {
    conversationType: 'private', senderId: alice.user.id, receiverId: bob.user.id,
    content: 'hello from js', clientMsgId: 'js-1',
  });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  assert.equal(ack.message.seq, 1);
  assert.equal(ack.message.content, 'hello from js');
  assert.match(ack.message.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual(await gotWs, ack.message);
  assert.deepEqual(await gotPoll, ack.message);
});

test('bad input gets an error ack, not silence', async () => {
  const a = await connect(alice.token);
  const ack = await a.timeout(5000).emitWithAck('message', { conversationType: 'private' });
  assert.deepEqual([ack.ok, ack.error.code], [false, 'invalid_payload']);
  const spoof = await a.timeout(5000).emitWithAck('message', {
    conversationType: 'private', senderId: bob.user.id, receiverId: bob.user.id, content: 'x',
  });
  assert.deepEqual([spoof.ok, spoof.error.code], [false, 'forbidden']);
});

test('a group message reaches every member, and history returns it', async () => {
  const g = await api('POST', '/api/groups', alice.token, {
    name: 'js group', memberIds: [bob.user.id, carol.user.id],
  });
  assert.equal(g.status, 201);
  const a = await connect(alice.token);
  const b = await connect(bob.token);
  const c = await connect(carol.token);
  const got = [nextMessage(b), nextMessage(c)];
  const ack = await a.timeout(5000).emitWithAck('message', {
    conversationType: 'group', receiverId: g.body.id, content: 'hi all',
  });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  for (const m of await Promise.all(got)) assert.deepEqual(m, ack.message);

  const h = await api('GET',
    `/api/messages?conversationType=group&receiverId=${g.body.id}&afterSeq=0`, carol.token);
  assert.equal(h.status, 200);
  assert.deepEqual(h.body.messages, [ack.message]);
  assert.equal(h.body.has_more, false);

  const convs = await api('GET', '/api/conversations', bob.token);
  assert.equal(convs.status, 200);
  assert.ok(convs.body.some((c) => c.conversation_type === 'group' && c.last_seq === 1));
});

test('the README walk-through works as written: send, typing, read, unread drops to zero', async () => {
  const { walkthrough } = await import('./walkthrough.mjs');
  const { before, after, seen } = await walkthrough(URL, () => {});
  assert.equal(before, 1);
  assert.equal(after, 0);
  assert.deepEqual(seen.typing, [true, false]);
  assert.deepEqual(seen.read, [1]);
});

function nextEvent(socket, name) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${name} within 5 s`)), 5000);
    socket.once(name, (data) => { clearTimeout(timer); resolve(data); });
  });
}

test('the message life cycle (v1.2): reply, mention, edit, react, delete, then catch up', async () => {
  const g = await api('POST', '/api/groups', alice.token, {
    name: 'life cycle', memberIds: [bob.user.id, carol.user.id],
  });
  assert.equal(g.status, 201);
  const group = { conversationType: 'group', receiverId: g.body.id };
  const a = await connect(alice.token);
  const b = await connect(bob.token);
  const first = await a.timeout(5000).emitWithAck('message', { ...group, content: 'lunch at 12?' });
  assert.equal(first.ok, true, JSON.stringify(first));

  // Bob answers it, mentioning carol.
  const delivered = nextMessage(a);
  const reply = await b.timeout(5000).emitWithAck('message', {
    ...group, content: 'yes, @carol too', replyToSeq: first.message.seq, mentions: [carol.user.id],
  });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  assert.deepEqual(reply.message.reply_to,
    { seq: first.message.seq, sender_id: alice.user.id, excerpt: 'lunch at 12?' });
  assert.deepEqual(reply.message.mentions, [carol.user.id]);
  assert.deepEqual(await delivered, reply.message);
  const rows = await api('GET', '/api/conversations', carol.token);
  assert.equal(rows.body.find((r) => r.receiver_id === g.body.id).mention_count, 1);

  // Alice edits her message; bob is told.
  const updated = nextEvent(b, 'message_updated');
  const edit = await a.timeout(5000).emitWithAck('edit',
    { ...group, seq: first.message.seq, content: 'lunch at 1?' });
  assert.equal(edit.ok, true, JSON.stringify(edit));
  assert.equal(edit.message.content, 'lunch at 1?');
  assert.ok(edit.message.edited_at);
  assert.deepEqual(await updated, edit.message);

  // Bob reacts; alice is told.
  const reacted = nextEvent(a, 'reaction');
  const react = await b.timeout(5000).emitWithAck('react',
    { ...group, seq: first.message.seq, emoji: '👍' });
  assert.equal(react.ok, true, JSON.stringify(react));
  assert.deepEqual([react.reaction.emoji, react.reaction.count, react.reaction.on], ['👍', 1, true]);
  assert.deepEqual(await reacted, react.reaction);

  // Alice deletes it: a tombstone in its place, the reply's excerpt gone.
  const deleted = await a.timeout(5000).emitWithAck('delete', { ...group, seq: first.message.seq });
  assert.equal(deleted.ok, true, JSON.stringify(deleted));
  assert.equal(deleted.message.content, '');
  assert.ok(deleted.message.deleted_at);
  const h = await api('GET',
    `/api/messages?conversationType=group&receiverId=${g.body.id}&afterSeq=0`, carol.token);
  assert.deepEqual(h.body.messages.map((m) => m.seq), [1, 2]);
  assert.equal(h.body.messages[1].reply_to.excerpt, null);

  // Carol, who was offline, catches up on the changes.
  const changes = await api('GET',
    `/api/messages?conversationType=group&receiverId=${g.body.id}&changedAfter=0`, carol.token);
  assert.equal(changes.status, 200, JSON.stringify(changes.body));
  assert.deepEqual(changes.body.messages.map((m) => [m.seq, m.change_seq, m.content]),
    [[1, 3, '']]);
  const row = (await api('GET', '/api/conversations', carol.token)).body
    .find((r) => r.receiver_id === g.body.id);
  assert.equal(row.last_change, 3);
});

test('running a group (v1.2): rename, roles, hand over, leave, each a system message', async () => {
  const g = await api('POST', '/api/groups', alice.token, {
    name: 'crew', memberIds: [bob.user.id, carol.user.id],
  });
  assert.equal(g.status, 201);
  const id = g.body.id;
  const c = await connect(carol.token);

  // Alice renames it: carol gets a system message in the group's seq.
  let told = nextMessage(c);
  const renamed = await api('PATCH', `/api/groups/${id}`, alice.token, { name: 'crew 2' });
  assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
  assert.equal(renamed.body.name, 'crew 2');
  let m = await told;
  assert.equal(m.kind, 'system');
  assert.deepEqual(m.system, { event: 'renamed', actor_id: alice.user.id, name: 'crew 2' });
  assert.equal(m.seq, 1);

  // Bob becomes an admin, then the owner; alice is an admin after.
  told = nextMessage(c);
  const role = await api('PUT', `/api/groups/${id}/members/${bob.user.id}/role`, alice.token,
    { role: 'admin' });
  assert.equal(role.status, 200, JSON.stringify(role.body));
  assert.equal((await told).system.event, 'role_changed');
  assert.equal((await api('DELETE', `/api/groups/${id}/members/${alice.user.id}`, alice.token))
    .status, 409, 'the owner hands over before leaving');
  told = nextMessage(c);
  const owner = await api('POST', `/api/groups/${id}/owner`, alice.token, { userId: bob.user.id });
  assert.equal(owner.status, 200, JSON.stringify(owner.body));
  assert.equal(owner.body.owner_id, bob.user.id);
  assert.deepEqual((await told).system,
    { event: 'owner_changed', actor_id: alice.user.id, user_id: bob.user.id });

  // Carol leaves: she reads up to her departure, and the group leaves her lists.
  const left = await api('DELETE', `/api/groups/${id}/members/${carol.user.id}`, carol.token);
  assert.equal(left.status, 204);
  const h = await api('GET',
    `/api/messages?conversationType=group&receiverId=${id}&afterSeq=0`, carol.token);
  assert.equal(h.status, 200, JSON.stringify(h.body));
  assert.deepEqual(h.body.messages.map((x) => [x.seq, x.system.event]),
    [[1, 'renamed'], [2, 'role_changed'], [3, 'owner_changed'], [4, 'member_left']]);
  const groups = await api('GET', '/api/groups', carol.token);
  assert.ok(!groups.body.some((x) => x.id === id));
});
