// The client matrix, official JavaScript client: WebSocket only, polling only
// and the default polling → WebSocket upgrade. For each, two fresh users
// connect with a token, one sends to the other with an ack, the other
// receives the delivery, both reconnect (the engine is closed under them and
// the client reconnects by itself), and the same again.
//   PALAVER_URL=http://127.0.0.1:3000 node clients.mjs
// One line per transport; exits 0 when all pass, 1 with the reason when one
// fails. Fresh names each run, so it runs any number of times.
import { io } from 'socket.io-client';

const url = process.env.PALAVER_URL || 'http://127.0.0.1:3000';
const WAIT = 10_000;

// `transport`: where each connection must settle; `upgrades`: how many
// transport upgrades each connection makes on the way.
const modes = [
  { name: 'websocket', opts: { transports: ['websocket'] }, transport: 'websocket', upgrades: 0 },
  { name: 'polling', opts: { transports: ['polling'] }, transport: 'polling', upgrades: 0 },
  { name: 'polling → websocket', opts: {}, transport: 'websocket', upgrades: 1 },
];

async function register(username) {
  const r = await fetch(`${url}/api/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: 'correct horse' }),
  });
  const json = await r.json();
  if (r.status !== 201) throw new Error(`register ${username}: ${r.status} ${json.error?.code}: ${json.error?.message}`);
  return json;
}

// Resolves with `what()` once it is truthy, checking every 20 ms; rejects after WAIT.
function until(what, description) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const check = () => {
      const value = what();
      if (value) return resolve(value);
      if (Date.now() - started > WAIT) return reject(new Error(`${description}: not within ${WAIT} ms`));
      setTimeout(check, 20);
    };
    check();
  });
}

// Each engine (one per connection) reports its upgrades; the manager opens
// a new engine on every reconnect and says so before the engine probes.
function upgrades(socket) {
  const seen = [];
  socket.io.on('open', () => socket.io.engine.on('upgrade', (t) => seen.push(t.name)));
  return seen;
}

function connected(socket, description) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${description}: no connect within ${WAIT} ms`)), WAIT);
    socket.once('connect', () => { clearTimeout(timer); resolve(); });
    socket.once('connect_error', (e) => { clearTimeout(timer); reject(new Error(`${description}: connect_error ${e.message}`)); });
  });
}

// The transport the engine settles on: for the default setting, the upgrade
// happens after `connect`, so wait for it.
async function onTransport(socket, want, who) {
  const now = () => socket.io.engine?.transport?.name;
  await until(() => now() === want, `${who} on ${want}`).catch((e) => {
    throw new Error(`${e.message}: still on ${now()}`);
  });
}

async function send(socket, to, content) {
  const ack = await socket.timeout(WAIT).emitWithAck('message', { conversationType: 'private', receiverId: to, content });
  if (ack?.ok !== true) throw new Error(`send: ${JSON.stringify(ack)}`);
  const m = ack.message;
  if (!Number.isInteger(m?.id) || !Number.isInteger(m?.seq) || m.content !== content) {
    throw new Error(`send: the ack carries no stored message: ${JSON.stringify(ack)}`);
  }
  return m;
}

// A sends to B: acked with the stored message, delivered to B with the same
// id. B keeps what it receives from the start (`inbox`): the delivery may
// come before the ack.
async function exchange(a, inbox, bob, content) {
  const sent = await send(a, bob.user.id, content);
  const got = await until(() => inbox.find((m) => m?.id === sent.id), `delivery of message ${sent.id} to bob`);
  if (got.content !== content || got.seq !== sent.seq) throw new Error(`delivered ${JSON.stringify(got)}, acked ${JSON.stringify(sent)}`);
  return sent;
}

// The engine closes under the socket; the client reconnects by itself.
async function reconnect(socket, who, transport) {
  const before = socket.id;
  const disconnected = new Promise((resolve) => socket.once('disconnect', resolve));
  const back = connected(socket, `${who} reconnect`);
  socket.io.engine.close();
  const reason = await disconnected;
  // `forced close`: the engine went, not the socket; the client must be on its way back.
  if (!socket.active) throw new Error(`${who} disconnected for ${reason} and will not reconnect`);
  await back;
  if (socket.id === before) throw new Error(`${who} reconnected with the same socket id ${before}`);
  await onTransport(socket, transport, `${who} after reconnecting`);
}

async function run(mode, tag) {
  const alice = await register(`ca_${tag}`);
  const bob = await register(`cb_${tag}`);
  const a = io(url, { ...mode.opts, auth: { token: alice.token }, forceNew: true });
  const b = io(url, { ...mode.opts, auth: { token: bob.token }, forceNew: true });
  const upgraded = [upgrades(a), upgrades(b)];
  const inbox = [];
  b.on('message', (m) => inbox.push(m));
  const upgradesAre = (n) => {
    const want = Array(n * mode.upgrades).fill('websocket');
    if (upgraded.some((u) => u.join() !== want.join())) {
      throw new Error(`upgrades ${JSON.stringify(upgraded)}, expected ${JSON.stringify([want, want])}`);
    }
  };
  try {
    await Promise.all([connected(a, 'alice'), connected(b, 'bob')]);
    await Promise.all([onTransport(a, mode.transport, 'alice'), onTransport(b, mode.transport, 'bob')]);
    const first = await exchange(a, inbox, bob, `first over ${mode.name}`);
    // Still there after traffic: polling only must not have upgraded.
    await Promise.all([onTransport(a, mode.transport, 'alice'), onTransport(b, mode.transport, 'bob')]);
    upgradesAre(1);

    // Both reconnect; the delivery must reach B's new socket.
    await Promise.all([reconnect(a, 'alice', mode.transport), reconnect(b, 'bob', mode.transport)]);
    const second = await exchange(a, inbox, bob, `again over ${mode.name}`);
    if (second.seq !== first.seq + 1) throw new Error(`seq ${first.seq} then ${second.seq}`);
    upgradesAre(2);
    return `js ${mode.name}: connected on ${mode.transport} (${upgraded[0].length + upgraded[1].length} upgrades), acked id ${first.id} seq ${first.seq}, delivered; ` +
      `reconnected, acked id ${second.id} seq ${second.seq}, delivered`;
  } finally {
    a.close();
    b.close();
  }
}

const tag = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
for (const [i, mode] of modes.entries()) {
  try {
    console.log(await run(mode, `${tag}${i}`));
  } catch (e) {
    console.error(`js ${mode.name}: FAILED: ${e.message}`);
    process.exit(1);
  }
}
