// Verifies a Passerelle compact JWS with the jose npm package, as a party
// that never saw Passerelle's code would: the key comes from the x5c leaf.
// Usage: node verify.mjs FILE   (FILE holds the compact JWS)
// Exit 0 and the payload on stdout when it verifies; exit 1 otherwise.
import { readFileSync } from 'node:fs';
import { compactVerify, decodeProtectedHeader, importX509 } from 'jose';

const file = process.argv[2];
if (!file) {
  console.error('usage: node verify.mjs FILE');
  process.exit(2);
}
try {
  const jws = readFileSync(file, 'utf8').trim();
  const header = decodeProtectedHeader(jws);
  if (!Array.isArray(header.x5c) || header.x5c.length === 0) {
    throw new Error('no x5c in the protected header');
  }
  const pem = '-----BEGIN CERTIFICATE-----\n' +
    header.x5c[0].match(/.{1,64}/g).join('\n') +
    '\n-----END CERTIFICATE-----\n';
  const key = await importX509(pem, header.alg);
  const { payload, protectedHeader } = await compactVerify(jws, key, {
    algorithms: ['ES256', 'ES384', 'ES512', 'PS256', 'RS256'],
  });
  const desc = JSON.parse(new TextDecoder().decode(payload));
  process.stdout.write(JSON.stringify({ alg: protectedHeader.alg, typ: protectedHeader.typ, payload: desc }) + '\n');
} catch (err) {
  console.error(`jose: ${err.code ?? ''} ${err.message}`);
  process.exit(1);
}
