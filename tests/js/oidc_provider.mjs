// A real OpenID Connect provider (the npm `oidc-provider` package) for the panel's sign-in tests.
//
// Usage: node oidc_provider.mjs <config.json>, where the file holds
//   {port, keys: [private JWKs to sign with], clients: [oidc-provider client metadata],
//    users: {"<login>": {email, email_verified, name, groups}}, conform: false}
// It listens on 127.0.0.1:<port> (issuer http://127.0.0.1:<port>) and prints one JSON line when
// ready. The login page is the package's devInteractions page: any login (the account id, which
// picks the user's claims) with any password. Consent is granted up front, as for a first-party app.
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;
const SCOPE = 'openid email profile groups';

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: { keys: config.keys },
  cookies: { keys: ['solaris-test-cookie-key'] },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  // false: the scopes' claims in the ID token itself, as corporate providers do with groups;
  // true: only in the userinfo answer (the package's default, OIDC Core 5.4 to the letter).
  conformIdTokenClaims: Boolean(config.conform),
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  async findAccount(ctx, id) {
    const user = config.users[id] ?? { email: id, email_verified: true, name: id, groups: [] };
    return { accountId: id, async claims() { return { sub: id, ...user }; } };
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(SCOPE);
    await grant.save();
    return grant;
  },
});

const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(JSON.stringify({ ready: true, issuer }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
