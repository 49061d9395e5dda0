// panva's oidc-provider (an OpenID Certified provider) on loopback over HTTPS, as a foreign
// IdP for the D-TA's relying party (tests/roles/dta/test_oidc_provider.py).
//
//   node provider.mjs CERT_PEM KEY_PEM
//
// Listens on 127.0.0.1 on a free port with the given (self-signed) certificate, issuer
// https://localhost:PORT, open dynamic registration, the device flow, and one account,
// alice / "correct horse". Prints one JSON line {"issuer", "port", "pid"} once it listens; logs
// go to stderr. It runs until killed.
//
// The interaction pages (login, consent) are this script's own, written to the same small HTML
// contract as the milagro IdP's pages (inputs username/password, button id="login"; buttons
// id="approve"/id="deny" named "decision"; an element id="error" on failure), so that one walker
// (interop/oidc/person.py) or a browser drives either provider. Everything OpenID Connect
// (discovery, registration, authorization with RFC 9207 iss, PKCE, tokens, ID tokens, JWKS) is
// oidc-provider's own.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

import Provider from 'oidc-provider';

const [certFile, keyFile] = process.argv.slice(2);
if (!certFile || !keyFile) {
  process.stderr.write('usage: node provider.mjs CERT_PEM KEY_PEM\n');
  process.exit(2);
}

const ACCOUNTS = new Map([
  ['alice', { sub: 'alice-3f9c', password: 'correct horse', name: 'Alice Example' }],
]);
const BY_SUB = new Map([...ACCOUNTS].map(([username, account]) => [account.sub, { username, ...account }]));

// The ID-token signing key: generated per run (node's crypto, no extra package); served in the JWKS.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };

const configuration = {
  clients: [],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  features: {
    registration: { enabled: true },           // open dynamic registration (RFC 7591)
    deviceFlow: { enabled: true },             // RFC 8628, should a relying party register for it
    devInteractions: { enabled: false },       // our own pages below
  },
  claims: { openid: ['sub'], profile: ['name', 'preferred_username'] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const account = BY_SUB.get(sub);
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() { return { sub, name: account.name, preferred_username: account.username }; },
    };
  },
};

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(res, status, title, body) {
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>${escape(title)}</title></head>`
    + `<body><h1>${escape(title)}</h1>${body}</body></html>`;
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

function loginForm(uid, error) {
  return (error ? `<p id="error">${escape(error)}</p>` : '')
    + `<form method="post" action="/interaction/${uid}/login">`
    + '<input name="username" autocomplete="username">'
    + '<input name="password" type="password" autocomplete="current-password">'
    + '<button id="login" type="submit">Log in</button></form>';
}

async function formBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function interaction(provider, req, res, [uid, action]) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    page(res, 400, 'Error', '<p id="error">interaction mismatch</p>');
    return;
  }
  const { prompt, params } = details;
  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') {
      page(res, 200, 'Log in', loginForm(uid));
      return;
    }
    const client = await provider.Client.find(params.client_id);
    const scopes = String(params.scope || '').split(' ').filter(Boolean);
    page(res, 200, 'Consent',
      `<p>${escape(client?.clientName || params.client_id)} asks for:</p><ul>`
      + scopes.map((scope) => `<li>${escape(scope)}</li>`).join('')
      + `</ul><form method="post" action="/interaction/${uid}/consent">`
      + '<button id="approve" name="decision" value="approve">Approve</button>'
      + '<button id="deny" name="decision" value="deny">Deny</button></form>');
    return;
  }
  if (req.method !== 'POST') {
    page(res, 405, 'Error', '<p id="error">method not allowed</p>');
    return;
  }
  const form = await formBody(req);
  if (action === 'login' && prompt.name === 'login') {
    const account = ACCOUNTS.get(form.get('username') || '');
    // A plain compare is fine for a test account; a real provider stores password hashes.
    if (!account || account.password !== form.get('password')) {
      page(res, 401, 'Log in', loginForm(uid, 'wrong username or password'));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: account.sub } },
      { mergeWithLastSubmission: false });
    return;
  }
  if (action === 'consent' && prompt.name === 'consent') {
    if (form.get('decision') !== 'approve') {
      await provider.interactionFinished(req, res, {
        error: 'access_denied', error_description: 'the person denied the request',
      }, { mergeWithLastSubmission: false });
      return;
    }
    const { accountId } = details.session;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: details.grantId ? {} : { grantId } },
      { mergeWithLastSubmission: true });
    return;
  }
  page(res, 400, 'Error', `<p id="error">unexpected ${escape(action)} for prompt ${escape(prompt.name)}</p>`);
}

const server = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) });
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `https://localhost:${port}`;
  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (ctx, error) => process.stderr.write(`server_error: ${error.stack}\n`));
  const handle = provider.callback();
  server.on('request', (req, res) => {
    const path = new URL(req.url, issuer).pathname;
    const match = path.match(/^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|consent))?$/);
    if (!match) {
      handle(req, res);
      return;
    }
    interaction(provider, req, res, match.slice(1)).catch((error) => {
      process.stderr.write(`interaction error: ${error.stack}\n`);
      if (!res.headersSent) page(res, 400, 'Error', `<p id="error">${escape(error.message)}</p>`);
    });
  });
  process.stdout.write(`${JSON.stringify({ issuer, port, pid: process.pid })}\n`);
});
