// The README's two-client walk-through, runnable as is:
//   PALAVER_URL=http://localhost:3000 node walkthrough.mjs
// (the JavaScript end-to-end suite runs it too). Prints what happens.
import { io } from 'socket.io-client';

export async function walkthrough(url, log = console.log) {
  const call = (method, path, token, body) => fetch(url + path, {
    method,
    headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) },
    body: body && JSON.stringify(body),
  }).then((r) => r.json());
  const suffix = Math.random().toString(36).slice(2, 8);
  const alice = await call('POST', '/api/auth/register', null, { username: `alice_${suffix}`, password: 'correct horse' });
  const bob = await call('POST', '/api/auth/register', null, { username: `bob_${suffix}`, password: 'correct horse' });

  const a = io(url, { auth: { token: alice.token } });
  const b = io(url, { auth: { token: bob.token } });
  const seen = { typing: [], read: [] };
  b.on('typing', (t) => { seen.typing.push(t.typing); log(`bob sees: alice typing=${t.typing}`); });
  a.on('read', (r) => { seen.read.push(r.seq); log(`alice sees: bob read up to ${r.seq}`); });
  const delivered = new Promise((resolve) => b.once('message', resolve));

  // Alice types, sends, stops typing.
  const to = { conversationType: 'private', receiverId: bob.user.id };
  await a.emitWithAck('typing', { ...to, typing: true });
  const { message } = await a.emitWithAck('message', { ...to, content: 'lunch?' });
  await a.emitWithAck('typing', { ...to, typing: false });
  log(`bob receives: ${(await delivered).content}`);

  // Bob has one unread message until he marks it read.
  const unread = async () => (await call('GET', '/api/conversations', bob.token))[0].unread_count;
  const before = await unread();
  log(`bob's unread count: ${before}`);
  await b.emitWithAck('read', { conversationType: 'private', receiverId: alice.user.id, seq: message.seq });
  const after = await unread();
  log(`bob's unread count after reading: ${after}`);

  await new Promise((r) => setTimeout(r, 200)); // let the relayed events land before closing
  a.close();
  b.close();
  return { before, after, seen };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await walkthrough(process.env.PALAVER_URL || 'http://localhost:3000');
}
