'use strict';
/**
 * Loaded by `latchkey run` through NODE_OPTIONS (--require) into Node children: Node before 24
 * ignores HTTP(S)_PROXY in `fetch`, so the first `fetch` call sets undici's EnvHttpProxyAgent as
 * the global dispatcher (HTTP(S)_PROXY and NO_PROXY decide, as for every other tool). Lazy: a
 * process that never fetches pays nothing at start-up. It never stops a process: without undici
 * it does nothing. Node 24+ does this itself (NODE_USE_ENV_PROXY=1, also set by `latchkey run`).
 */
const major = Number(process.versions.node.split('.')[0]);
const original = globalThis.fetch;
if (major < 24 && typeof original === 'function') {
  let ready = false;
  globalThis.fetch = function fetch(...args) {
    if (!ready) {
      ready = true;
      try {
        const { EnvHttpProxyAgent, setGlobalDispatcher } = require('undici');
        setGlobalDispatcher(new EnvHttpProxyAgent());
      } catch {
        // no undici next to this file: fetch goes on as Node does it
      }
    }
    return original.apply(this, args);
  };
}
