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
