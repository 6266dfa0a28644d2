// Page-load benchmark driver for benches/pageload.sh: loads one page from several servers in
// headless Chromium under Chromium's own network emulation, and writes the raw figures.
//
//   node pageload.mjs CONFIG.json OUT.json
//
// CONFIG: { puppeteerDir, chromium, userDataDir, loads, warmups, timeoutMs,
//           servers: [{ name, url }], links: [{ name, mbps, rttMs }] }
// OUT:    { results: [{ server, link, loadMs: [..], bytes: [..], encodings: {..} }] }
//
// Each load gets a fresh browser context (own socket pool and cache) and a fresh page, with
// the cache disabled and the link emulated (Network.emulateNetworkConditions). Load time is
// the page's `load` event from navigation start (PerformanceNavigationTiming.loadEventStart);
// bytes are the sum of encodedDataLength over Network.loadingFinished (what the emulated
// network carried, heads included). Servers alternate within each round, starting from a
// different one each round. It fails (exit 1) only when the harness breaks: a load that
// times out, a response that is not 200, a request that fails, a browser that dies. It never
// judges a figure.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const [configPath, outPath] = process.argv.slice(2);
if (!configPath || !outPath) {
  console.error("usage: node pageload.mjs CONFIG.json OUT.json");
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, "utf8"));
const require = createRequire(join(config.puppeteerDir, "noop.js"));
const puppeteer = require("puppeteer-core");

const browser = await puppeteer.launch({
  executablePath: config.chromium,
  headless: true,
  userDataDir: config.userDataDir,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  protocolTimeout: config.timeoutMs * 2,
});

// One load of `url` over `link` (null: no emulation). Returns { loadMs, bytes, encodings }.
async function load(url, link) {
  const context = await browser.createBrowserContext();
  try {
    const page = await context.newPage();
    const cdp = await page.createCDPSession();
    let bytes = 0;
    const encodings = {};
    const problems = [];
    const urls = new Map();
    const pending = new Set();
    // A browser-initiated favicon request is not part of the page: not counted, not checked.
    const counted = (id) => !/\/favicon\.ico$/.test(urls.get(id) || "");
    cdp.on("Network.requestWillBeSent", (e) => {
      urls.set(e.requestId, e.request.url);
      if (counted(e.requestId)) pending.add(e.requestId);
    });
    cdp.on("Network.responseReceived", (e) => {
      if (!counted(e.requestId)) return;
      const r = e.response;
      if (r.status !== 200) problems.push(`${r.url} answered ${r.status}`);
      let coding = "identity";
      for (const [k, v] of Object.entries(r.headers)) {
        if (k.toLowerCase() === "content-encoding") coding = v;
      }
      encodings[coding] = (encodings[coding] || 0) + 1;
    });
    cdp.on("Network.loadingFinished", (e) => {
      pending.delete(e.requestId);
      if (counted(e.requestId)) bytes += e.encodedDataLength;
    });
    cdp.on("Network.loadingFailed", (e) => {
      pending.delete(e.requestId);
      if (counted(e.requestId)) problems.push(`${urls.get(e.requestId) || e.requestId} failed: ${e.errorText}`);
    });
    await cdp.send("Network.enable");
    await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
    if (link) {
      const bytesPerSecond = (link.mbps * 1e6) / 8;
      await cdp.send("Network.emulateNetworkConditions", {
        offline: false,
        latency: link.rttMs,
        downloadThroughput: bytesPerSecond,
        uploadThroughput: bytesPerSecond,
      });
    }
    const response = await page.goto(url, { waitUntil: "load", timeout: config.timeoutMs });
    if (!response || response.status() !== 200) {
      problems.push(`${url} answered ${response ? response.status() : "nothing"}`);
    }
    const loadMs = await page.evaluate(() => {
      const nav = performance.getEntriesByType("navigation")[0];
      return nav ? nav.loadEventStart - nav.startTime : -1;
    });
    if (!(loadMs > 0)) problems.push(`${url}: no load event timing`);
    // Every request the page made has finished before `load`, but its CDP event may still
    // be on the way: wait for them (bounded), so the byte count is complete.
    const deadline = Date.now() + 10000;
    while (pending.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (pending.size) problems.push(`${pending.size} request(s) never finished: ${[...pending].map((id) => urls.get(id)).join(", ")}`);
    if (problems.length) throw new Error(problems.join("; "));
    await page.close();
    return { loadMs, bytes, encodings };
  } finally {
    await context.close();
  }
}

const results = [];
try {
  // Warm-up: each server, unthrottled, a few times (first-use costs of the browser and the
  // servers' caches; fserve's variants were made before this script started).
  for (let i = 0; i < config.warmups; i++) {
    for (const s of config.servers) await load(s.url, null);
  }
  for (const link of config.links) {
    const rows = config.servers.map((s) => ({
      server: s.name,
      link: link.name,
      loadMs: [],
      bytes: [],
      encodings: {},
    }));
    for (let round = 0; round < config.loads; round++) {
      for (let k = 0; k < config.servers.length; k++) {
        const i = (round + k) % config.servers.length;
        const r = await load(config.servers[i].url, link);
        rows[i].loadMs.push(r.loadMs);
        rows[i].bytes.push(r.bytes);
        for (const [c, n] of Object.entries(r.encodings)) {
          rows[i].encodings[c] = (rows[i].encodings[c] || 0) + n;
        }
        console.log(
          `${link.name}, round ${round + 1}: ${config.servers[i].name} ` +
            `${r.loadMs.toFixed(0)} ms, ${r.bytes} bytes, ${JSON.stringify(r.encodings)}`,
        );
      }
    }
    results.push(...rows);
  }
} catch (err) {
  console.error(`pageload: error: ${err.message}`);
  await browser.close().catch(() => {});
  process.exit(1);
}
await browser.close();
writeFileSync(outPath, JSON.stringify({ results }, null, 1));
