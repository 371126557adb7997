/**
 * A throw-away certificate authority for tests: an ECDSA P-256 CA and leaf certificates it signs
 * (for 127.0.0.1 / ::1 / localhost by default), as PEM. Made with @peculiar/x509 in the test.
 */
import 'reflect-metadata'; // @peculiar/x509 needs the Reflect metadata API (tsyringe)
import { KeyObject, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface TestCa {
  certPem: string;
  /** signs a server certificate for the given names (IP literals become IP SANs) */
  issue(names?: string[]): Promise<{ certPem: string; keyPem: string }>;
}

function keyPem(k: CryptoKey): string {
  return KeyObject.from(k).export({ type: 'pkcs8', format: 'pem' }) as string;
}

export async function createTestCa(cn = 'Latchkey Test CA'): Promise<TestCa> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(Date.now() + 86_400_000);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: `CN=${cn}`, notBefore, notAfter, signingAlgorithm: ALG, keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  let serial = 2;
  return {
    certPem: ca.toString('pem'),
    async issue(names = ['127.0.0.1', '::1', 'localhost']) {
      const leafKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: (serial++).toString(16).padStart(2, '0'), subject: `CN=${names[0]}`, issuer: ca.subject, notBefore, notAfter,
        signingAlgorithm: ALG, publicKey: leafKeys.publicKey, signingKey: keys.privateKey,
        extensions: [
          new x509.BasicConstraintsExtension(false),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          new x509.SubjectAlternativeNameExtension(names.map((n) => (/^[\d.]+$|:/.test(n) ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }))),
          await x509.AuthorityKeyIdentifierExtension.create(ca),
        ],
      });
      return { certPem: leaf.toString('pem'), keyPem: keyPem(leafKeys.privateKey) };
    },
  };
}
