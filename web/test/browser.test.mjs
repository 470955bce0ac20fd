// The web client in a real browser: headless Chromium (Debian's package)
// driven by playwright-core. Needs a running server: PALAVER_URL (the Rust
// test `browser::web_client_in_chromium` starts one on a fresh database and
// runs this); CHROMIUM names the browser (default /usr/bin/chromium);
// SCREENSHOTS, when set, is where the pictures of the main screens go.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const URL = process.env.PALAVER_URL;
if (!URL) throw new Error('set PALAVER_URL');
const SHOTS = process.env.SCREENSHOTS;
if (SHOTS) mkdirSync(SHOTS, { recursive: true });
const suffix = Math.random().toString(36).slice(2, 7);
// Generous: a browser's first start on a fresh machine builds its font
// cache, and CI machines are slow.
const WAIT = { timeout: 20_000 };

let browser, alice, bob;

async function user(name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('dialog', (d) => d.accept());
  await page.goto(URL);
  return { name: `${name}_${suffix}`, context, page, errors };
}

async function shot(page, file) {
  if (SHOTS) await page.screenshot({ path: join(SHOTS, file) });
}

async function register(u) {
  await u.page.getByLabel('Username', { exact: true }).fill(u.name);
  await u.page.getByLabel('Password', { exact: true }).fill('correct horse battery');
  await u.page.getByRole('button', { name: 'Create account' }).click();
  await u.page.locator('#me').filter({ hasText: u.name }).waitFor(WAIT);
}

/** Opens the conversation named `title` from the list. */
async function openConversation(u, title) {
  await u.page.locator('#conversations button.conv', { hasText: title }).click();
  await u.page.locator('#chat-title', { hasText: title }).waitFor(WAIT);
}

async function send(u, text) {
  await u.page.getByLabel('Message', { exact: true }).fill(text);
  await u.page.keyboard.press('Enter');
}

/** The texts of the messages shown, in order (system messages included). */
async function shown(u) {
  return u.page.locator('#messages li.msg .text, #messages li.system').allInnerTexts();
}

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  // Warm up once (fonts, the page's first render) before anything is timed.
  const warm = await browser.newPage();
  await warm.goto(URL);
  await warm.locator('#signin-title').waitFor({ timeout: 60_000 });
  await warm.close();
  alice = await user('alice');
  bob = await user('bob');
});

after(async () => {
  await browser?.close();
});

test('two people register and chat privately: unread, typing, seen, presence', async () => {
  await alice.page.getByRole('heading', { name: 'Palaver' }).waitFor(WAIT);
  await shot(alice.page, 'sign-in.png');
  await register(alice);
  await register(bob);

  // Alice finds bob and writes to him.
  await alice.page.getByLabel('Find people').fill(bob.name);
  await alice.page.getByRole('button', { name: bob.name }).click();
  await send(alice, 'hello bob, see https://example.com');
  await alice.page.locator('#messages li.msg.mine .status', { hasText: 'sent' }).waitFor(WAIT);

  // Bob's list shows it live, unread, with alice online.
  const row = bob.page.locator('#conversations button.conv', { hasText: alice.name });
  await row.locator('.badge', { hasText: '1' }).waitFor(WAIT);
  await row.locator('.dot.on').waitFor(WAIT);
  assert.match(await row.innerText(), /hello bob/);
  await shot(bob.page, 'conversations.png');
  await openConversation(bob, alice.name);
  assert.deepEqual(await shown(bob), ['hello bob, see https://example.com']);
  const link = bob.page.locator('#messages a');
  assert.equal(await link.getAttribute('href'), 'https://example.com');
  assert.equal(await link.getAttribute('rel'), 'noopener noreferrer nofollow');

  // Bob has read it: alice sees "Seen". Bob types: alice sees it.
  await alice.page.locator('#messages .seen').waitFor(WAIT);
  await bob.page.getByLabel('Message', { exact: true }).pressSequentially('typing', { delay: 20 });
  await alice.page.locator('#typing', { hasText: 'is typing' }).waitFor(WAIT);
  await bob.page.keyboard.press('Shift+Enter');
  await bob.page.keyboard.type('two lines');
  await bob.page.keyboard.press('Enter');
  await alice.page.locator('#messages li.msg .text', { hasText: 'two lines' }).waitFor(WAIT);
  assert.equal(await alice.page.locator('#messages li.msg .text').last().innerText(), 'typing\ntwo lines');

  // Reply, react and edit, seen live on the other side.
  await alice.page.locator('#messages li.msg').last().hover();
  await alice.page.locator('#messages li.msg').last().getByRole('button', { name: 'Reply' }).click();
  await send(alice, 'a reply');
  await bob.page.locator('#messages .quote', { hasText: 'typing' }).waitFor(WAIT);
  const mine = bob.page.locator('#messages li.msg.mine').last();
  await mine.hover();
  await mine.getByRole('button', { name: 'Edit' }).click();
  await bob.page.getByLabel('Message', { exact: true }).fill('two lines, edited');
  await bob.page.keyboard.press('Enter');
  await alice.page.locator('#messages li.msg .text', { hasText: 'two lines, edited' }).waitFor(WAIT);
  const first = alice.page.locator('#messages li.msg').first();
  await first.hover();
  await first.getByRole('button', { name: 'React with thumbs up' }).click();
  await bob.page.locator('#messages .reactions button', { hasText: '👍 1' }).waitFor(WAIT);
  await shot(alice.page, 'private-chat.png');
  assert.deepEqual([...alice.errors, ...bob.errors], []);
});

test('markup in a message is shown as text and runs nothing', async () => {
  const evil = '<img src=x onerror="window.__pwned=1"><b>bold?</b>';
  await send(alice, evil);
  await bob.page.locator('#messages li.msg .text', { hasText: '<img src=x' }).waitFor(WAIT);
  assert.equal(await bob.page.locator('#messages li.msg .text').last().innerText(), evil);
  assert.equal(await bob.page.locator('#messages img, #messages b').count(), 0);
  assert.equal(await bob.page.evaluate(() => window.__pwned), undefined);
  // The list's preview too.
  assert.equal(await alice.page.locator('#conversations img').count(), 0);
});

test('offline: a banner, then every message sent meanwhile exactly once, in order', async () => {
  await bob.context.setOffline(true);
  await bob.page.locator('#banner').waitFor({ state: 'visible', ...WAIT });
  for (const n of [1, 2, 3]) {
    await send(alice, `while you were away ${n}`);
    await alice.page.locator('#messages li.msg.mine .text', { hasText: `away ${n}` }).waitFor(WAIT);
  }
  await alice.page.locator('#messages li.pending').waitFor({ state: 'detached', ...WAIT });
  await bob.context.setOffline(false);
  await bob.page.locator('#banner').waitFor({ state: 'hidden', timeout: 20_000 });
  await bob.page.locator('#messages li.msg .text', { hasText: 'away 3' }).waitFor(WAIT);
  const texts = (await shown(bob)).filter((t) => t.startsWith('while you were away'));
  assert.deepEqual(texts, [1, 2, 3].map((n) => `while you were away ${n}`));
});

test('a group: create, talk, rename (a system message), and the phone layout', async () => {
  await alice.page.locator('#new-group summary').click();
  await alice.page.getByLabel('Group name').fill('team');
  await alice.page.getByLabel('Members (usernames, comma separated)').fill(bob.name);
  await alice.page.getByRole('button', { name: 'Create group' }).click();
  await alice.page.locator('#chat-title', { hasText: 'team' }).waitFor(WAIT);
  await send(alice, 'welcome to the team');
  await openConversation(bob, 'team');
  await bob.page.locator('#messages li.msg .text', { hasText: 'welcome' }).waitFor(WAIT);
  await send(bob, 'glad to be here');
  await alice.page.locator('#messages li.msg .text', { hasText: 'glad to be here' }).waitFor(WAIT);
  await alice.page.locator('#messages li.sender', { hasText: bob.name }).waitFor(WAIT);

  // Alice renames it from the group panel: both see the system message.
  await alice.page.getByRole('button', { name: 'Group', exact: true }).click();
  await alice.page.getByLabel('Group name', { exact: true }).last().fill('team two');
  await alice.page.getByRole('button', { name: 'Rename' }).click();
  for (const u of [alice, bob]) {
    await u.page.locator('#messages li.system', { hasText: 'renamed the group to “team two”' }).waitFor(WAIT);
    await u.page.locator('#chat-title', { hasText: 'team two' }).waitFor(WAIT);
  }
  await shot(bob.page, 'group-chat.png');

  await bob.page.setViewportSize({ width: 390, height: 760 });
  await bob.page.getByRole('button', { name: 'Back to conversations' }).click();
  await bob.page.locator('#conversations').waitFor(WAIT);
  await shot(bob.page, 'phone.png');
  assert.deepEqual([...alice.errors, ...bob.errors], []);
});

test('a session ended elsewhere (logged out everywhere) shows the sign-in page with the reason', async () => {
  // Alice signs in a second time in another browser, then signs out
  // everywhere from there: the first page is told at once.
  const second = await user('alice');
  second.name = alice.name;
  await second.page.getByLabel('Username', { exact: true }).fill(alice.name);
  await second.page.getByLabel('Password', { exact: true }).fill('correct horse battery');
  await second.page.getByRole('button', { name: 'Sign in' }).click();
  await second.page.locator('#me').filter({ hasText: alice.name }).waitFor(WAIT);
  await second.page.getByRole('button', { name: 'Everywhere' }).click();
  await second.page.getByRole('button', { name: 'Sign in' }).waitFor(WAIT);
  await alice.page.locator('#signin-error', { hasText: 'token revoked' }).waitFor(WAIT);
  assert.equal(await alice.page.evaluate(() => sessionStorage.getItem('palaver.token')), null);
  await second.context.close();
  assert.deepEqual([...alice.errors, ...second.errors], []);
});

test('a reload keeps the user signed in (the token is in session storage); signing out revokes and forgets it', async () => {
  await bob.page.reload();
  await bob.page.locator('#me', { hasText: bob.name }).waitFor(WAIT);
  await bob.page.locator('#conversations button.conv', { hasText: 'team two' }).waitFor(WAIT);
  const token = await bob.page.evaluate(() => sessionStorage.getItem('palaver.token'));
  await bob.page.getByRole('button', { name: 'Sign out' }).click();
  await bob.page.getByRole('button', { name: 'Sign in' }).waitFor(WAIT);
  await bob.page.reload();
  await bob.page.getByRole('button', { name: 'Sign in' }).waitFor(WAIT);
  assert.equal(await bob.page.evaluate(() => sessionStorage.getItem('palaver.token')), null);
  // The token is revoked on the server, not only forgotten here.
  const res = await fetch(`${URL}/api/me`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 401);
  assert.match((await res.json()).error.message, /token revoked/);
});
