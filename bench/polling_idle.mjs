// Memory per idle long-polling session: opens N Socket.IO connections with
// the official client on `transports: ["polling"]` (each keeps one GET
// waiting on the server), waits, and reports the server's RSS growth per
// session. The WebSocket figure comes from `palaver-bench --scenario idle`.
//
//   node bench/polling_idle.mjs URL SERVER_PID [SESSIONS=2000] [JWT_SECRET=benchsecret]
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(new URL("../e2e/package.json", import.meta.url));
const { io } = require("socket.io-client");

const [url, pid, sessionsArg, secretArg] = process.argv.slice(2);
const sessions = Number(sessionsArg ?? 2000);
const secret = secretArg ?? "benchsecret";
const transport = process.env.TRANSPORT ?? "polling";
if (!url || !pid) {
  console.error("usage: node bench/polling_idle.mjs URL SERVER_PID [SESSIONS] [JWT_SECRET]");
  process.exit(2);
}

const b64 = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
function token(user) {
  const head = b64({ alg: "HS256", typ: "JWT" });
  const now = Math.floor(Date.now() / 1000);
  const body = b64({ sub: String(user), iat: now, exp: now + 3600 });
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]);

const before = rss();
const sockets = [];
let connected = 0;
await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`only ${connected} of ${sessions} connected`)), 120_000);
  for (let i = 0; i < sessions; i++) {
    const s = io(url, { transports: [transport], auth: { token: token(900_000 + i) }, forceNew: true, reconnection: false });
    s.on("connect", () => {
      if (++connected === sessions) {
        clearTimeout(timer);
        resolve();
      }
    });
    s.on("connect_error", (e) => reject(new Error(`connect_error: ${e.message}`)));
    sockets.push(s);
  }
});
await new Promise((r) => setTimeout(r, 5000));
const after = rss();
const wrongTransport = sockets.filter((s) => s.io.engine.transport.name !== transport).length;
console.log(
  `server RSS ${before} KiB → ${after} KiB: ${((after - before) / sessions).toFixed(2)} KiB per idle ${transport} session ` +
    `(${sessions} sessions, ${wrongTransport} not on ${transport})`,
);
for (const s of sockets) s.close();
process.exit(0);
