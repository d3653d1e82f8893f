// Node openid-client (v6) as a partner: discovery through RFC 8414 metadata, RFC 7591
// registration (plain fetch), client_credentials with PrivateKeyJwt, a protected-resource request.
// usage: node openid_client.mjs ISSUER KEY_PEM REGISTRATION_JSON RESOURCE_URL
import * as client from 'openid-client';
import { readFileSync } from 'node:fs';
import { createPrivateKey, webcrypto } from 'node:crypto';

const [issuer, keyPath, docPath, resource] = process.argv.slice(2);
const doc = JSON.parse(readFileSync(docPath, 'utf8'));
const kid = doc.jwks.keys[0].kid;

const metadata = await (await fetch(new URL('/.well-known/oauth-authorization-server', issuer))).json();
const registration = await fetch(metadata.registration_endpoint, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(doc),
});
if (registration.status !== 201) throw new Error(`registration: ${registration.status} ${await registration.text()}`);
const { client_id } = await registration.json();

const der = createPrivateKey(readFileSync(keyPath, 'utf8')).export({ type: 'pkcs8', format: 'der' });
const key = await webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);

const config = await client.discovery(new URL(issuer), client_id, undefined, client.PrivateKeyJwt(key, { kid }), {
  algorithm: 'oauth2',
  execute: [client.allowInsecureRequests],
});
const tokens = await client.clientCredentialsGrant(config, { scope: 'weather.observations:read' });
const response = await client.fetchProtectedResource(config, tokens.access_token, new URL(resource), 'GET');

console.log(JSON.stringify({
  client_id,
  issuer: config.serverMetadata().issuer,
  token_type: tokens.token_type,
  scope: tokens.scope,
  expires_in: tokens.expires_in,
  resource_status: response.status,
  resource: await response.json(),
}));
