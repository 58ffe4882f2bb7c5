// Drives cerflow's web view in Debian's Chromium with playwright-core; run by
// tests/e2e/test_webview.py while `cerflow loadgen` plays a scenario with a fault phase.
//
//   node webview.mjs BASE_URL SCREENSHOT_DIR
//
// Prints one line per step ("STEP name {json}") for the test to follow. After
// "STEP stop-cerflow" it waits for the test to stop cerflow and checks that the page
// says so. Exits non-zero with the reason on the first failed check.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error("usage: node webview.mjs BASE_URL SCREENSHOT_DIR");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

function step(name, data) {
  console.log(`STEP ${name} ${JSON.stringify(data ?? {})}`);
}

function fail(msg) {
  throw new Error(msg);
}

// WCAG 2 contrast of every piece of text on the page against the background it sits on
// (the nearest ancestor with an opaque one): the lowest ratios found, worst first.
async function contrast(page) {
  return page.evaluate(() => {
    const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (c) => ((c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const bg = (el) => {
      for (; el; el = el.parentElement) {
        const c = rgb(getComputedStyle(el).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    const out = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!n.textContent.trim() || !el || el.closest("noscript, svg")) continue;
      if (el.getClientRects().length === 0) continue;
      const a = lum(rgb(getComputedStyle(el).color).slice(0, 3)), b = lum(bg(el));
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      out.push([Math.round(ratio * 100) / 100, n.textContent.trim().slice(0, 30)]);
    }
    out.sort((x, y) => x[0] - y[0]);
    return out.slice(0, 3);
  });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });

  // 1. The overview: the degraded journey is the first row, shown failing. The test
  // starts the load once the page shows its (still empty) journeys.
  await page.goto(base + "/");
  await page.waitForSelector("#journeys tbody tr", { timeout: 30000 });
  step("loaded");
  const first = page.locator("#journeys tbody tr").first();
  await page.waitForFunction(
    () => {
      const r = document.querySelector("#journeys tbody tr");
      return r && r.dataset.journey === "checkout" && r.dataset.status === "failing";
    },
    null,
    { timeout: 30000, polling: 100 },
  );
  const firstText = (await first.innerText()).replace(/\s+/g, " ");
  if (!/Failing/.test(firstText)) fail(`the first row does not say Failing: ${firstText}`);
  const order = await page.$$eval("#journeys tbody tr", (rs) => rs.map((r) => [r.dataset.journey, r.dataset.status]));
  const incidentCells = await page.$$eval("#journeys tbody tr", (rs) => rs.map((r) => r.querySelector("td.incident")?.textContent ?? null));
  step("failing-first", { order, first: firstText, incidentCells });
  // The page is accessible as tables with headers and labelled inputs.
  const a11y = await page.evaluate(() => ({
    colHeaders: document.querySelectorAll("#journeys thead th[scope=col]").length,
    rowHeaders: document.querySelectorAll("#journeys tbody th[scope=row]").length,
    caption: document.querySelector("#journeys caption")?.textContent,
    labelled: [...document.querySelectorAll("input, select")].every((el) => el.labels && el.labels.length === 1),
  }));
  if (!a11y.labelled || a11y.colHeaders < 5 || a11y.rowHeaders !== order.length) fail(`not accessible: ${JSON.stringify(a11y)}`);
  a11y.lowestContrast = await contrast(page);
  if (a11y.lowestContrast[0][0] < 4.5) fail(`text below WCAG AA contrast: ${JSON.stringify(a11y.lowestContrast)}`);
  step("accessible", a11y);
  await page.screenshot({ path: join(shots, "overview-failing.png"), fullPage: true });

  // 1b. The journey page during the fault: the dependency its failures are blamed on
  // (from assembled traces) and the incident the page alert opened.
  const jf = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await jf.goto(base + "/journey?name=checkout");
  await jf.waitForFunction(
    () => document.querySelector("#blame tbody tr") && document.querySelector('#incidents tbody tr[data-open="true"]'),
    null,
    { timeout: 20000, polling: 100 },
  );
  const duringFault = await jf.evaluate(() => ({
    status: document.querySelector("h1 .badge")?.textContent,
    blame: [...document.querySelectorAll("#blame tbody tr")].map((r) => [r.dataset.dependency, Number(r.querySelector("td").textContent)]),
    dependencies: [...document.querySelectorAll("#dependencies tbody tr")].map((r) => [r.dataset.dependency, Number(r.querySelectorAll("td")[1].textContent)]),
    incidents: [...document.querySelectorAll("#incidents tbody tr")].map((r) => r.dataset.open),
    incidentHeaders: document.querySelectorAll("#incidents thead th[scope=col]").length,
    deployments: document.getElementById("no-deployments")?.textContent ?? null,
  }));
  duringFault.lowestContrast = await contrast(jf);
  if (duringFault.lowestContrast[0][0] < 4.5) fail(`text below WCAG AA contrast: ${JSON.stringify(duringFault.lowestContrast)}`);
  await jf.screenshot({ path: join(shots, "journey-failing.png"), fullPage: true });
  await jf.close();
  step("journey-failing", duringFault);

  // 2. Live: updates arrive without a reload, each within an evaluation interval + 1 s.
  await page.evaluate(() => {
    window.__sameDocument = true;
  });
  const interval = await page.evaluate(async () => {
    const r = await fetch("api/v1/ui");
    return (await r.json()).interval_ms;
  });
  const gaps = [];
  let last = await page.evaluate(() => document.getElementById("main").dataset.rendered);
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now();
    await page.waitForFunction(
      (prev) => document.getElementById("main").dataset.rendered !== prev,
      last,
      { timeout: interval + 1000, polling: 20 },
    );
    gaps.push(Date.now() - t0);
    last = await page.evaluate(() => document.getElementById("main").dataset.rendered);
  }
  step("updates", { interval_ms: interval, gaps_ms: gaps });

  // 3. The fault stops: the alert clears and the row stops saying Failing, on the same
  // document (no reload).
  await page.waitForFunction(
    () => {
      const r = document.querySelector('#journeys tbody tr[data-journey="checkout"]');
      return r && r.dataset.status !== "failing";
    },
    null,
    { timeout: 60000, polling: 100 },
  );
  const same = await page.evaluate(() => window.__sameDocument === true);
  if (!same) fail("the page was reloaded");
  const after = await page.$$eval("#journeys tbody tr", (rs) => rs.map((r) => [r.dataset.journey, r.dataset.status]));
  step("recovered", { order: after, conn: await page.locator("#conn").innerText() });
  await page.screenshot({ path: join(shots, "overview-recovered.png"), fullPage: true });

  // 4. Filters: by journey name, then by cohort value.
  await page.fill("#f-q", "car");
  const named = await page.$$eval("#journeys tbody tr", (rs) => rs.map((r) => r.dataset.journey));
  await page.fill("#f-q", "");
  await page.selectOption("#f-cohort", "cloud_region=eu-west-1");
  const cohortRows = await page.$$eval("#journeys tbody tr", (rs) =>
    rs.map((r) => [r.dataset.journey, r.querySelector("td").textContent]),
  );
  await page.selectOption("#f-cohort", "");
  step("filters", { named, cohortRows });

  // 5. Keyboard: from the page's start, Tab reaches the skip link, then the home link,
  // and Enter on a focused journey link opens the journey page.
  const kb = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await kb.goto(base + "/");
  await kb.waitForSelector("#journeys tbody tr");
  await kb.keyboard.press("Tab");
  const skip = await kb.evaluate(() => document.activeElement.textContent);
  await kb.focus('#journeys tbody tr:first-child th a');
  await Promise.all([kb.waitForURL(/\/journey\?name=checkout$/), kb.keyboard.press("Enter")]);
  step("keyboard", { skip, url: kb.url() });

  // 6. The journey page: every window, the failing cohort first, the charts.
  await kb.waitForSelector("#cohorts tbody tr");
  const cohorts = await kb.$$eval("#cohorts tbody tr", (rs) =>
    rs.map((r) => [r.querySelector("th").textContent, r.dataset.status]),
  );
  const windows = await kb.$$eval("#windows tbody th", (hs) => hs.map((h) => h.textContent));
  const charts = await kb.$$eval("svg.chart", (cs) => cs.map((c) => c.getAttribute("aria-label")));
  const blamed = await kb.$$eval("#blame tbody tr", (rs) => rs.map((r) => r.dataset.dependency));
  const incidents = await kb.$$eval("#incidents tbody tr", (rs) => rs.map((r) => r.dataset.open));
  const lowestContrast = await contrast(kb);
  if (lowestContrast[0][0] < 4.5) fail(`text below WCAG AA contrast: ${JSON.stringify(lowestContrast)}`);
  step("journey", { cohorts, windows, charts, blamed, incidents, lowestContrast });
  await kb.screenshot({ path: join(shots, "journey.png"), fullPage: true });
  await kb.close();

  // 6b. Deployments: the loadgen sends one service.version, so cerflow sees none (the
  // journey page said so above). The section is drawn here from the real journey document
  // with two deployments added to the journey's row, shaped as JourneyView.deployments:
  // a pending one, then a judged one that regressed.
  const real = await (await fetch(base + "/api/v1/ui?journey=checkout")).json();
  const figures = (requests, availability, score) => ({ requests, errors: 0, slow: 0, incorrect: 0, availability, latency: 1, correctness: null, score });
  real.journey.deployments = [
    { journey: "checkout", version: "1.43.0", previous_version: "1.42.0", result: "pending", start_unix_nano: 1764716400e9,
      end_unix_nano: null, figures: figures(40, 1, 1), previous_figures: figures(400, 0.99, 0.95), baseline: "same_span", score_drop: null },
    { journey: "checkout", version: "1.42.0", previous_version: "1.41.0", result: "regressed", start_unix_nano: 1764712800e9,
      end_unix_nano: 1764713100e9, figures: figures(100, 0.9, 0.875), previous_figures: figures(900, 0.999, 0.99), baseline: "before", score_drop: 0.115 },
  ];
  const dp = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await dp.route("**/api/v1/stream*", (route) =>
    route.fulfill({ status: 200, contentType: "text/event-stream", body: "event: snapshot\ndata: " + JSON.stringify(real) + "\n\n" }),
  );
  await dp.goto(base + "/journey?name=checkout");
  await dp.waitForSelector("#deployments tbody tr", { timeout: 15000 });
  const deployments = await dp.$$eval("#deployments tbody tr", (rs) =>
    rs.map((r) => [r.querySelector("th").textContent, r.dataset.result, ...[...r.querySelectorAll("td")].map((c) => c.textContent)]),
  );
  const deploymentContrast = await contrast(dp);
  await dp.locator("#h-deployments").scrollIntoViewIfNeeded();
  await dp.screenshot({ path: join(shots, "journey-deployments.png") });
  await dp.close();
  step("deployments", { rows: deployments, lowestContrast: deploymentContrast });

  if (errors.length) fail(`the page logged errors: ${errors.join("; ")}`);

  // 7. cerflow answers but evaluates no more (the test stops the process with SIGSTOP):
  // after two intervals plus 2 s without an event the page says the data is stale,
  // and it goes live again when cerflow does.
  step("pause-cerflow");
  await page.waitForFunction(() => document.getElementById("conn").dataset.kind === "stale", null, {
    timeout: 15000,
    polling: 100,
  });
  const stale = await page.locator("#conn").innerText();
  await page.screenshot({ path: join(shots, "overview-stale.png"), fullPage: true });
  step("resume-cerflow", { conn: stale });
  await page.waitForFunction(() => document.getElementById("conn").dataset.kind === "live", null, {
    timeout: 15000,
    polling: 100,
  });
  step("live-again");

  // 8. cerflow goes away: the page says so plainly.
  step("stop-cerflow");
  await page.waitForFunction(() => document.getElementById("conn").dataset.kind === "down", null, {
    timeout: 30000,
    polling: 100,
  });
  step("unreachable", { conn: await page.locator("#conn").innerText() });
  await page.screenshot({ path: join(shots, "overview-unreachable.png"), fullPage: true });
  step("done");
} catch (e) {
  console.log(`FAIL ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
