// A minimal proxy-wasm host in Node's V8, to profile a filter module's own code on a cached
// token, outside Envoy (whose binary has no symbols and whose JIT code perf cannot name).
//
// Usage: node host.mjs MODULE.wasm PLUGIN_CONFIG_FILE TOKEN|@TOKEN_FILE [REQUESTS] [--profile]
//
// It loads the module, configures its root context with the file's bytes, and runs REQUESTS
// (default 200,000) requests through the whole HTTP context life cycle (create, request headers,
// response headers, log, done, delete) with the headers wrk sends through Envoy, after 20,000 to
// warm up. With @TOKEN_FILE (one token per line, as portico-bench writes them), the requests
// carry its tokens in turn, as the 10k-token workloads do. It prints the CPU time per request in µs (user + system, process.cpuUsage), the host
// calls per request, and with --profile the functions that took the most samples (V8's
// sampling profiler, 40 µs interval; the module's function names come from its name section).
// The host functions answer as Envoy does for this request: no route metadata, no shared data.
// ABI: proxy-wasm 0.2.1 (https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1).
import fs from 'node:fs';
import inspector from 'node:inspector/promises';

const args = process.argv.slice(2).filter((arg) => arg !== '--profile');
const profile = process.argv.includes('--profile');
const [wasmPath, configPath, token, requests = '200000'] = args;
if (!token) {
  console.error(
    'usage: node host.mjs MODULE.wasm PLUGIN_CONFIG_FILE TOKEN|@TOKEN_FILE [REQUESTS] [--profile]');
  process.exit(64);
}
const module = new WebAssembly.Module(fs.readFileSync(wasmPath));
const config = fs.readFileSync(configPath);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
let instance;
const view = () => new DataView(instance.exports.memory.buffer);
const bytes = () => new Uint8Array(instance.exports.memory.buffer);

// Data handed to the module is written into memory it allocates, as Envoy does.
function give(data, pointerAt, sizeAt) {
  const pointer = data.length ? instance.exports.proxy_on_memory_allocate(data.length) : 0;
  if (data.length) bytes().set(data, pointer);
  view().setUint32(pointerAt, pointer, true);
  view().setUint32(sizeAt, data.length, true);
  return 0;
}

// A header map as proxy-wasm serialises it: the count, each pair's sizes, then each name and
// value followed by a NUL.
function serialize(pairs) {
  const encoded = pairs.map(([name, value]) => [encoder.encode(name), encoder.encode(value)]);
  const size = encoded.reduce((n, [k, v]) => n + 8 + k.length + v.length + 2, 4);
  const out = new Uint8Array(size);
  const data = new DataView(out.buffer);
  data.setUint32(0, encoded.length, true);
  let offset = 4;
  for (const [k, v] of encoded) {
    data.setUint32(offset, k.length, true);
    data.setUint32(offset + 4, v.length, true);
    offset += 8;
  }
  for (const [k, v] of encoded) {
    out.set(k, offset);
    offset += k.length + 1;
    out.set(v, offset);
    offset += v.length + 1;
  }
  return out;
}

const tokens = token.startsWith('@')
  ? fs.readFileSync(token.slice(1), 'utf8').split('\n').filter((line) => line !== '')
  : [token];
// Serialised once each, so that the host's own work does not grow with the token count.
const headerMaps = tokens.map((bearer) => serialize([
  [':authority', '127.0.0.1:10000'], [':path', '/orders/1'], [':method', 'GET'],
  [':scheme', 'http'], ['authorization', `Bearer ${bearer}`], ['x-forwarded-proto', 'http'],
  ['x-request-id', '0f8e4d53-8b9c-4c1e-9d6a-2f1b3c4d5e6f'],
]));
let requestHeaders = headerMaps[0];
let served = 0;
const noHeaders = serialize([]);
const PLUGIN_CONFIGURATION = 7;
const REQUEST_HEADERS = 0;
const OK = 0;
const NOT_FOUND = 1;
let nextMetric = 1;
const host = {
  proxy_log: (level, pointer, size) => {
    if (level >= 3) console.error(decoder.decode(bytes().slice(pointer, pointer + size)));
    return OK;
  },
  proxy_get_log_level: (at) => { view().setUint32(at, 2, true); return OK; },
  proxy_get_current_time_nanoseconds: (at) => {
    view().setBigUint64(at, BigInt(Date.now()) * 1000000n, true);
    return OK;
  },
  proxy_get_buffer_bytes: (type, start, max, pointerAt, sizeAt) =>
    give(type === PLUGIN_CONFIGURATION ? config : new Uint8Array(0), pointerAt, sizeAt),
  proxy_get_header_map_pairs: (type, pointerAt, sizeAt) =>
    give(type === REQUEST_HEADERS ? requestHeaders : noHeaders, pointerAt, sizeAt),
  proxy_get_header_map_value: () => NOT_FOUND,
  proxy_get_property: () => NOT_FOUND,
  proxy_get_shared_data: () => NOT_FOUND,
  proxy_call_foreign_function: () => NOT_FOUND,
  proxy_define_metric: (type, pointer, size, idAt) => {
    view().setUint32(idAt, nextMetric++, true);
    return OK;
  },
  proxy_send_local_response: () => { throw new Error('the filter refused the request'); },
};
const calls = {};
const imports = {};
for (const { module: name, name: field } of WebAssembly.Module.imports(module)) {
  imports[name] ??= {};
  const answer = name === 'env' ? (host[field] ?? (() => OK)) : wasi(field);
  imports[name][field] = (...args) => {
    calls[field] = (calls[field] ?? 0) + 1;
    return answer(...args);
  };
}

function wasi(field) {
  switch (field) {
    case 'random_get':
      return (pointer, size) => {
        for (let i = 0; i < size; i++) bytes()[pointer + i] = (Math.random() * 256) | 0;
        return 0;
      };
    case 'clock_time_get':
      return (id, precision, at) => {
        view().setBigUint64(at, BigInt(Date.now()) * 1000000n, true);
        return 0;
      };
    case 'environ_sizes_get':
      return (countAt, sizeAt) => {
        view().setUint32(countAt, 0, true);
        view().setUint32(sizeAt, 0, true);
        return 0;
      };
    case 'fd_write':
      return (fd, iovs, count, writtenAt) => { view().setUint32(writtenAt, 0, true); return 0; };
    default:
      return () => 0;
  }
}

instance = new WebAssembly.Instance(module, imports);
const vm = instance.exports;
vm._initialize?.();
const ROOT = 1;
vm.proxy_on_context_create(ROOT, 0);
if (!vm.proxy_on_vm_start(ROOT, 0) || !vm.proxy_on_configure(ROOT, config.length)) {
  console.error('the module refused its configuration');
  process.exit(1);
}
let context = ROOT + 1;
function request() {
  requestHeaders = headerMaps[served++ % headerMaps.length];
  vm.proxy_on_context_create(context, ROOT);
  if (vm.proxy_on_request_headers(context, 7, 1) !== 0) throw new Error('the request paused');
  vm.proxy_on_response_headers(context, 0, 1);
  vm.proxy_on_log(context);
  vm.proxy_on_done(context);
  vm.proxy_on_delete(context);
  context++;
}

for (let i = 0; i < 20000; i++) request();
for (const field of Object.keys(calls)) delete calls[field];
const session = new inspector.Session();
if (profile) {
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 40 });
  await session.post('Profiler.start');
}
const count = Number(requests);
const before = process.cpuUsage();
for (let i = 0; i < count; i++) request();
const spent = process.cpuUsage(before);
console.log(`${wasmPath.split('/').pop()}: ${((spent.user + spent.system) / count).toFixed(3)} µs `
  + `CPU per request over ${count} requests`);
console.log('host calls per request:', Object.entries(calls)
  .map(([field, n]) => `${field} ${(n / count).toFixed(2)}`).join(', ') || 'none');
if (profile) {
  const { profile: samples } = await session.post('Profiler.stop');
  const nodes = new Map(samples.nodes.map((node) => [node.id, node]));
  const self = new Map();
  for (const id of samples.samples) {
    const frame = nodes.get(id).callFrame;
    const name = frame.functionName || frame.url || '(anonymous)';
    self.set(name, (self.get(name) ?? 0) + 1);
  }
  const total = samples.samples.length;
  console.log('\nself time, share of samples (this host\'s own functions included):');
  for (const [name, n] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 30)) {
    console.log(`${((100 * n) / total).toFixed(1).padStart(5)}%  ${name.slice(0, 140)}`);
  }
}
