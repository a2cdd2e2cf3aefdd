// The GraphQL playground as a person uses it, in Debian's headless Chromium:
// open /graphql, sign in with the `login` mutation, copy the access token
// from the result pane into the Headers tab, ask `me` and see one's email.
//
// Along the way every request the page makes must stay on the server's
// origin, and the page must log no error (a CSP violation is one).
//
// Usage: node tests/browser/playground.mjs <base-url> <email> <password>
// Chromium is /usr/bin/chromium unless TEST_CHROMIUM names another binary.
// Run by tests/api/browser.rs; exits non-zero, with a screenshot, on failure.

import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const STEP_TIMEOUT_MS = 30_000;
const WHOLE_RUN_MS = 150_000;

const [base, email, password] = process.argv.slice(2);
if (!base || !email || !password) {
  console.error('usage: node playground.mjs <base-url> <email> <password>');
  process.exit(2);
}
const origin = new URL(base).origin;
const executablePath = process.env.TEST_CHROMIUM || '/usr/bin/chromium';

/** Everything that went wrong besides the step that threw. */
const problems = [];
/** Every URL the page asked for, in order, for the failure report. */
const requested = [];

let step = 'starting';
function log(message) {
  step = message;
  console.log(`- ${message}`);
}

// A hung browser must not hang the test that runs this script.
setTimeout(() => {
  console.error(`FAIL: gave up after ${WHOLE_RUN_MS / 1000}s, during: ${step}`);
  process.exit(1);
}, WHOLE_RUN_MS).unref();

if (!existsSync(executablePath)) {
  console.error(`FAIL: no Chromium at ${executablePath}: apt-get install chromium (or set TEST_CHROMIUM)`);
  process.exit(1);
}

log(`start ${executablePath}`);
// Playwright already turns off Chromium's background networking, updates
// and sync; QUIC and the GPU are of no use to a headless test here.
const CHROMIUM_ARGS = ['--disable-gpu', '--disable-quic'];
const browser = await chromium
  .launch({ executablePath, headless: true, args: CHROMIUM_ARGS })
  .catch((error) => {
    console.error(`FAIL: Chromium did not start: ${error.message}`);
    process.exit(1);
  });

let page;
let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  watchOrigins(context);
  await watchCsp(context);
  page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  watchErrors(page);

  await run(page);
  log('check what else the page did');
  if (problems.length > 0) {
    throw new Error('the page misbehaved');
  }
  console.log(`ok: ${requested.length} requests, all to ${origin}; no console errors`);
} catch (error) {
  exitCode = 1;
  console.error(`FAIL during "${step}": ${error.message}`);
  for (const problem of problems) {
    console.error(`  ${problem}`);
  }
  console.error(`requests made:\n  ${requested.join('\n  ') || '(none)'}`);
  if (page) {
    const shot = join(tmpdir(), `spanglish-playground-${Date.now()}.png`);
    try {
      await page.screenshot({ path: shot, fullPage: true });
      console.error(`screenshot: ${shot}`);
    } catch (shotError) {
      console.error(`no screenshot: ${shotError.message}`);
    }
  }
} finally {
  await browser.close();
}
process.exit(exitCode);

/** The walk itself: what a person would click and type. */
async function run(page) {
  log(`open ${base}/graphql`);
  const response = await page.goto(`${base}/graphql`);
  if (!response || !response.ok()) {
    throw new Error(`GET /graphql answered ${response ? response.status() : 'nothing'}`);
  }

  log('wait for GraphiQL');
  await page.locator('.graphiql-query-editor .CodeMirror').waitFor();
  await page.locator('.graphiql-execute-button').waitFor();

  log('type the login mutation and run it');
  await typeInto(
    page.locator('.graphiql-query-editor .CodeMirror'),
    `mutation { login(email: ${JSON.stringify(email)}, password: ${JSON.stringify(password)}) { accessToken } }`,
  );
  const login = await execute(page, 'accessToken');
  const token = login?.data?.login?.accessToken;
  if (typeof token !== 'string' || token.length === 0) {
    throw new Error(`no access token in the result pane: ${JSON.stringify(login)}`);
  }

  log('put the token in the Headers tab');
  await page.locator('.graphiql-editor-tools').getByRole('button', { name: 'Headers', exact: true }).click();
  const headers = page.locator('.graphiql-editor-tool .CodeMirror').filter({ visible: true });
  await typeInto(headers, `{"Authorization": "Bearer ${token}"}`);

  log('ask for me and run it');
  await typeInto(page.locator('.graphiql-query-editor .CodeMirror'), '{ me { email role } }');
  const me = await execute(page, email);
  if (me?.data?.me?.email !== email || me?.data?.me?.role !== 'MEMBER') {
    throw new Error(`the result pane does not show the member: ${JSON.stringify(me)}`);
  }
  console.log(`  the result pane shows ${me.data.me.email} (${me.data.me.role})`);
}

/** Replaces an editor's text by typing, as a person would: click, select all, type. */
async function typeInto(editor, text) {
  const keyboard = editor.page().keyboard;
  await editor.click();
  await keyboard.press('ControlOrMeta+A');
  await keyboard.press('Delete');
  // One line: GraphiQL's autocomplete popup would take an Enter as a choice.
  // Its auto-closed brackets and quotes are typed over by the closing ones.
  await keyboard.type(text);
  await keyboard.press('Escape');

  // Read back through CodeMirror's own API (reading only), so that a key
  // the editor swallowed shows up here rather than as a puzzling result.
  const typed = await editor.evaluate((node) => node.CodeMirror.getValue());
  if (typed !== text) {
    throw new Error(`the editor holds ${JSON.stringify(typed)} instead of ${JSON.stringify(text)}`);
  }
}

/**
 * Clicks the run button and waits until the result pane shows `expected`;
 * returns the pane's text parsed as JSON.
 */
async function execute(page, expected) {
  const before = await paneText(page);
  await page.getByRole('button', { name: 'Execute query (Ctrl-Enter)', exact: true }).click();

  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let text = before;
  while (text === before || !text.includes(expected)) {
    if (Date.now() > deadline) {
      throw new Error(`the result pane never showed ${JSON.stringify(expected)}; it shows: ${text}`);
    }
    await page.waitForTimeout(100);
    text = await paneText(page);
  }

  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`the result pane is not JSON: ${text}`);
  }
}

/**
 * The result pane's text as a person reads it: its lines, not the fold
 * markers beside them; CodeMirror renders spaces as non-breaking ones and
 * pads empty lines with a zero-width space.
 */
async function paneText(page) {
  const lines = await page.locator('.graphiql-response .CodeMirror-line').allInnerTexts();
  return lines.join('\n').replace(/\u00a0/g, ' ').replace(/\u200b/g, '');
}

/** Fails the run on any request, of the page or a worker, to another origin. */
function watchOrigins(context) {
  context.on('request', (request) => {
    requested.push(`${request.method()} ${request.url()}`);
  });
  // Abort rather than let through: the test must not depend on the network,
  // and the page must not be seen to work only because the request did.
  context.route('**/*', (route) => {
    const url = route.request().url();
    if (sameOrigin(url)) {
      return route.continue();
    }
    problems.push(`request to another origin: ${url}`);
    return route.abort('blockedbyclient');
  });
  context.on('page', (p) =>
    p.on('websocket', (socket) => {
      const wsOrigin = new URL(socket.url());
      if (`${wsOrigin.protocol === 'wss:' ? 'https:' : 'http:'}//${wsOrigin.host}` !== origin) {
        problems.push(`websocket to another origin: ${socket.url()}`);
      }
    }),
  );
}

function sameOrigin(url) {
  const parsed = new URL(url);
  if (parsed.protocol === 'data:' || parsed.protocol === 'blob:') {
    return true;
  }
  return parsed.origin === origin;
}

/**
 * Reports each Content-Security-Policy violation as the page sees it. The
 * listener is installed by the browser's debugging protocol, which the CSP
 * does not govern, so it runs even though the page allows no inline script.
 */
async function watchCsp(context) {
  await context.exposeFunction('reportCspViolation', (text) => {
    problems.push(`CSP violation: ${text}`);
  });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      window.reportCspViolation(`${event.violatedDirective} blocked ${event.blockedURI || 'inline code'}`);
    });
  });
}

/** Console errors, uncaught exceptions and CSP violations all count as failures. */
function watchErrors(page) {
  page.on('console', (message) => {
    if (message.type() === 'error') {
      problems.push(`console error: ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => {
    problems.push(`uncaught exception: ${error.message}`);
  });
  page.on('requestfailed', (request) => {
    if (sameOrigin(request.url())) {
      problems.push(`request failed: ${request.url()} (${request.failure()?.errorText})`);
    }
  });
  page.on('response', (response) => {
    if (response.status() >= 400) {
      problems.push(`${response.status()} for ${response.url()}`);
    }
  });
}
