// A real OpenID provider (npm `oidc-provider`) for Portico's tests.
//
//   node idp.mjs [--port N]
//
// Settings (environment):
//   IDP_PORT                  port to listen on (default 0: any free port); --port wins
//   IDP_INITIAL_ACCESS_TOKEN  the initial access token that registration requires (RFC 7591);
//                             unset: open registration
//   IDP_JWKS_FILE             a JSON Web Key Set with *private* keys to sign with (the first key
//                             signs); unset: an RSA 2048 key is generated at start
//   IDP_AUDIENCE              the `aud` of access tokens, an absolute URI (default: https://api.portico.test)
//   IDP_ACCESS_TOKEN_TTL      access token lifetime in seconds (default 3600)
//
// On start it prints one machine-readable line on stdout:
//   {"event":"listening","port":<port>,"issuer":"http://127.0.0.1:<port>"}
// Everything else goes to stderr.
//
// What it offers: discovery, DCR with the initial access token, RFC 7592 management (the
// registration access token rotates on every update), the client_credentials grant with RS256
// JWT access tokens (`client_id` claim, `pol` claim from the client metadata `pol` when set),
// no interactive login (devInteractions off). The client store is in memory.

import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

function fail(message) {
  process.stderr.write(`idp: ${message}\n`);
  process.exit(64);
}

function setting(name, fallback) {
  const value = process.env[name];
  return value === undefined || value === '' ? fallback : value;
}

function portArgument() {
  const index = process.argv.indexOf('--port');
  const raw = index >= 0 ? process.argv[index + 1] : setting('IDP_PORT', '0');
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad port ${raw}`);
  return port;
}

function signingKeys() {
  const file = setting('IDP_JWKS_FILE');
  if (file) {
    let jwks;
    try {
      jwks = JSON.parse(readFileSync(file, 'utf8'));
    } catch (error) {
      fail(`cannot read IDP_JWKS_FILE ${file}: ${error.message}`);
    }
    if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) fail(`${file} has no keys`);
    if (jwks.keys.some((key) => !key.d)) fail(`${file}: every key needs its private part`);
    return jwks;
  }
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: 'generated-rs256', alg: 'RS256', use: 'sig' }] };
}

const port = portArgument();
const initialAccessToken = setting('IDP_INITIAL_ACCESS_TOKEN');
const audience = setting('IDP_AUDIENCE', 'https://api.portico.test');
const accessTokenTTL = Number(setting('IDP_ACCESS_TOKEN_TTL', '3600'));
const jwks = signingKeys();

async function main() {
  // The issuer needs the port, so bind first, then build the provider for that issuer.
  const { createServer } = await import('node:http');
  let provider;
  const server = createServer((req, res) => provider.callback()(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const bound = server.address().port;
  const issuer = `http://127.0.0.1:${bound}`;

  provider = new Provider(issuer, {
    jwks,
    scopes: ['openid', 'api'],
    clientDefaults: {
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
    },
    extraClientMetadata: {
      properties: ['pol'],
      validator(ctx, key, value) {
        if (key === 'pol' && value !== undefined && typeof value !== 'string') {
          throw new Error('pol must be a string');
        }
      },
    },
    async extraTokenClaims(ctx, token) {
      const client = token.client ?? (token.clientId && await ctx.oidc.provider.Client.find(token.clientId));
      const claims = { client_id: token.clientId };
      if (client && client.pol) claims.pol = client.pol;
      return claims;
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      registration: {
        enabled: true,
        ...(initialAccessToken ? { initialAccessToken } : {}),
      },
      registrationManagement: { enabled: true, rotateRegistrationAccessToken: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'api',
          audience,
          accessTokenTTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    ttl: { ClientCredentials: accessTokenTTL },
  });
  provider.on('server_error', (ctx, error) => process.stderr.write(`idp: server_error ${error.stack}\n`));
  for (const event of ['registration_create.error', 'registration_update.error', 'grant.error']) {
    provider.on(event, (ctx, error) => process.stderr.write(`idp: ${event}: ${error.message} ${error.error_description ?? ''}\n`));
  }
  for (const event of ['registration_create.success', 'registration_update.success', 'registration_delete.success']) {
    provider.on(event, (ctx, client) => process.stderr.write(`idp: ${event} ${client.clientId}\n`));
  }

  process.stdout.write(`${JSON.stringify({ event: 'listening', port: bound, issuer })}\n`);
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error) => fail(error.stack ?? String(error)));
