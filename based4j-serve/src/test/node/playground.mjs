// Drives the server's playground page in headless Chromium as a person would (type a prompt, set the sampling
// settings, click Generate, wait for the streamed text) and prints what the page showed as one JSON object.
// Settings come from the environment:
//   BASED4J_ORIGIN  the server (http://127.0.0.1:PORT)
//   BASED4J_KEY     the server's API key, typed into the page
//   CHROMIUM        the Chromium executable (no browser is downloaded)
//   PROMPT_TEXT     the prompt typed
//   MAX_TOKENS      max tokens typed; temperature is set to 0 (greedy) and top p to 1
//   SCREENSHOT      where to save a picture of the page after the run
//   STOP_PROMPT, STOP_MAX_TOKENS  a long generation stopped with the Stop button once text has arrived
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (v === undefined || v === "") {
    throw new Error("the environment variable " + name + " is not set");
  }
  return v;
};

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  headless: true,
  // no GPU, no sandbox (tests run as root in containers), and no connections of Chromium's own to the outside
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const out = { console_errors: [] };
try {
  const page = await browser.newPage();
  // the browser's own request for /favicon.ico (the page names no icon) is answered 404, and is no error of the page
  page.on("console", (m) => {
    if (m.type() === "error" && !m.location().url.endsWith("/favicon.ico")) out.console_errors.push(m.text());
  });
  page.on("pageerror", (e) => out.console_errors.push(String(e)));
  await page.goto(env("BASED4J_ORIGIN") + "/");
  out.title = await page.title();

  /** Types the settings, clicks Generate, and waits until the status line says how the run ended. */
  async function generate(prompt, maxTokens) {
    await page.fill("#prompt", prompt);
    await page.fill("#max_tokens", maxTokens);
    await page.fill("#temperature", "0");
    await page.fill("#top_p", "1");
    await page.fill("#seed", "");
    await page.fill("#api_key", env("BASED4J_KEY"));
    await page.click("#go");
  }
  const ended = () => page.waitForFunction(() => {
    const s = document.getElementById("status").textContent;
    return s.startsWith("done") || s.startsWith("error") || s === "stopped";
  }, null, { timeout: 60_000 });

  await generate(env("PROMPT_TEXT"), env("MAX_TOKENS"));
  await ended();
  out.generated = {
    status: await page.textContent("#status"),
    echo: await page.textContent("#prompt-echo"),
    text: await page.textContent("#text"),
    go_enabled: await page.isEnabled("#go"),
    stop_enabled: await page.isEnabled("#stop"),
  };
  await page.screenshot({ path: env("SCREENSHOT"), fullPage: true });

  // a long generation stopped once its first text has shown
  await generate(env("STOP_PROMPT"), env("STOP_MAX_TOKENS"));
  await page.waitForFunction(() => document.getElementById("text").textContent.length > 0, null,
                             { timeout: 60_000 });
  await page.click("#stop");
  await ended();
  out.stopped = { status: await page.textContent("#status"), text: await page.textContent("#text"),
                  go_enabled: await page.isEnabled("#go") };
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
