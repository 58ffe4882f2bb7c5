// Serves the test page on two loopback origins and drives Debian's Chromium through
// them with playwright-core: on the allowed origin the page loads, is clicked and
// navigated away from; on the other origin it only loads (its exports must be refused).
// Usage: node drive.mjs <cerflow OTLP/HTTP endpoint> <token> <allowed port> <other port>
// Prints one JSON line: what the pages saw.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { chromium } from 'playwright-core';

const [endpoint, token, allowedPort, otherPort] = process.argv.slice(2);
const bundle = readFileSync(new URL('./dist/page.js', import.meta.url));
const html = `<!doctype html><html><head><meta charset="utf-8"><title>shop</title></head>
<body><h1>Shop</h1><p>A page with enough text to paint.</p><button id="buy">Buy</button>
<script>window.CERFLOW = ${JSON.stringify({ endpoint, token })};</script>
<script src="/page.js"></script></body></html>`;

function serve(port) {
  const server = http.createServer((req, res) => {
    if (req.url === '/page.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(bundle);
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(html);
    }
  });
  return new Promise((resolve) => server.listen(Number(port), '127.0.0.1', () => resolve(server)));
}

const servers = [await serve(allowedPort), await serve(otherPort)];
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const out = {};
try {
  const page = await browser.newPage();
  out.console = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') out.console.push(m.text());
  });
  page.on('pageerror', (e) => out.console.push(String(e)));
  const exports = { ok: 0, failed: 0 };
  page.on('requestfinished', async (r) => {
    if (r.url().startsWith(endpoint)) {
      const resp = await r.response();
      if (resp && resp.status() === 200) exports.ok += 1;
    }
  });
  page.on('requestfailed', (r) => {
    if (r.url().startsWith(endpoint)) exports.failed += 1;
  });
  await page.goto(`http://127.0.0.1:${allowedPort}/`);
  await page.waitForFunction(() => window.cerflowLoaded === true);
  await page.click('#buy');
  await page.waitForFunction(() => window.cerflowClicked === true);
  // Let the exports of the load, the click and the first vitals finish.
  await page.waitForTimeout(1500);
  out.vitals = await page.evaluate(() => window.cerflowVitals || 0);
  await page.goto('about:blank');
  await page.waitForTimeout(500);
  out.allowed = { ...exports };

  // The same page from an origin cerflow does not allow: every export fails.
  const other = await browser.newPage();
  const refused = { ok: 0, failed: 0 };
  other.on('requestfailed', (r) => {
    if (r.url().startsWith(endpoint)) refused.failed += 1;
  });
  other.on('requestfinished', (r) => {
    if (r.url().startsWith(endpoint)) refused.ok += 1;
  });
  await other.goto(`http://127.0.0.1:${otherPort}/`);
  await other.waitForFunction(() => window.cerflowLoaded === true);
  await other.waitForTimeout(1500);
  out.other = refused;
} finally {
  await browser.close();
  for (const s of servers) s.close();
}
console.log(JSON.stringify(out));
