// tests/browser/portal.mjs <input.json> — the user portal (docs/portal.md) in
// a real browser: Debian's /usr/bin/chromium, headless, driven by
// playwright-core through HAProxy's TLS front. One scenario per run:
//
//   full       sign in (PIN + SMS code), set up an authenticator app by
//              reading the secret from the page, sign out, sign in with a
//              TOTP code, change the PIN, sign in with the new PIN
//   read-only  (the runner stopped the primary) the banner on every page, a
//              PIN change refused with a message, never an error page; ends
//              signed in and saves the browser's cookies for node-kill
//   node-kill  (the runner killed the node that held that session) the next
//              page is the sign-in page saying the session ended, served by
//              another node, and signing in there works
//
// The input file, written by the runner (tests/integration/test_portal_browser.py):
//   portal_url   https://127.0.0.1:<api port>/portal/
//   ca           the cluster's CA certificate (PEM): the server's certificate
//                is verified against it and only that key is trusted
//   members      node ids; every response's X-MFA-Node must be one of them
//   user         { username, pin, new_pin, phone }
//   sms_outboxes every node's SMS outbox file (the file provider)
//   state_file   JSON kept between scenarios: the TOTP secret, the last
//                TOTP step used, the PIN in force, the browser's cookies
//   artifacts    directory for screenshots (default build/test/artifacts/browser)
//   modules      node_modules holding playwright-core (default build/browser/node_modules)
//   dead_node    node-kill: the node the runner killed
//   scenario     full, read-only or node-kill
// Prints one JSON summary line; exits 1 on a failure, with the reason and a
// screenshot of the page as it was.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const top = path.resolve(here, '..', '..');
const STEP_TIMEOUT_MS = 15000;
const READ_ONLY_ERROR = 'Changes are paused until the primary server is back; nothing was changed.';
const SESSION_ENDED = 'Your session has ended';

class Failure extends Error {}

function fail(msg) {
  throw new Failure(msg);
}

// -- TOTP (RFC 6238 over RFC 4226: SHA1, 30 s steps, 6 digits) --

function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const clean = text.replace(/[\s=]/g, '').toUpperCase();
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of clean) {
    const v = alphabet.indexOf(ch);
    if (v < 0) fail(`the TOTP secret on the page is not base32: ${JSON.stringify(ch)}`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

function hotp(key, counter) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = crypto.createHmac('sha1', key).update(msg).digest();
  const off = mac[mac.length - 1] & 0x0f;
  const bin = mac.readUInt32BE(off) & 0x7fffffff;
  return String(bin % 1000000).padStart(6, '0');
}

const currentStep = () => Math.floor(Date.now() / 30000);

// A code the server has not seen: the server refuses a step already used
// (replay), so wait for the clock to reach a later one, within a deadline.
async function freshTotp(state) {
  const deadline = Date.now() + 35000;
  while (currentStep() <= (state.last_step ?? -1)) {
    if (Date.now() > deadline) fail('the clock did not reach a new TOTP step within 35 s');
    await new Promise((r) => setTimeout(r, 200));
  }
  const step = currentStep();
  state.last_step = step;
  saveState(state);
  return hotp(base32Decode(state.secret), step);
}

// -- the runner's input and the state between scenarios --

const input = JSON.parse(fs.readFileSync(process.argv[2] ?? fail('usage: portal.mjs <input.json>'), 'utf8'));
const scenario = input.scenario;
const artifacts = input.artifacts ?? process.env.MFA_BROWSER_ARTIFACTS ??
  path.join(top, 'build', 'test', 'artifacts', 'browser');
fs.mkdirSync(artifacts, { recursive: true });
const portal = new URL(input.portal_url);
const user = input.user;

function loadState() {
  try {
    return JSON.parse(fs.readFileSync(input.state_file, 'utf8'));
  } catch (e) {
    if (e.code === 'ENOENT') return { pin: user.pin };
    throw e;
  }
}

function saveState(state) {
  // The file holds a TOTP secret, a PIN and session cookies: the runner's only.
  fs.writeFileSync(input.state_file + '.tmp', JSON.stringify(state), { mode: 0o600 });
  fs.renameSync(input.state_file + '.tmp', input.state_file);
}

// -- trust: the server's certificate chains to the cluster's CA --

// Node verifies HAProxy's certificate against the cluster's CA; chromium is
// then told to accept that one public key (the SPKI pin), not every
// certificate error.
function serverSpkiPin() {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      host: portal.hostname, port: Number(portal.port || 443), ca: fs.readFileSync(input.ca),
      servername: isIpAddress(portal.hostname) ? undefined : portal.hostname,
    }, () => {
      const raw = sock.getPeerCertificate().raw;
      sock.end();
      const spki = new crypto.X509Certificate(raw).publicKey.export({ type: 'spki', format: 'der' });
      resolve(crypto.createHash('sha256').update(spki).digest('base64'));
    });
    sock.setTimeout(10000, () => sock.destroy(new Error('TLS handshake timed out')));
    sock.on('error', (e) => reject(new Failure(`${portal.host}: the certificate does not verify ` +
      `against the cluster's CA or the server does not answer: ${e.message}`)));
  });
}

function isIpAddress(host) {
  return /^[\d.]+$/.test(host) || host.includes(':');
}

// -- what every response said --

// Per response of the portal's origin: the node that served it (X-MFA-Node),
// the session cookie the request carried and the one the response set.
class Recorder {
  constructor(members) {
    this.members = new Set(members);
    this.entries = [];
    this.pending = [];
    this.redispatchedFrom = null; // node-kill: that node's session may be served elsewhere
  }

  attach(context) {
    context.on('response', (resp) => {
      const url = new URL(resp.url());
      if (url.origin !== portal.origin) return;
      this.pending.push(this.record(resp, url));
    });
  }

  async record(resp, url) {
    const req = resp.request();
    const reqHeaders = await req.allHeaders().catch(() => ({}));
    const setCookies = (await resp.headersArray().catch(() => []))
      .filter((h) => h.name.toLowerCase() === 'set-cookie').map((h) => h.value);
    const sent = /(?:^|;\s*)mfa_sid=([^;]+)/.exec(reqHeaders.cookie ?? '');
    const set = setCookies.map((c) => /^mfa_sid=([^;]*)/.exec(c)).filter(Boolean).map((m) => m[1]);
    this.entries.push({
      method: req.method(), path: url.pathname, status: resp.status(),
      node: resp.headers()['x-mfa-node'] ?? null, sent: sent ? sent[1] : null, set,
      document: req.resourceType() === 'document',
      headers: resp.headers(),
    });
  }

  async settle() {
    while (this.pending.length) await Promise.all(this.pending.splice(0));
  }

  nodes() {
    return [...new Set(this.entries.map((e) => e.node))];
  }

  // Every response named a known node; a session cookie is served by the node
  // its prefix names, and a node only hands out cookies of its own; one
  // session (one cookie value) never saw two nodes.
  async check() {
    await this.settle();
    const bySession = new Map();
    for (const e of this.entries) {
      const what = `${e.method} ${e.path} (${e.status})`;
      if (e.status >= 400) fail(`${what}: an error answer in the flow`);
      if (!e.node) fail(`${what}: no X-MFA-Node header`);
      if (!this.members.has(e.node)) fail(`${what}: X-MFA-Node ${e.node} is not a member`);
      for (const c of e.set) {
        if (c && !c.startsWith(e.node + '-')) fail(`${what}: node ${e.node} set mfa_sid=${c.split('-')[0]}-…`);
      }
      if (!e.sent) continue;
      const owner = e.sent.split('-')[0];
      if (owner === this.redispatchedFrom && e.node !== owner) continue;
      if (e.node !== owner) fail(`${what}: a session of ${owner} was served by ${e.node} (not sticky)`);
      const seen = bySession.get(e.sent) ?? new Set();
      seen.add(e.node);
      bySession.set(e.sent, seen);
    }
    for (const [sid, seen] of bySession) {
      if (seen.size > 1) fail(`session ${sid.split('-')[0]}-… saw nodes ${[...seen].join(', ')}`);
    }
  }

  // The node of the last response: the one holding the session now.
  last() {
    return this.entries.at(-1)?.node ?? null;
  }
}

// -- the browser --

const steps = [];
let page;
let recorder;
let shot = 0;

// <mask>: selectors painted over in the picture (the TOTP secret, its QR code and URI).
async function screenshot(name, mask = []) {
  shot += 1;
  const file = path.join(artifacts, `${scenario}-${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true, mask: mask.map((sel) => page.locator(sel)) });
  return file;
}

// What shows a TOTP secret: never in a screenshot kept as an artifact.
const SECRET_MASK = ['#totp-secret', '#otpauth-uri', 'svg#qr'];

// One step of the flow: timed, screenshotted (with <mask> painted over), recorded in the summary.
async function step(name, fn, mask = []) {
  const start = Date.now();
  const entry = { name, ok: false };
  steps.push(entry);
  await fn();
  await recorder.settle();
  entry.ok = true;
  entry.ms = Date.now() - start;
  entry.node = recorder.last();
  entry.screenshot = await screenshot(name, mask);
}

async function text(sel) {
  const loc = page.locator(sel);
  return (await loc.count()) ? (await loc.first().innerText()).trim() : null;
}

// The page must be <pathname> (null: any), not an error page; what it says otherwise.
async function expectPage(pathname, what) {
  const url = new URL(page.url());
  const doc = recorder.entries.filter((e) => e.document).at(-1);
  if (doc && doc.status >= 400) {
    fail(`${what}: an error page (HTTP ${doc.status} for ${doc.method} ${doc.path}): ` +
      `${((await page.locator('body').innerText().catch(() => '')) || '').slice(0, 300)}`);
  }
  if (pathname && url.pathname !== pathname) {
    fail(`${what}: expected ${pathname}, got ${url.pathname}` +
      ` (#error: ${await text('#error')}; #notice: ${await text('#notice')})`);
  }
  // The page's own word on who served it matches the header.
  const footer = await text('footer');
  if (!footer || !doc || footer !== `Served by ${doc.node}`) {
    fail(`${what}: footer ${JSON.stringify(footer)} does not name the node of X-MFA-Node ${doc?.node}`);
  }
  const csp = doc.headers['content-security-policy'] ?? '';
  if (!csp.includes("default-src 'none'") || doc.headers['x-frame-options'] !== 'DENY') {
    fail(`${what}: the security headers are missing (CSP ${JSON.stringify(csp)})`);
  }
}

async function submit(formSel, fields) {
  const form = page.locator(formSel);
  if (!(await form.count())) fail(`${page.url()}: no ${formSel} on the page`);
  for (const [name, value] of Object.entries(fields)) {
    const field = form.locator(`[name="${name}"]`);
    if ((await field.evaluate((el) => el.tagName)) === 'SELECT') await field.selectOption(value);
    else await field.fill(value);
  }
  await Promise.all([
    page.waitForNavigation({ timeout: STEP_TIMEOUT_MS }),
    form.locator('[type=submit]').first().click(),
  ]);
  await recorder.settle();
}

// <sel> must say <wanted> (a part of its text; '' is refused: it would match anything).
async function expectText(sel, wanted, what) {
  if (!wanted) throw new Error(`expectText(${sel}) without a text to expect`);
  const got = await text(sel);
  if (got === null || !got.includes(wanted)) {
    fail(`${what}: ${sel} says ${JSON.stringify(got)}, expected ${JSON.stringify(wanted)}`);
  }
}

async function expectBanner(present, what) {
  const got = await text('#banner-read-only');
  if (present && !got?.includes('Changes are paused until the primary server is back.')) {
    fail(`${what}: no read-only banner (#banner-read-only: ${JSON.stringify(got)})`);
  }
  if (!present && got !== null) fail(`${what}: a read-only banner with a writable primary`);
}

// -- the flows --

async function openSignIn(state, what) {
  await page.goto(portal.href, { timeout: STEP_TIMEOUT_MS });
  await recorder.settle();
  await expectPage('/portal/', what);
  const pin = page.locator('#signin [name=pin]');
  if ((await pin.getAttribute('type')) !== 'password') fail(`${what}: the PIN field is not a password field`);
}

async function signInPin(state, pin, what) {
  await submit('#signin', { username: user.username, pin });
  await expectPage('/portal/factor', what);
}

// The messages to the user's phone in every node's SMS outbox (JSON lines; a
// line still being written is skipped until it is whole).
function smsMessages() {
  return Object.values(input.sms_outboxes).flatMap((f) => {
    let lines;
    try {
      lines = fs.readFileSync(f, 'utf8').split('\n');
    } catch (e) {
      if (e.code === 'ENOENT') return [];
      throw e;
    }
    return lines.flatMap((l) => {
      try {
        return [JSON.parse(l)];
      } catch {
        return [];
      }
    });
  }).filter((m) => m.to === user.phone);
}

// The code of the SMS sent after <before> messages, within a deadline.
async function smsCode(before) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  for (;;) {
    const msgs = smsMessages();
    if (msgs.length > before) {
      const m = /(\d{6})\b/.exec(msgs.at(-1).text);
      if (!m) fail('the SMS holds no 6-digit code');
      return m[1];
    }
    if (Date.now() > deadline) fail(`no SMS to ${user.phone} within ${STEP_TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function signInTotp(state, what) {
  await signInPin(state, state.pin, what);
  await expectText('body', 'authenticator app', what);
  await submit('#factor', { code: await freshTotp(state) });
  await expectPage('/portal/home', what);
}

async function sessionCookie(context) {
  return (await context.cookies()).find((c) => c.name === 'mfa_sid') ?? null;
}

async function full(state, context) {
  let anonymous;
  await step('signin-page', async () => {
    await openSignIn(state, 'the sign-in page');
    await expectBanner(false, 'the sign-in page');
    // The session starts with the sign-in page, so the whole of it is sticky.
    anonymous = await sessionCookie(context);
    if (!anonymous) fail('the sign-in page set no mfa_sid cookie');
    const { httpOnly, secure, sameSite, path: cpath } = anonymous;
    if (!httpOnly || !secure || sameSite !== 'Strict' || cpath !== '/portal/') {
      fail('mfa_sid is not HttpOnly, Secure, SameSite=Strict, Path=/portal/: ' +
        JSON.stringify({ httpOnly, secure, sameSite, cpath }));
    }
  });
  const before = smsMessages().length;
  await step('pin-accepted', async () => {
    await signInPin(state, state.pin, 'the PIN');
    await expectText('body', `phone ending ${user.phone.slice(-4)}`, 'the SMS factor page');
  });
  await step('sms-code-home', async () => {
    await submit('#factor', { code: await smsCode(before) });
    await expectPage('/portal/home', 'the SMS code');
    await expectText('#method', 'sms', 'home');
    await expectText('#phone', user.phone, 'home');
    // No session fixation: signing in replaced the session id.
    if ((await sessionCookie(context))?.value === anonymous.value) {
      fail('the session id survived the sign-in');
    }
  });
  await step('totp-page', async () => {
    await page.locator('#totp-link').click();
    await page.waitForURL((u) => u.pathname === '/portal/totp', { timeout: STEP_TIMEOUT_MS });
    await recorder.settle();
    await expectPage('/portal/totp', 'the authenticator page');
    state.secret = (await text('#totp-secret')) ?? fail('no #totp-secret on the authenticator page');
    const uri = (await text('#otpauth-uri')) ?? '';
    if (!uri.startsWith('otpauth://totp/') || !uri.includes(`secret=${state.secret}`)) {
      fail(`the otpauth URI ${JSON.stringify(uri.replace(state.secret, '<secret>'))} does not carry the secret`);
    }
    if (!(await page.locator('svg#qr').count())) fail('no QR code (svg#qr) on the authenticator page');
    if (page.url().includes(state.secret)) fail('the TOTP secret is in the URL');
    saveState(state);
  }, SECRET_MASK);
  await step('totp-wrong-code', async () => {
    const right = hotp(base32Decode(state.secret), currentStep());
    await submit('#totp-form', { code: right === '000000' ? '111111' : '000000', current_pin: state.pin });
    await expectPage('/portal/totp', 'a wrong enrolment code');
    await expectText('#error', 'That code is not right.', 'a wrong enrolment code');
    if ((await text('#totp-secret')) !== state.secret) fail('a wrong code changed the pending secret');
  }, SECRET_MASK);
  await step('totp-wrong-pin', async () => {
    // Confirming an app takes the current PIN too; a wrong one keeps the pending secret.
    const wrongPin = state.pin === '9999' ? '8888' : '9999';
    // The code of the step now, not spent: the PIN is refused before the code is stored.
    const code = hotp(base32Decode(state.secret), currentStep());
    await submit('#totp-form', { code, current_pin: wrongPin });
    await expectPage('/portal/totp', 'a wrong current PIN at enrolment');
    await expectText('#error', 'Your current PIN is not right.', 'a wrong current PIN at enrolment');
    if ((await text('#totp-secret')) !== state.secret) fail('a wrong PIN changed the pending secret');
  }, SECRET_MASK);
  await step('totp-enrolled', async () => {
    await submit('#totp-form', { code: await freshTotp(state), current_pin: state.pin });
    await expectPage('/portal/home', 'the enrolment code');
    await expectText('#notice', 'Authenticator app set up.', 'after enrolment');
    await expectText('#method', 'totp', 'after enrolment');
  });
  await step('signed-out', async () => {
    await submit('#signout', {});
    await expectPage('/portal/', 'sign out');
    await expectText('#notice', 'You are signed out.', 'sign out');
  });
  await step('signed-in-with-totp', () => signInTotp(state, 'sign-in with TOTP'));
  await step('pin-changed', async () => {
    await submit('#pin-form', { current_pin: state.pin, new_pin: user.new_pin, new_pin2: user.new_pin });
    await expectPage('/portal/home', 'the PIN change');
    const err = await text('#error');
    if (err) fail(`the PIN change was refused: ${err}`);
    if (!(await text('#notice'))) fail('the PIN change said nothing (#notice)');
    state.pin = user.new_pin;
    saveState(state);
  });
  await step('signed-out-again', async () => {
    await submit('#signout', {});
    await expectPage('/portal/', 'sign out');
  });
  await step('new-pin-accepted', () => signInPin(state, state.pin, 'sign-in with the new PIN'));
}

async function readOnly(state, context) {
  await step('signin-page-banner', async () => {
    await openSignIn(state, 'the sign-in page');
    await expectBanner(true, 'the sign-in page');
  });
  await step('signed-in-read-only', async () => {
    await signInTotp(state, 'sign-in without a primary');
    await expectBanner(true, 'home');
    await expectText('#method', 'totp', 'home');
  });
  await step('pin-change-refused', async () => {
    await submit('#pin-form', { current_pin: state.pin, new_pin: user.pin, new_pin2: user.pin });
    await expectPage('/portal/home', 'the PIN change without a primary');
    await expectBanner(true, 'the refused PIN change');
    await expectText('#error', READ_ONLY_ERROR, 'the refused PIN change');
  });
  // Still signed in, on one node: node-kill starts from here.
  state.cookies = (await context.storageState()).cookies;
  state.session_node = recorder.last();
  saveState(state);
}

async function nodeKill(state) {
  recorder.redispatchedFrom = input.dead_node;
  await step('session-ended', async () => {
    await page.goto(new URL('home', portal).href, { timeout: STEP_TIMEOUT_MS });
    await recorder.settle();
    // The sign-in page, at /portal/home or after a redirect to /portal/.
    await expectPage(null, 'the first page after the node died');
    if (!(await page.locator('#signin').count())) fail('the first page after the node died is not the sign-in page');
    await expectText('#notice', SESSION_ENDED, 'the first page after the node died');
    const node = recorder.last();
    if (node === input.dead_node) fail(`the dead node ${node} answered`);
  });
  // The PIN the refused change left in force still signs in, on the new node.
  await step('pin-accepted-elsewhere', () => signInPin(state, state.pin, 'sign-in after the node died'));
}

async function main() {
  const require = createRequire(path.join(input.modules ?? process.env.MFA_BROWSER_MODULES ??
    path.join(top, 'build', 'browser', 'node_modules'), 'x.js'));
  const { chromium } = require('playwright-core');
  const state = loadState();
  const pin = await serverSpkiPin();
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', `--ignore-certificate-errors-spki-list=${pin}`],
  });
  const summary = { scenario, ok: false, steps, artifacts };
  try {
    const context = await browser.newContext({
      viewport: { width: 390, height: 844 }, // a phone
      storageState: scenario === 'node-kill' ? { cookies: state.cookies ?? [], origins: [] } : undefined,
    });
    recorder = new Recorder(input.members);
    recorder.attach(context);
    page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    if (scenario === 'full') await full(state, context);
    else if (scenario === 'read-only') await readOnly(state, context);
    else if (scenario === 'node-kill') await nodeKill(state);
    else fail(`unknown scenario ${JSON.stringify(scenario)}`);
    await recorder.check();
    summary.ok = true;
  } catch (e) {
    summary.error = e instanceof Failure ? e.message : String(e?.stack ?? e);
    if (page) summary.final_screenshot = await screenshot('failed').catch(() => null);
  } finally {
    if (recorder) {
      await recorder.settle().catch(() => {});
      summary.nodes = recorder.nodes();
      summary.session_node = recorder.last();
      summary.requests = recorder.entries.map((e) => `${e.method} ${e.path} ${e.status} ${e.node}`);
    }
    await browser.close();
  }
  console.log(JSON.stringify(summary));
  if (!summary.ok) {
    console.error(`portal.mjs ${scenario}: FAILED: ${summary.error}`);
    process.exit(1);
  }
}

main().catch((e) => {
  console.log(JSON.stringify({ scenario, ok: false, steps, error: String(e?.message ?? e) }));
  console.error(`portal.mjs ${scenario}: FAILED: ${e?.message ?? e}`);
  process.exit(1);
});
