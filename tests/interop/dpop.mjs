// DPoP end to end with panva's oauth4webapi, a client nobody here wrote:
// discovery, the password grant (as a generic token request), refresh,
// client_credentials, and a call to the example resource server, each
// bound to a key the library generated, handling use_dpop_nonce the way
// the library does (it remembers the nonce; the caller retries once).
// Run by tests/api/interop.rs, which starts Tessera and the resource server.
import assert from 'node:assert/strict'
import * as oauth from 'oauth4webapi'

const { ISSUER, RESOURCE, PASSWORD, SERVICE_SECRET } = process.env
const insecure = { [oauth.allowInsecureRequests]: true } // loopback HTTP in tests

const issuer = new URL(ISSUER)
const as = await oauth.processDiscoveryResponse(
  issuer,
  await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }),
)
assert.ok(as.dpop_signing_alg_values_supported.includes('ES256'))

// The library's own retry rule for use_dpop_nonce: once, with the nonce it kept.
async function retryingNonce(request) {
  try {
    return await request()
  } catch (err) {
    if (oauth.isDPoPNonceError(err)) return await request()
    throw err
  }
}

const jkt = async (keyPair) => {
  const jwk = await crypto.subtle.exportKey('jwk', keyPair.publicKey)
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y })
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(canonical))
  return Buffer.from(digest).toString('base64url')
}
const claims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString())

// A mobile app: the password grant, then a refresh, bound to one key.
const mobile = { client_id: 'mobile' }
const appKey = await oauth.generateKeyPair('ES256')
const appDpop = oauth.DPoP(mobile, appKey)
const login = await retryingNonce(async () =>
  oauth.processGenericTokenEndpointResponse(
    as,
    mobile,
    await oauth.genericTokenEndpointRequest(
      as,
      mobile,
      oauth.None(),
      'password',
      new URLSearchParams({ username: 'alice', password: PASSWORD }),
      { DPoP: appDpop, ...insecure },
    ),
  ),
)
assert.equal(login.token_type, 'dpop')
assert.equal(claims(login.access_token).cnf.jkt, await jkt(appKey))

const refreshed = await retryingNonce(async () =>
  oauth.processRefreshTokenResponse(
    as,
    mobile,
    await oauth.refreshTokenGrantRequest(as, mobile, oauth.None(), login.refresh_token, {
      DPoP: appDpop,
      ...insecure,
    }),
  ),
)
assert.equal(refreshed.token_type, 'dpop')
assert.equal(claims(refreshed.access_token).cnf.jkt, await jkt(appKey))

// Another key cannot refresh the app's token.
const thiefKey = await oauth.generateKeyPair('ES256')
const thiefDpop = oauth.DPoP(mobile, thiefKey)
await assert.rejects(
  retryingNonce(async () =>
    oauth.processRefreshTokenResponse(
      as,
      mobile,
      await oauth.refreshTokenGrantRequest(as, mobile, oauth.None(), refreshed.refresh_token, {
        DPoP: thiefDpop,
        ...insecure,
      }),
    ),
  ),
  (err) => err.error === 'invalid_dpop_proof' || err.error === 'invalid_grant',
)

// A service: client_credentials, bound to its own key.
const service = { client_id: 'svc' }
const serviceKey = await oauth.generateKeyPair('ES256')
const serviceDpop = oauth.DPoP(service, serviceKey)
const serviceTokens = await retryingNonce(async () =>
  oauth.processClientCredentialsResponse(
    as,
    service,
    await oauth.clientCredentialsGrantRequest(
      as,
      service,
      oauth.ClientSecretBasic(SERVICE_SECRET),
      new URLSearchParams({ scope: 'read' }),
      { DPoP: serviceDpop, ...insecure },
    ),
  ),
)
assert.equal(serviceTokens.token_type, 'dpop')
assert.equal(claims(serviceTokens.access_token).cnf.jkt, await jkt(serviceKey))

// The example resource server takes the app's token with the app's proof...
const whoami = new URL('/whoami', RESOURCE)
const ok = await oauth.protectedResourceRequest(refreshed.access_token, 'GET', whoami, undefined, undefined, {
  DPoP: appDpop,
  ...insecure,
})
assert.equal(ok.status, 200, await ok.clone().text())
assert.equal((await ok.json()).cnf.jkt, await jkt(appKey))
// ...and refuses it with another key's proof (the library surfaces the
// 401 as the server's DPoP challenge), or as a bearer token.
await assert.rejects(
  oauth.protectedResourceRequest(refreshed.access_token, 'GET', whoami, undefined, undefined, {
    DPoP: thiefDpop,
    ...insecure,
  }),
  (err) =>
    err instanceof oauth.WWWAuthenticateChallengeError &&
    err.response.status === 401 &&
    err.cause.some((c) => c.scheme === 'dpop'),
)
const bearer = await fetch(whoami, { headers: { authorization: `Bearer ${refreshed.access_token}` } })
assert.equal(bearer.status, 401)

console.log('oauth4webapi: password, refresh, client_credentials and the resource server all bound by DPoP')
