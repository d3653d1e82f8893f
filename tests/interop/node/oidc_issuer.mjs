// A real external OAuth authorization server for the integration tests: panva's oidc-provider on a
// loopback port, issuing client_credentials access tokens (a JWT when the request names the
// resource, an opaque introspectable token otherwise), plus test-only control endpoints under
// /test/ (request counts, key rotation, JWKS/introspection outages, token and revocation
// shortcuts).
//
// Usage: node oidc_issuer.mjs '<json config>'   (or the config in $OIDC_ISSUER_CONFIG)
// Config (all optional): port (0 = a free one), resource, alg (ES256 | RS256), scopes (space
// separated; allowed to `partner`), other_scopes (allowed to `other`), access_token_ttl (seconds),
// clients ({partner, other, gateway} -> secret; random when absent).
// Prints one JSON line on stdout once listening, then runs until killed or until stdin reaches EOF
// (so it never outlives the test that started it). Errors go to stderr; nothing else is printed.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

// oidc-provider prints its notices with console.info (on stdout, where our one JSON line goes).
console.info = () => {};
console.log = () => {};

const config = JSON.parse(process.argv[2] ?? process.env.OIDC_ISSUER_CONFIG ?? '{}');
const resource = config.resource ?? 'https://api.grounddata.example';
const alg = config.alg ?? 'ES256';
if (!['ES256', 'RS256'].includes(alg)) {
  throw new Error(`unsupported alg ${alg} (ES256 or RS256)`);
}
const scopes = (config.scopes ?? 'weather.observations:read weather.stations:read').split(' ').filter(Boolean);
const otherScopes = (config.other_scopes ?? 'weather.stations:read').split(' ').filter(Boolean);
const accessTokenTTL = config.access_token_ttl ?? 300;
const randomSecret = () => crypto.randomBytes(24).toString('hex');
const secrets = {
  partner: config.clients?.partner ?? randomSecret(),
  other: config.clients?.other ?? randomSecret(),
  gateway: config.clients?.gateway ?? randomSecret(),
};
const clientScopes = { partner: scopes, other: otherScopes, gateway: [] };

// The provider's default routes, spelled out so the counting below matches the discovery document.
const routes = {
  jwks: '/jwks',
  token: '/token',
  introspection: '/token/introspection',
  revocation: '/token/revocation',
};
const DISCOVERY = '/.well-known/openid-configuration';

function newKey() {
  const { privateKey } = alg === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomBytes(12).toString('base64url'), alg, use: 'sig' };
}

// Token storage shared by every Provider made in this process (one per key rotation), so opaque
// tokens issued before a rotation still introspect after it. (oidc-provider's own memory adapter
// is module-global too, but warns on every construction; client_credentials tokens only need
// upsert, find, consume and destroy.)
const storage = new Map();
class SharedMemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    storage.set(this.key(id), { payload, expiresAt });
  }

  async find(id) {
    const entry = storage.get(this.key(id));
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      storage.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    for (const [key, { payload }] of storage) {
      if (key.startsWith(`${this.model}:`) && payload.uid === uid) return payload;
    }
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const [key, { payload }] of storage) {
      if (key.startsWith(`${this.model}:`) && payload.userCode === userCode) return payload;
    }
    return undefined;
  }

  async consume(id) {
    const entry = storage.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    storage.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, { payload }] of storage) {
      if (payload.grantId === grantId) storage.delete(key);
    }
  }
}

function newProvider(issuer, key) {
  const provider = new Provider(issuer, {
    adapter: SharedMemoryAdapter,
    jwks: { keys: [key] },
    routes,
    scopes: ['openid', ...new Set([...scopes, ...otherScopes])],
    clients: ['partner', 'other', 'gateway'].map((id) => ({
      client_id: id,
      client_secret: secrets[id],
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      // an empty scope would mean "anything"; the gateway client gets a scope it never uses
      scope: clientScopes[id].length ? clientScopes[id].join(' ') : 'openid',
      id_token_signed_response_alg: alg,
    })),
    clientDefaults: { id_token_signed_response_alg: alg },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // any confidential client (the gateway) may introspect any client's token
        allowedPolicy: async (ctx, client) => client.clientAuthMethod !== 'none',
      },
      // a client may only revoke its own tokens (oidc-provider 8.x has no policy hook for it)
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // no resource in the request: no resource server, so an opaque token
        defaultResource: async () => undefined,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (ctx, indicator) => {
          if (indicator !== resource) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: scopes.join(' '),
            audience: resource,
            accessTokenTTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg } },
          };
        },
      },
    },
    ttl: {
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? accessTokenTTL,
      AccessToken: accessTokenTTL,
    },
    // not used (no browser flows), but unset keys make oidc-provider warn
    cookies: { keys: [randomSecret()] },
    clientBasedCORS: () => false,
  });
  provider.on('server_error', (ctx, err) => console.error('oidc-provider server_error:', err));
  return { provider, handler: provider.callback(), kid: key.kid };
}

const counts = { jwks: 0, introspection: 0, discovery: 0 };
const down = { jwks: false, introspection: false };
let current;
let issuer;

function json(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return {};
  if ((req.headers['content-type'] ?? '').includes('application/json')) return JSON.parse(text);
  return Object.fromEntries(new URLSearchParams(text));
}

const basic = (id) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secrets[id])}`).toString('base64')}`;

// A form POST to one of our own endpoints as client `id`; answers [status, parsed body].
async function postAs(id, path, form) {
  const res = await fetch(`${issuer}${path}`, {
    method: 'POST',
    headers: { authorization: basic(id), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
  const text = await res.text();
  let body;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    body = { raw: text };
  }
  return [res.status, body];
}

const flag = (url, name) => ['1', 'true', 'yes'].includes(url.searchParams.get(name) ?? '');

async function control(req, res, url) {
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case 'GET /test/counts':
      return json(res, 200, counts);
    case 'POST /test/rotate': {
      const oldKid = current.kid;
      current = newProvider(issuer, newKey());
      return json(res, 200, { kid: current.kid, old_kid: oldKid });
    }
    case 'POST /test/jwks':
    case 'POST /test/introspection': {
      const which = url.pathname.slice('/test/'.length);
      down[which] = flag(url, 'down');
      return json(res, 200, { [which]: down[which] ? 'down' : 'up' });
    }
    case 'POST /test/token': {
      const client = url.searchParams.get('client') ?? 'partner';
      if (!['partner', 'other'].includes(client)) return json(res, 400, { error: `unknown client ${client}` });
      const form = {
        grant_type: 'client_credentials',
        scope: url.searchParams.get('scope') ?? clientScopes[client].join(' '),
      };
      if (flag(url, 'resource')) form.resource = resource;
      const [status, body] = await postAs(client, routes.token, form);
      return json(res, status, body);
    }
    case 'POST /test/revoke': {
      const { token } = await readBody(req);
      if (!token) return json(res, 400, { error: 'token missing' });
      // revoked as the client it was issued to (`partner` when it is unknown, e.g. a JWT), found
      // in the shared storage directly so that the introspection count is left alone
      const found = await current.provider.ClientCredentials.find(token);
      const client = found?.clientId in secrets ? found.clientId : 'partner';
      const [status, body] = await postAs(client, routes.revocation, { token });
      return status === 200 ? json(res, 200, { revoked: true }) : json(res, 502, { status, body });
    }
    default:
      return json(res, 404, { error: `no test endpoint ${route}` });
  }
}

function unavailable(res) {
  json(res, 503, { error: 'temporarily_unavailable', error_description: 'down by /test knob' });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname.startsWith('/test/')) {
    control(req, res, url).catch((err) => {
      console.error('control endpoint failed:', err);
      if (!res.headersSent) json(res, 500, { error: String(err) });
    });
    return;
  }
  switch (url.pathname) {
    case routes.jwks:
      counts.jwks += 1;
      if (down.jwks) return unavailable(res);
      break;
    case routes.introspection:
      counts.introspection += 1;
      if (down.introspection) return unavailable(res);
      break;
    case DISCOVERY:
      counts.discovery += 1;
      break;
    default:
  }
  current.handler(req, res);
});
server.keepAliveTimeout = 5000;

server.listen(config.port ?? 0, '127.0.0.1', () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}`;
  current = newProvider(issuer, newKey());
  process.stdout.write(`${JSON.stringify({
    issuer,
    port,
    kid: current.kid,
    alg,
    resource,
    jwks_uri: `${issuer}${routes.jwks}`,
    token_endpoint: `${issuer}${routes.token}`,
    introspection_endpoint: `${issuer}${routes.introspection}`,
    gateway_client_id: 'gateway',
    gateway_client_secret: secrets.gateway,
  })}\n`);
});
server.on('error', (err) => {
  console.error('oidc issuer server error:', err);
  process.exit(1);
});

// Exit when the parent closes our stdin (or dies).
process.stdin.on('data', () => {});
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
