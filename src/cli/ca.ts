/** `latchkey ca fetch [-o FILE]`: the forward proxy's CA certificate (PEM), for clients to trust. */
import { chmodSync, renameSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { clientFor, info } from './output.js';

export function caCommand(program: Command, _setCode: (c: number) => void): void {
  const ca = program.command('ca').description("the forward proxy's CA (clients trust it to let the proxy inject credentials into HTTPS)");

  ca
    .command('fetch')
    .description('print the CA certificate (PEM), or write it to a file')
    .option('-o, --output <file>', 'write the certificate to this file instead of stdout')
    .action(async (opts: { output?: string }, cmd: Command) => {
      const pem = await clientFor(cmd).caCertificate();
      if (!opts.output || opts.output === '-') {
        process.stdout.write(pem.endsWith('\n') ? pem : pem + '\n');
        return;
      }
      const path = resolve(opts.output);
      const tmp = `${path}.${process.pid}.tmp`;
      writeFileSync(tmp, pem, { mode: 0o644 });
      chmodSync(tmp, 0o644);
      renameSync(tmp, path);
      info(`wrote the Latchkey CA certificate to ${path}`);
      info(`trust it with e.g. NODE_EXTRA_CA_CERTS=${path}, SSL_CERT_FILE, REQUESTS_CA_BUNDLE or curl --cacert ${path}`);
    });
}
