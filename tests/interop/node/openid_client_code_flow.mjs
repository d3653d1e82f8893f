// Node openid-client (v6) as a public client (a native or single-page app): RFC 8414 discovery,
// the authorization URL with PKCE S256, a person's browser signing in and approving (plain fetch
// following the gateway's forms), the code exchange with no client secret, then the person's data.
// usage: node openid_client_code_flow.mjs ISSUER CLIENT_ID REDIRECT_URI USERNAME PASSWORD RESOURCE_URL
import * as client from 'openid-client';

const [issuer, clientId, redirectUri, username, password, resource] = process.argv.slice(2);
const config = await client.discovery(new URL(issuer), clientId, undefined, client.None(), {
  algorithm: 'oauth2',
  execute: [client.allowInsecureRequests],
});
const codeVerifier = client.randomPKCECodeVerifier();
const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
const state = client.randomState();
const authorizationUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: 'weather.stations:read',
  code_challenge: codeChallenge,
  code_challenge_method: 'S256',
  state,
});

// the person's browser, with the gateway's session cookie
let cookie = '';
const browse = async (url, form) => {
  const response = await fetch(url, {
    method: form ? 'POST' : 'GET',
    redirect: 'manual',
    headers: { cookie, ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
    body: form ? new URLSearchParams(form).toString() : undefined,
  });
  const set = response.headers.get('set-cookie');
  if (set) cookie = set.split(';')[0];
  return { status: response.status, location: response.headers.get('location'), body: await response.text() };
};
const hidden = (page, name) => page.match(new RegExp(`name="${name}" value="([^"]*)"`))[1];
const login = await browse(authorizationUrl);
if (login.status !== 200) throw new Error(`login page: ${login.status} ${login.body}`);
const signedIn = await browse(new URL('login', issuer + '/'), {
  username, password, request: hidden(login.body, 'request'), csrf: hidden(login.body, 'csrf'),
});
if (signedIn.status !== 303) throw new Error(`sign-in: ${signedIn.status}`);
const consent = await browse(new URL(signedIn.location, issuer));
const approved = await browse(new URL('consent', issuer + '/'), {
  decision: 'approve', request: hidden(consent.body, 'request'), csrf: hidden(consent.body, 'csrf'),
});
if (approved.status !== 303) throw new Error(`consent: ${approved.status} ${approved.body}`);

// the app: openid-client checks state and iss, exchanges the code with the PKCE verifier
const tokens = await client.authorizationCodeGrant(config, new URL(approved.location), {
  pkceCodeVerifier: codeVerifier,
  expectedState: state,
});
const response = await client.fetchProtectedResource(config, tokens.access_token, new URL(resource), 'GET');

// without the verifier the same kind of exchange fails
let missingVerifier = null;
try {
  await client.authorizationCodeGrant(config, new URL(approved.location), { expectedState: state });
} catch (e) {
  missingVerifier = e.error ?? e.code ?? String(e);
}

console.log(JSON.stringify({
  token_type: tokens.token_type,
  scope: tokens.scope,
  has_refresh_token: Boolean(tokens.refresh_token),
  resource_status: response.status,
  resource: await response.json(),
  reused_or_no_verifier_error: missingVerifier,
}));
