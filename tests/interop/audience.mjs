// RFC 8707 audiences checked by panva's jose, a verifier nobody here wrote,
// configured as docs/verifying-tokens.md says: Tessera's access tokens,
// each issued for one audience, verified against the issuer's JWK Set
// (from its metadata) with `audience` set to a resource URI. Each token
// must verify for its own audience and be refused, for its `aud`, by every
// other. Run by tests/api/interop.rs, which starts Tessera and issues the
// tokens: TOKENS is a JSON object, audience → access token.
import assert from 'node:assert/strict'
import { createRemoteJWKSet, errors, jwtVerify } from 'jose'

const { ISSUER } = process.env
const tokens = JSON.parse(process.env.TOKENS)
const audiences = Object.keys(tokens)
assert.ok(audiences.length >= 2, 'at least two audiences to tell apart')

const metadata = await (await fetch(`${ISSUER}/.well-known/oauth-authorization-server`)).json()
assert.equal(metadata.issuer, ISSUER)
const JWKS = createRemoteJWKSet(new URL(metadata.jwks_uri))

const verify = (token, audience) =>
  jwtVerify(token, JWKS, {
    issuer: ISSUER,
    audience,
    typ: 'at+jwt',
    algorithms: ['ES256', 'EdDSA', 'RS256'],
    clockTolerance: 10,
    requiredClaims: ['sub', 'client_id', 'jti', 'iat', 'exp'],
  })

let accepted = 0
let refused = 0
for (const [issuedFor, token] of Object.entries(tokens)) {
  for (const audience of audiences) {
    if (audience === issuedFor) {
      const { payload } = await verify(token, audience)
      assert.equal(payload.aud, issuedFor, 'aud is the one audience asked for, as a string')
      accepted += 1
    } else {
      await assert.rejects(
        verify(token, audience),
        (err) => err instanceof errors.JWTClaimValidationFailed && err.claim === 'aud',
        `a token for ${issuedFor} must be refused for ${audience}, for its aud`,
      )
      refused += 1
    }
  }
}

console.log(`jose: ${accepted} tokens accepted for their own audience, ${refused} refused for another`)
