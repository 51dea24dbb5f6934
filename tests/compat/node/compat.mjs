// The official Trigger.dev SDK against a Tether server, through the SDK's public API only.
// Run by tests/compat/test_triggerdev_sdk.py with TRIGGER_API_URL and TRIGGER_SECRET_KEY set,
// against the Python tasks of tests/compat/app.py. Prints one line "COMPAT_SUMMARY {json}"; the
// Python test asserts on it and on the database. Exits 1 on the first failed call.
import { createRequire } from "node:module";
import { isDeepStrictEqual } from "node:util";
import { tasks, runs, batch, wait, schedules, configure } from "@trigger.dev/sdk";

const require = createRequire(import.meta.url);
const TIMEOUT_MS = Number(process.env.COMPAT_TIMEOUT_MS ?? 90000);
const WAIT_MS = 20000; // any single wait for a run's status
const summary = { sdkVersion: require("@trigger.dev/sdk/package.json").version, step: "start" };

function report(code) {
  console.log("COMPAT_SUMMARY " + JSON.stringify(summary));
  process.exit(code);
}

setTimeout(() => {
  summary.error = { message: `timed out after ${TIMEOUT_MS} ms in step ${summary.step}` };
  report(1);
}, TIMEOUT_MS).unref();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitForStatus(id, statuses) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const run = await runs.retrieve(id);
    if (statuses.includes(run.status)) return run;
    if (Date.now() > deadline) throw new Error(`run ${id} stayed ${run.status}, wanted ${statuses}`);
    await sleep(100);
  }
}

async function poll(id) {
  const run = await runs.poll(id, { pollIntervalMs: 100 });
  return { id: run.id, status: run.status, output: run.output, isSuccess: run.isSuccess };
}

function describeError(error) {
  return { name: error?.constructor?.name, status: error?.status, message: String(error?.message) };
}

async function expectError(call) {
  try {
    await call();
  } catch (error) {
    return describeError(error);
  }
  throw new Error("the call succeeded but an error was expected");
}

async function triggerAndRetrieve() {
  summary.step = "trigger";
  const when = new Date("2024-05-01T12:00:00.000Z"); // superjson sends it with its type in `meta`
  const options = { tags: ["compat", "sdk"], metadata: { source: "node" }, idempotencyKey: "compat-1" };
  const first = await tasks.trigger("greet", { name: "node", when }, options);
  const again = await tasks.trigger("greet", { name: "ignored" }, options);
  summary.trigger = { id: first.id, againId: again.id, hasToken: typeof first.publicAccessToken === "string" };
  summary.step = "poll";
  summary.poll = await poll(first.id);
  summary.step = "retrieve";
  const run = await runs.retrieve(first.id);
  summary.retrieve = {
    id: run.id, status: run.status, taskIdentifier: run.taskIdentifier, payload: run.payload,
    output: run.output, tags: run.tags, metadata: run.metadata, attemptCount: run.attemptCount,
    isCompleted: run.isCompleted, isSuccess: run.isSuccess, idempotencyKey: run.idempotencyKey,
    datesParsed: run.createdAt instanceof Date && run.finishedAt instanceof Date,
    triggerFunction: run.triggerFunction, depth: run.depth,
  };
  return first.id;
}

async function batchTrigger() {
  summary.step = "batchTrigger";
  const handle = await tasks.batchTrigger("greet", [
    { payload: { name: "a" } },
    { payload: { name: "b" }, options: { tags: ["second"] } },
    { payload: { name: "c" } },
  ]);
  summary.step = "batch.retrieve";
  const info = await batch.retrieve(handle.batchId);
  const results = [];
  for (const id of info.runs) results.push(await poll(id));
  summary.batch = { batchId: handle.batchId, runCount: handle.runCount, runs: info.runs, results };
}

async function listRuns() {
  summary.step = "runs.list";
  const page = await runs.list({ taskIdentifier: "greet", status: ["COMPLETED"], limit: 2 });
  const iterated = [];
  for await (const run of runs.list({ taskIdentifier: ["greet"], limit: 2 })) iterated.push(run.id);
  const tagged = [];
  for await (const run of runs.list({ tag: "compat" })) tagged.push(run.id);
  summary.list = {
    firstPage: page.data.map((run) => run.id), hasNextPage: page.hasNextPage(),
    env: page.data[0]?.env, iterated, tagged,
  };
}

async function cancelAndReschedule() {
  summary.step = "cancel";
  const napping = await tasks.trigger("nap", { seconds: 300 });
  const before = await waitForStatus(napping.id, ["WAITING"]);
  const canceled = await runs.cancel(napping.id);
  const after = await runs.retrieve(napping.id);
  summary.cancel = {
    id: napping.id, before: before.status, answerId: canceled.id, status: after.status,
    isCancelled: after.isCancelled, isCompleted: after.isCompleted,
  };
  summary.step = "reschedule";
  const later = await tasks.trigger("greet", { name: "later" }, { delay: "1h" });
  const moved = await runs.reschedule(later.id, { delay: "2h" });
  summary.reschedule = { id: later.id, status: moved.status, delayedUntil: moved.delayedUntil?.toISOString() };
}

async function replay(runId) {
  summary.step = "replay";
  const replayed = await runs.replay(runId);
  summary.replay = { id: replayed.id, original: runId, ...(await poll(replayed.id)) };
}

async function tokens() {
  summary.step = "wait.createToken";
  const token = await wait.createToken({ timeout: "10m", tags: ["compat"] });
  const waiting = await tasks.trigger("approval", { token: token.id });
  await waitForStatus(waiting.id, ["WAITING"]);
  summary.step = "wait.completeToken";
  const completed = await wait.completeToken(token, { approved: true, by: "node" });
  const result = await poll(waiting.id);
  summary.step = "wait.retrieveToken";
  const retrieved = await wait.retrieveToken(token.id);
  const listed = [];
  for await (const item of wait.listTokens({ status: "COMPLETED" })) listed.push(item.id);
  summary.token = {
    id: token.id, isCached: token.isCached, hasUrl: token.url.startsWith("http"),
    completed: completed.success, runId: waiting.id, run: result,
    status: retrieved.status, output: retrieved.output, listed,
  };
}

function nested(levels, leaf) {
  let value = leaf;
  for (let i = 0; i < levels; i++) value = i % 2 ? [value] : { k: value };
  return value;
}

async function payloads() {
  summary.step = "payloads";
  // 99 levels: greet's output wraps it in one more, Tether's limit of 100
  const deep = { name: "deep", text: "é \u0000 \u2028 😀", nested: nested(98, "leaf") };
  const accepted = await tasks.trigger("greet", deep);
  const result = await poll(accepted.id);
  const run = await runs.retrieve(accepted.id);
  summary.payloads = {
    id: accepted.id, status: result.status, payloadEqual: isDeepStrictEqual(run.payload, deep),
    outputEqual: isDeepStrictEqual(run.output?.received, deep),
    tooDeep: await expectError(() => tasks.trigger("greet", { name: "too deep", nested: nested(100, 1) })),
    loneSurrogate: await expectError(() => tasks.trigger("greet", { name: "lone \ud800" })),
  };
}

// What a new user trips over first (issue 17): typed queue names in runs.list, pages that go
// back (the SDK sends page[after] and page[before] together), token key TTLs, a declared
// schedule's delete refused at once (a 409 would be retried for seconds), UTC first.
async function firstHour() {
  summary.step = "runs.list queue";
  const byTaskQueue = [];
  for await (const run of runs.list({ queue: { type: "task", name: "greet" }, limit: 100 })) byTaskQueue.push(run.id);
  const byPlainName = [];
  for await (const run of runs.list({ queue: [{ type: "custom", name: "greet" }], limit: 100 })) byPlainName.push(run.id);
  summary.step = "runs.list pages";
  const first = await runs.list({ taskIdentifier: "greet", limit: 2 });
  const second = await first.getNextPage();
  const back = await second.getPreviousPage();
  summary.step = "wait.listTokens pages";
  const made = [];
  for (let i = 0; i < 3; i++) made.push((await wait.createToken({ tags: ["pages"] })).id);
  const tokenFirst = await wait.listTokens({ tags: "pages", limit: 2 });
  const tokenSecond = await tokenFirst.getNextPage();
  const tokenBack = await tokenSecond.getPreviousPage();
  summary.step = "wait.createToken idempotencyKeyTTL";
  const keyed = { idempotencyKey: "ttl-1", idempotencyKeyTTL: "1s" };
  const ttlFirst = await wait.createToken(keyed);
  const ttlAgain = await wait.createToken(keyed);
  await sleep(1200);
  const ttlAfter = await wait.createToken(keyed);
  summary.step = "failed run frees its key";
  const failed = await tasks.trigger("fail", { n: 1 }, { idempotencyKey: "fail-1" });
  const failedRun = await poll(failed.id);
  const retried = await tasks.trigger("fail", { n: 2 }, { idempotencyKey: "fail-1" });
  summary.step = "schedules.del declared";
  const declared = (await schedules.list()).data.find((s) => s.type === "DECLARATIVE");
  if (!declared) throw new Error("no DECLARATIVE schedule listed: the worker stores the nightly task's");
  const started = Date.now();
  const refused = await expectError(() => schedules.del(declared.id));
  const refusedMs = Date.now() - started;
  summary.step = "schedules.timezones";
  const zones = await schedules.timezones();
  summary.firstHour = {
    byTaskQueue, byPlainName,
    pages: { first: first.data.map((r) => r.id), second: second.data.map((r) => r.id), back: back.data.map((r) => r.id) },
    tokenPages: {
      made, first: tokenFirst.data.map((t) => t.id), second: tokenSecond.data.map((t) => t.id),
      back: tokenBack.data.map((t) => t.id),
    },
    ttl: { first: ttlFirst.id, again: ttlAgain.id, againCached: ttlAgain.isCached, after: ttlAfter.id, afterCached: ttlAfter.isCached },
    failedKey: { first: failed.id, status: failedRun.status, retried: retried.id },
    declaredDelete: { ...refused, ms: refusedMs, id: declared.id },
    firstZone: zones.timezones[0], zoneCount: zones.timezones.length,
  };
}

async function errors() {
  summary.step = "errors";
  summary.errors = {
    unknownTask: await expectError(() => tasks.trigger("no-such-task", {})),
    missingRun: await expectError(() => runs.retrieve("run_doesnotexist")),
  };
  configure({ baseURL: process.env.TRIGGER_API_URL, accessToken: "tk_not_a_key" });
  summary.errors.wrongKey = await expectError(() => runs.list({ limit: 1 }));
}

try {
  const runId = await triggerAndRetrieve();
  await batchTrigger();
  await listRuns();
  await cancelAndReschedule();
  await replay(runId);
  await tokens();
  await payloads();
  await firstHour();
  await errors();
  summary.step = "done";
  report(0);
} catch (error) {
  summary.error = describeError(error);
  summary.error.stack = error?.stack;
  report(1);
}
