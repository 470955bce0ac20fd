// The README's two-client walk-through, runnable as is, any number of times:
//   PALAVER_URL=http://localhost:3000 node walkthrough.mjs
// (the JavaScript end-to-end suite runs it too). Prints what happens, checks
// every answer, exits 0 when done and 1 with the reason when something fails.
import { io } from 'socket.io-client';

export async function walkthrough(url, log = console.log) {
  const call = async (method, path, token, body) => {
    const r = await fetch(url + path, {
      method,
      headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) },
      body: body && JSON.stringify(body),
    });
    const json = await r.json();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${json.error?.code}: ${json.error?.message}`);
    return json;
  };
  const emit = async (socket, event, payload) => {
    const ack = await socket.timeout(5000).emitWithAck(event, payload);
    if (!ack.ok) throw new Error(`${event}: ${ack.error.code}: ${ack.error.message}`);
    return ack;
  };
  const connected = (socket) => new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  const suffix = Math.random().toString(36).slice(2, 8);
  const alice = await call('POST', '/api/auth/register', null, { username: `alice_${suffix}`, password: 'correct horse' });
  const bob = await call('POST', '/api/auth/register', null, { username: `bob_${suffix}`, password: 'correct horse' });

  const a = io(url, { auth: { token: alice.token } });
  const b = io(url, { auth: { token: bob.token } });
  try {
    await Promise.all([connected(a), connected(b)]);
    const seen = { typing: [], read: [] };
    b.on('typing', (t) => { seen.typing.push(t.typing); log(`bob sees: alice typing=${t.typing}`); });
    a.on('read', (r) => { seen.read.push(r.seq); log(`alice sees: bob read up to ${r.seq}`); });
    const delivered = new Promise((resolve) => b.once('message', resolve));

    // Alice types, sends, stops typing.
    const to = { conversationType: 'private', receiverId: bob.user.id };
    await emit(a, 'typing', { ...to, typing: true });
    const { message } = await emit(a, 'message', { ...to, content: 'lunch?' });
    await emit(a, 'typing', { ...to, typing: false });
    log(`bob receives: ${(await delivered).content}`);

    // Bob has one unread message until he marks it read.
    const unread = async () => (await call('GET', '/api/conversations', bob.token))[0].unread_count;
    const before = await unread();
    log(`bob's unread count: ${before}`);
    await emit(b, 'read', { conversationType: 'private', receiverId: alice.user.id, seq: message.seq });
    const after = await unread();
    log(`bob's unread count after reading: ${after}`);

    await new Promise((r) => setTimeout(r, 200)); // let the relayed events land before closing
    return { before, after, seen };
  } finally {
    a.close();
    b.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    await walkthrough(process.env.PALAVER_URL || 'http://localhost:3000');
  } catch (e) {
    console.error(`walkthrough failed: ${e.message}`);
    process.exit(1);
  }
}
