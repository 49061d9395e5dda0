"""Independent OpenID Connect clients for the milagro IdP, run by the tests in tests/roles/idp/.

Nothing here comes from the IdP's own code or from Authlib: panva's openid-client run by node
(client.mjs, driven by :mod:`.node`), a Python relying party on requests-oauthlib with its own
ID-token checks (:mod:`.rp`, :mod:`.idtoken`), a plain RFC 8628 device client on httpx
(:mod:`.device`), and a person who logs in through the IdP's HTML forms over HTTP
(:mod:`.person`). They only rely on the standards and on the IdP's documented HTML contract.
"""
