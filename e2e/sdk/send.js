#!/usr/bin/env node
// Sends events through one official, unmodified Segment-spec Node SDK to
// the collector and prints, as one JSON line, the message ids the SDK
// made, the collector's answers and the SDK's errors, for e2e/sdk_test.go.
//
//   node send.js <analytics-node|rudder-sdk-node> <collector URL> <write key> <events>
'use strict';

const zlib = require('node:zlib');

const [sdk, collector, writeKey, countArg] = process.argv.slice(2);
const count = Number(countArg);
// Properties make each message about 800 bytes, so that a run fills the
// SDKs' batches up to their own byte limits (analytics-node: 480 KB;
// RudderStack: 450 KB), past 500 messages.
const filler = 'x'.repeat(400);
// batches are the messages and uncompressed JSON bytes of each request.
const out = { sdk, version: '', ids: [], answers: [], errors: [], batches: [] };

function answer(status, body) {
  out.answers.push({ status, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

async function analyticsNode() {
  const { Analytics } = require('@segment/analytics-node');
  out.version = require('@segment/analytics-node/package.json').version;
  const analytics = new Analytics({ writeKey, host: collector, flushAt: 1000, flushInterval: 200, maxRetries: 3 });
  analytics.on('http_request', (r) => out.batches.push({ messages: JSON.parse(r.body).batch.length, bytes: Buffer.byteLength(r.body) }));
  analytics.on('http_response', (r) => answer(r.status, r.statusText));
  const sent = [];
  const done = (err, ctx) => {
    if (err) out.errors.push(String(err.reason || err));
    if (ctx) out.ids.push(ctx.event.messageId);
  };
  for (let i = 0; i < count; i++) {
    const msg = { userId: `user-${i % 7}`, event: 'Signup', properties: { sdk, plan: i % 2 ? 'pro' : 'free', n: i, filler } };
    sent.push(new Promise((resolve) => analytics.track(msg, (err, ctx) => { done(err, ctx); resolve(); })));
  }
  sent.push(new Promise((resolve) => analytics.page({ anonymousId: 'anon-1', name: 'Pricing', properties: { url: 'https://shop.example/pricing', sdk } }, (err, ctx) => { done(err, ctx); resolve(); })));
  sent.push(new Promise((resolve) => analytics.identify({ userId: 'user-1', traits: { email: 'a@b.example' } }, (err, ctx) => { done(err, ctx); resolve(); })));
  await analytics.closeAndFlush({ timeout: 30000 });
  await Promise.all(sent);
}

async function rudder() {
  const axios = require('axios');
  const Analytics = require('@rudderstack/rudder-sdk-node');
  out.version = require('@rudderstack/rudder-sdk-node/package.json').version;
  // The SDK's documented axiosInstance option: an instance that records
  // what the SDK sends (its gzip bodies) and what the collector answers.
  const axiosInstance = axios.create();
  axiosInstance.interceptors.request.use((cfg) => {
    const raw = Buffer.isBuffer(cfg.data) ? zlib.gunzipSync(cfg.data) : Buffer.from(JSON.stringify(cfg.data));
    const { batch } = JSON.parse(raw);
    for (const m of batch) out.ids.push(m.messageId);
    out.batches.push({ messages: batch.length, bytes: raw.length });
    return cfg;
  });
  axiosInstance.interceptors.response.use(
    (r) => { answer(r.status, r.data); return r; },
    (err) => { if (err.response) answer(err.response.status, err.response.data); return Promise.reject(err); },
  );
  const client = new Analytics(writeKey, {
    dataPlaneUrl: collector, flushAt: 1000, flushInterval: 200, axiosInstance, logLevel: 'error',
    errorHandler: (err) => out.errors.push(String(err.message || err)),
  });
  for (let i = 0; i < count; i++) {
    client.track({ userId: `user-${i % 7}`, event: 'Signup', properties: { sdk, plan: i % 2 ? 'pro' : 'free', n: i, filler } });
  }
  client.page({ anonymousId: 'anon-1', name: 'Pricing', properties: { url: 'https://shop.example/pricing', sdk } });
  client.identify({ userId: 'user-1', traits: { email: 'a@b.example' } });
  // flush sends one batch of up to flushAt (or what the timer left);
  // call it until the queue is empty.
  do {
    await client.flush().catch((err) => out.errors.push(String(err.message || err)));
  } while (client.queue.length > 0);
}

const run = { 'analytics-node': analyticsNode, 'rudder-sdk-node': rudder }[sdk];
if (!run) {
  console.error(`unknown SDK ${sdk}; want analytics-node or rudder-sdk-node`);
  process.exit(2);
}
run().then(
  () => console.log(JSON.stringify(out)),
  (err) => { out.errors.push(String(err && err.stack || err)); console.log(JSON.stringify(out)); },
);
