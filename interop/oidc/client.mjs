// An independent OpenID Connect relying party: panva's openid-client (v6, ESM), run by node.
//
// Usage: node client.mjs code-flow|device '<json config>'
//   config: {"account": "alice@localhost:8443", "redirect_uri": "http://127.0.0.1:1/cb",
//            "auth_method": "client_secret_basic"|"client_secret_post"|"none",
//            "registration_token": null, "scope": "openid profile"}
//
// The script talks JSON lines: every step it completes is one line on stdout
// ({"step": ...}); the test reads them. The code flow's authorization step belongs to the
// person (the test logs in over HTTP or in Chromium), so the script prints
// {"step": "authorize", "url": ...} and waits for one stdin line {"callback": "<redirect URL>"}.
// A failure is one line {"step": "error", ...} and exit status 2.
//
// Trust: the IdP's fallback certificate is self-signed; the test passes it as
// NODE_EXTRA_CA_CERTS, so node's fetch verifies the IdP like any other HTTPS server.
// Nothing here disables a check.
import * as readline from 'node:readline';
import * as client from 'openid-client';

const ISSUER_REL = 'http://openid.net/specs/connect/1.0/issuer';

function emit(step, fields = {}) {
  process.stdout.write(JSON.stringify({ step, ...fields }) + '\n');
}

function clientAuth(method) {
  switch (method) {
    case 'client_secret_basic': return client.ClientSecretBasic();
    case 'client_secret_post': return client.ClientSecretPost();
    case 'none': return client.None();
    default: throw new Error(`unknown auth_method ${method}`);
  }
}

// OpenID Connect Discovery 1.0 section 2 (RFC 7033): from the user's identifier to the issuer.
// openid-client does not do WebFinger, so this is plain fetch.
async function webfinger(account) {
  const host = account.slice(account.indexOf('@') + 1);
  const url = new URL(`https://${host}/.well-known/webfinger`);
  url.searchParams.set('resource', `acct:${account}`);
  url.searchParams.set('rel', ISSUER_REL);
  const response = await fetch(url, { headers: { accept: 'application/jrd+json' }, redirect: 'error' });
  if (response.status !== 200) throw new Error(`webfinger: HTTP ${response.status}`);
  const jrd = await response.json();
  const link = (jrd.links || []).find((l) => l.rel === ISSUER_REL);
  if (!link || typeof link.href !== 'string') throw new Error('webfinger: no issuer link');
  emit('webfinger', { subject: jrd.subject, issuer: link.href,
    content_type: response.headers.get('content-type') });
  return link.href;
}

// Discovery and RFC 7591 registration in one call (openid-client discovers first, and checks
// that the discovery document's issuer is the one it was asked for).
async function register(issuer, cfg, metadata) {
  const options = { execute: [client.enableNonRepudiationChecks] };
  if (cfg.registration_token) options.initialAccessToken = cfg.registration_token;
  const config = await client.dynamicClientRegistration(
    new URL(issuer),
    { token_endpoint_auth_method: cfg.auth_method, id_token_signed_response_alg: 'RS256', ...metadata },
    clientAuth(cfg.auth_method),
    options,
  );
  const server = config.serverMetadata();
  const milagro = Object.fromEntries(Object.entries(server).filter(([k]) => k.startsWith('milagro_')));
  emit('registered', {
    issuer: server.issuer,
    client_id: config.clientMetadata().client_id,
    has_secret: Boolean(config.clientMetadata().client_secret),
    token_endpoint_auth_method: config.clientMetadata().token_endpoint_auth_method,
    milagro,
  });
  return config;
}

function readLine() {
  const rl = readline.createInterface({ input: process.stdin });
  return new Promise((resolve, reject) => {
    rl.once('line', (line) => { resolve(line); rl.close(); });  // close() emits 'close' at once
    rl.once('close', () => reject(new Error('stdin closed before the callback URL')));
  });
}

async function finish(config, tokens) {
  // With enableNonRepudiationChecks openid-client has verified the ID token's signature
  // against the jwks_uri, and always its iss, aud, azp, exp, iat (and nonce / state / PKCE
  // for the code flow) before returning.
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  emit('done', {
    token_type: tokens.token_type,
    has_access_token: Boolean(tokens.access_token),
    claims,
    userinfo,
  });
}

async function codeFlow(cfg) {
  const issuer = await webfinger(cfg.account);
  const config = await register(issuer, cfg, {
    client_name: 'openid-client interop (code flow)',
    redirect_uris: [cfg.redirect_uri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  });
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: cfg.redirect_uri,
    scope: cfg.scope || 'openid profile',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  emit('authorize', { url: url.href });
  const { callback } = JSON.parse(await readLine());
  const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  await finish(config, tokens);
}

async function deviceFlow(cfg) {
  const issuer = await webfinger(cfg.account);
  const config = await register(issuer, cfg, {
    client_name: 'openid-client interop (device)',
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code'],
  });
  const device = await client.initiateDeviceAuthorization(config, { scope: cfg.scope || 'openid profile' });
  emit('device', {
    user_code: device.user_code,
    verification_uri: device.verification_uri,
    verification_uri_complete: device.verification_uri_complete,
    expires_in: device.expires_in,
    interval: device.interval,
  });
  // Polls at the server's interval, honours slow_down and authorization_pending.
  const tokens = await client.pollDeviceAuthorizationGrant(config, device);
  await finish(config, tokens);
}

const [mode, raw] = process.argv.slice(2);
const flows = { 'code-flow': codeFlow, device: deviceFlow };
try {
  if (!flows[mode]) throw new Error(`usage: node client.mjs ${Object.keys(flows).join('|')} '<json>'`);
  await flows[mode](JSON.parse(raw));
} catch (err) {
  emit('error', {
    name: err.name, message: err.message, code: err.code,
    error: err.error, error_description: err.error_description, status: err.status,
    cause: err.cause ? String(err.cause.message || err.cause) : undefined,
  });
  process.exitCode = 2;
}
