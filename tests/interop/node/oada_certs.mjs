// @oada/certs: software statements signed with a trusted key (and, for contrast, one signed only
// with its own key), registered at the gateway; the trusted client then gets a token with
// openid-client's PrivateKeyJwt and calls the API.
// usage: node oada_certs.mjs ISSUER TRUSTED_SIGNER_PEM TRUSTED_SIGNER_KID RESOURCE_URL
import certs from '@oada/certs';
import * as client from 'openid-client';
import { readFileSync } from 'node:fs';
import { generateKeyPairSync, webcrypto } from 'node:crypto';

const [issuer, signerPath, signerKid, resource] = process.argv.slice(2);
const signerPem = readFileSync(signerPath, 'utf8');

// the client's own key pair; its public half goes into the statement
const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const clientJwk = { ...publicKey.export({ format: 'jwk' }), kid: 'fieldscout-1', use: 'sig', alg: 'ES256' };
const payload = {
  client_name: 'Field Scout',
  software_id: 'fieldscout-7f3a',
  software_version: '1.4.0',
  contacts: ['dev@fieldscout.example'],
  redirect_uris: ['https://fieldscout.example/code_accepter'],
  token_endpoint_auth_method: 'private_key_jwt',
  grant_types: ['client_credentials'],
  jwks: { keys: [clientJwk] },
};

async function register(statement) {
  const r = await fetch(new URL('/register', issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ software_statement: statement }),
  });
  return { status: r.status, body: await r.json() };
}

const trusted = await certs.sign(payload, signerPem, { header: { kid: signerKid } });
const registered = await register(trusted);
if (registered.status !== 201) throw new Error(`trusted statement: ${registered.status} ${JSON.stringify(registered.body)}`);

const key = await webcrypto.subtle.importKey('pkcs8', privateKey.export({ type: 'pkcs8', format: 'der' }), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
const config = await client.discovery(new URL(issuer), registered.body.client_id, undefined, client.PrivateKeyJwt(key, { kid: clientJwk.kid }), {
  algorithm: 'oauth2',
  execute: [client.allowInsecureRequests],
});
const tokens = await client.clientCredentialsGrant(config);
const response = await client.fetchProtectedResource(config, tokens.access_token, new URL(resource), 'GET');

// untrusted: signed with a key of its own (which @oada/certs embeds in the header)
const { privateKey: ownKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const untrusted = await certs.sign(payload, ownKey.export({ type: 'pkcs8', format: 'pem' }), { header: { kid: 'self-signed' } });
const refused = await register(untrusted);

console.log(JSON.stringify({
  registered: { status: registered.status, client_id: registered.body.client_id, software_id: registered.body.software_id, jwks: registered.body.jwks, scope: registered.body.scope },
  token: { token_type: tokens.token_type, scope: tokens.scope },
  resource_status: response.status,
  untrusted: refused,
}));
